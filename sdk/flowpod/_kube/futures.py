"""``KubernetesTaskFuture``: the future of a task run that runs on the cluster as a TaskRun.

The runner (``flowpod._kube.runner``) creates one per ``submit()``, shows it the non-final
states its watch sees (``_observe``) and resolves it once with the final state (``_resolve``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from flowpod.futures import FlowpodFuture

if TYPE_CHECKING:
    from flowpod.context.runs import TaskRun
    from flowpod.states import State

__all__ = ["KubernetesTaskFuture"]

R = TypeVar("R")

logger = logging.getLogger("flowpod.kubernetes")


class KubernetesTaskFuture(FlowpodFuture[R]):
    """The future of a task run that runs on the cluster as a TaskRun."""

    __slots__ = ("_callbacks", "_done", "_final", "_guard", "task_key", "taskrun_name")

    def __init__(self, task_run: TaskRun) -> None:
        super().__init__(task_run)
        self.taskrun_name: str | None = None
        # The spec.taskKey its TaskRun carries: an object of the same name that runs another
        # task (an earlier flow pod's, submitted in another order) is never this future's.
        self.task_key: str | None = None
        self._final: State[R] | None = None
        self._done = threading.Event()
        self._guard = threading.Lock()
        self._callbacks: list[Callable[[FlowpodFuture[R]], object]] = []

    def _final_state(self) -> State[R] | None:
        return self._final

    def wait(self, timeout: float | None = None) -> None:
        self._done.wait(timeout)

    def add_done_callback(self, fn: Callable[[FlowpodFuture[R]], object]) -> None:
        with self._guard:
            if self._final is None:
                self._callbacks.append(fn)
                return
        fn(self)

    def _observe(self, state: State[Any]) -> None:
        """A non-final state seen on the cluster (Running, AwaitingRetry, Retrying)."""
        if self._final is None:
            self._task_run.set_state(state)

    def _resolve(self, state: State[R]) -> bool:
        """Make ``state`` final; False when the future was already resolved.

        The callbacks run before waiters wake up, so code that returns from ``wait()`` finds
        them done.
        """
        with self._guard:
            if self._final is not None:
                return False
            self._task_run.finish(state)
            self._final = state
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            try:
                fn(self)
            except Exception:  # noqa: BLE001 - one callback must not starve the others
                logger.exception("A done callback of task run %r failed", self._task_run.name)
        self._done.set()
        return True
