"""flowpod: Prefect's @task/@flow API, run in-process or as Kubernetes pods.

The public names below are the whole top-level API; everything else lives in the public submodules
(``flowpod.tasks``, ``flowpod.flows``, ``flowpod.states``, ``flowpod.futures``,
``flowpod.task_runners``, ``flowpod.cache_policies``, ``flowpod.context``, ``flowpod.logging``,
``flowpod.runtime``, ``flowpod.utilities.annotations``, ``flowpod.exceptions``,
``flowpod.kubernetes``). Packages whose names start with ``_`` are private.

The names are loaded on first use: importing a private package (the operator imports only
``flowpod._contract`` and ``flowpod._storage``) runs this module, and must not drag the engine,
``tasks`` and ``flows`` in with it.
"""

from importlib import import_module as _import_module
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from flowpod.context import tags
    from flowpod.flows import Flow, flow
    from flowpod.logging import get_run_logger
    from flowpod.states import State
    from flowpod.tasks import Task, task
    from flowpod.utilities.annotations import allow_failure, quote, unmapped

# Where each top-level name is defined.
_HOMES = {
    "Flow": "flowpod.flows",
    "State": "flowpod.states",
    "Task": "flowpod.tasks",
    "allow_failure": "flowpod.utilities.annotations",
    "flow": "flowpod.flows",
    "get_run_logger": "flowpod.logging",
    "quote": "flowpod.utilities.annotations",
    "tags": "flowpod.context",
    "task": "flowpod.tasks",
    "unmapped": "flowpod.utilities.annotations",
}
_SUBMODULES = frozenset({
    "cache_policies", "context", "exceptions", "flows", "futures", "kubernetes", "logging",
    "runtime", "states", "task_runners", "tasks", "utilities",
})


def __getattr__(name: str) -> _Any:
    home = _HOMES.get(name)
    if home is not None:
        value = getattr(_import_module(home), name)
        globals()[name] = value  # later lookups are plain attribute reads
        return value
    if name in _SUBMODULES:
        return _import_module(f"flowpod.{name}")
    # importlib.metadata costs tens of milliseconds: read the version only when asked.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("flowpod")
        except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
            return "0.0.0"
    raise AttributeError(f"module 'flowpod' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES, *_SUBMODULES})


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
