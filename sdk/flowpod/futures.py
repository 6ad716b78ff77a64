"""Futures of submitted task runs, and helpers to wait for many of them.

``task.submit(...)`` returns a ``FlowpodFuture``: ``.state`` (the run's current state), ``.wait()``,
``.result(timeout=..., raise_on_failure=...)`` and ``add_done_callback``. ``task.map(...)`` returns
a ``FlowpodFutureList``. ``wait(futures, timeout)`` and ``as_completed(futures, timeout)`` work on
any collection of futures. (``PrefectFuture`` & co. are aliases so that ported code keeps
working.)
"""

from __future__ import annotations

import concurrent.futures as cf
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from flowpod.states import Pending, State

if TYPE_CHECKING:
    from flowpod.context.runs import TaskRun

__all__ = [
    "DoneAndNotDoneFutures",
    "FlowpodConcurrentFuture",
    "FlowpodFuture",
    "FlowpodFutureList",
    "PrefectConcurrentFuture",
    "PrefectFuture",
    "PrefectFutureList",
    "as_completed",
    "resolve_futures_to_states",
    "wait",
]

R = TypeVar("R")


class FlowpodFuture(Generic[R]):
    """The eventual final state (and result) of one submitted task run."""

    __slots__ = ("_task_run",)

    def __init__(self, task_run: TaskRun) -> None:
        self._task_run = task_run

    @property
    def task_run_id(self) -> uuid.UUID:
        return self._task_run.id

    @property
    def task_run(self) -> TaskRun:
        return self._task_run

    @property
    def state(self) -> State[R]:
        """The final state once done; until then the run's current state."""
        final = self._final_state()
        if final is not None:
            return final
        return self._task_run.state or Pending()

    def _final_state(self) -> State[R] | None:
        raise NotImplementedError

    def done(self) -> bool:
        return self._final_state() is not None

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run is final or ``timeout`` seconds passed (no error on timeout)."""
        raise NotImplementedError

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        """The run's return value; raises its exception if it failed (unless told not to).

        Raises TimeoutError if the run is not final within ``timeout`` seconds.
        """
        self.wait(timeout)
        final = self._final_state()
        if final is None:
            raise TimeoutError(
                f"Task run {self._task_run.name!r} ({self.task_run_id}) did not finish within "
                f"{timeout} second(s)."
            )
        return final.result(raise_on_failure=raise_on_failure)  # type: ignore[no-any-return]

    def add_done_callback(self, fn: Callable[[FlowpodFuture[R]], object]) -> None:
        """Call ``fn(future)`` once the run is final (at once if it already is)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task_run={self._task_run.name!r}, state={self.state})"


class FlowpodConcurrentFuture(FlowpodFuture[R]):
    """A future backed by a ``concurrent.futures.Future`` that resolves to the final state."""

    __slots__ = ("_future",)

    def __init__(self, task_run: TaskRun, future: cf.Future[State[R]]) -> None:
        super().__init__(task_run)
        self._future = future

    @property
    def wrapped_future(self) -> cf.Future[State[R]]:
        return self._future

    def _final_state(self) -> State[R] | None:
        if not self._future.done():
            return None
        if self._future.cancelled():
            from flowpod.states import Cancelled

            return Cancelled(message="The task run was cancelled before it started.")
        exc = self._future.exception()
        if exc is not None:
            # The engine turns every failure into a state; reaching here means it crashed itself.
            from flowpod.states import Crashed

            return Crashed(message=f"The task engine crashed: {exc!r}", data=exc)
        return self._future.result()

    def wait(self, timeout: float | None = None) -> None:
        cf.wait([self._future], timeout=timeout)

    def add_done_callback(self, fn: Callable[[FlowpodFuture[R]], object]) -> None:
        self._future.add_done_callback(lambda _f: fn(self))


class FlowpodFutureList(list[FlowpodFuture[R]]):
    """The futures of one ``.map()`` call."""

    def wait(self, timeout: float | None = None) -> None:
        wait(self, timeout=timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[R]:
        deadline = None if timeout is None else time.monotonic() + timeout
        results = []
        for future in self:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            results.append(future.result(timeout=left, raise_on_failure=raise_on_failure))
        return results


class DoneAndNotDoneFutures(NamedTuple):
    done: set[FlowpodFuture[Any]]
    not_done: set[FlowpodFuture[Any]]


def wait(
    futures: Iterable[FlowpodFuture[Any]], timeout: float | None = None
) -> DoneAndNotDoneFutures:
    """Wait until all ``futures`` are final or ``timeout`` passed; return which are done."""
    futures = list(futures)
    concurrent = [f._future for f in futures if isinstance(f, FlowpodConcurrentFuture)]
    deadline = None if timeout is None else time.monotonic() + timeout
    if concurrent:
        cf.wait(concurrent, timeout=timeout)
    for future in futures:
        if not isinstance(future, FlowpodConcurrentFuture):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            future.wait(left)
    done = {f for f in futures if f.done()}
    return DoneAndNotDoneFutures(done, {f for f in futures if f not in done})


def as_completed(
    futures: Iterable[FlowpodFuture[R]], timeout: float | None = None
) -> Iterator[FlowpodFuture[R]]:
    """Yield ``futures`` as they finish; TimeoutError if some are not done within ``timeout``."""
    pending = list(dict.fromkeys(futures))
    finished: queue.SimpleQueue[FlowpodFuture[R]] = queue.SimpleQueue()
    seen: set[int] = set()
    lock = threading.Lock()

    def on_done(future: FlowpodFuture[R]) -> None:
        with lock:
            if id(future) in seen:
                return
            seen.add(id(future))
        finished.put(future)

    for future in pending:
        future.add_done_callback(on_done)
    deadline = None if timeout is None else time.monotonic() + timeout
    for _ in range(len(pending)):
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            left = 0.0
        try:
            yield finished.get(timeout=left)
        except queue.Empty:
            raise TimeoutError(
                f"{len(pending) - len(seen)} of {len(pending)} futures did not finish within "
                f"{timeout} second(s)."
            ) from None


def resolve_futures_to_states(value: Any) -> Any:
    """``value`` with every future (also inside lists, tuples, sets and dicts) replaced by its
    final state, waiting for each."""
    if isinstance(value, FlowpodFuture):
        value.wait()
        return value.state
    if isinstance(value, list | tuple | set | frozenset):
        items = [resolve_futures_to_states(item) for item in value]
        if isinstance(value, list):
            return items
        try:
            return type(value)(items)
        except TypeError:
            return items
    if isinstance(value, dict):
        return {k: resolve_futures_to_states(v) for k, v in value.items()}
    return value


# Names under which Prefect users know these classes.
PrefectFuture = FlowpodFuture
PrefectConcurrentFuture = FlowpodConcurrentFuture
PrefectFutureList = FlowpodFutureList
