"""Task runners: where ``.submit()`` and ``.map()`` execute task runs.

A flow run enters its task runner for its duration. The default, ``ThreadPoolTaskRunner``, runs each
submitted task run in a worker thread (created lazily, so flows that never submit pay nothing); an
async task submitted to it runs on a fresh event loop in its worker. The Kubernetes task runner of a
later release implements the same ``submit``.
"""

from __future__ import annotations

import abc
import contextvars
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from flowpod.futures import FlowpodConcurrentFuture, FlowpodFuture, FlowpodFutureList

if TYPE_CHECKING:
    from flowpod.tasks import Task

__all__ = ["TaskRunner", "ThreadPoolTaskRunner"]


class TaskRunner(abc.ABC):
    """Runs submitted task runs and hands back futures."""

    @property
    def name(self) -> str:
        return type(self).__name__.removesuffix("TaskRunner").lower() or "task-runner"

    @abc.abstractmethod
    def duplicate(self) -> TaskRunner:
        """A fresh, unstarted runner with the same settings (one per flow run)."""

    @abc.abstractmethod
    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Any = None,
    ) -> FlowpodFuture[Any]:
        """Start one run of ``task`` with ``parameters`` after ``wait_for``; return its future."""

    def map(
        self,
        task: Task[Any, Any],
        parameters_list: list[dict[str, Any]],
        wait_for: Any = None,
    ) -> FlowpodFutureList[Any]:
        """Submit one run per parameter set."""
        return FlowpodFutureList(self.submit(task, params, wait_for) for params in parameters_list)

    def __enter__(self) -> TaskRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


class ThreadPoolTaskRunner(TaskRunner):
    """Runs each submitted task run in a thread of a pool created on first use.

    ``max_workers`` bounds the threads; the default is effectively unbounded (idle threads are
    reused), because a submitted task may block waiting on another one and a small pool could
    deadlock.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and (
            not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
        ):
            raise ValueError(f"max_workers must be a positive int or None; got {max_workers!r}.")
        self.max_workers = max_workers
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def duplicate(self) -> ThreadPoolTaskRunner:
        return type(self)(max_workers=self.max_workers)

    def _pool(self) -> ThreadPoolExecutor:
        executor = self._executor
        if executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(
                        max_workers=self.max_workers or min(sys.maxsize, 2**16),
                        thread_name_prefix="flowpod-task",
                    )
                executor = self._executor
        return executor

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Any = None,
    ) -> FlowpodFuture[Any]:
        import flowpod._engine.task_engine as _task_engine
        run = _task_engine.prepare_submission(task, parameters, wait_for)
        context = contextvars.copy_context()
        future = self._pool().submit(context.run, _task_engine.execute_submission, run)
        return FlowpodConcurrentFuture(run.task_run, future)

    def __exit__(self, exc_type: object = None, *exc_info: object) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            if exc_type is None:
                executor.shutdown(wait=True)
            else:
                # The flow failed or timed out: do not hold it until every task finishes.
                executor.shutdown(wait=False, cancel_futures=True)

    def __reduce__(self) -> tuple[type[ThreadPoolTaskRunner], tuple[int | None]]:
        # A flow travels to a pod by pickle; its runner's lock and live pool must not, and a
        # fresh runner is what every flow run starts with anyway (duplicate()).
        return type(self), (self.max_workers,)

    def __repr__(self) -> str:
        return f"ThreadPoolTaskRunner(max_workers={self.max_workers})"
