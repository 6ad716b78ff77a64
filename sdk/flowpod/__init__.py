"""flowpod: Prefect's @task/@flow API, run in-process or as Kubernetes pods.

The public names below are the whole top-level API; everything else lives in the public submodules
(``flowpod.tasks``, ``flowpod.flows``, ``flowpod.states``, ``flowpod.futures``,
``flowpod.task_runners``, ``flowpod.cache_policies``, ``flowpod.context``, ``flowpod.logging``,
``flowpod.runtime``, ``flowpod.utilities.annotations``, ``flowpod.exceptions``). Modules whose
names start with ``_`` are private.
"""

from typing import Any as _Any

from flowpod.context import tags
from flowpod.flows import Flow, flow
from flowpod.logging import get_run_logger
from flowpod.states import State
from flowpod.tasks import Task, task
from flowpod.utilities.annotations import allow_failure, quote, unmapped


def __getattr__(name: str) -> _Any:
    # importlib.metadata costs tens of milliseconds: read the version only when asked.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("flowpod")
        except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
            return "0.0.0"
    raise AttributeError(f"module 'flowpod' has no attribute {name!r}")


__all__ = [
    "Flow",
    "State",
    "Task",
    "__version__",
    "allow_failure",
    "flow",
    "get_run_logger",
    "quote",
    "tags",
    "task",
    "unmapped",
]
