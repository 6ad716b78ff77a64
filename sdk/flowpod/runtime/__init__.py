"""Facts about the run the current code belongs to, as module attributes.

``from flowpod import runtime; runtime.task_run.name`` (or ``flowpod.runtime.flow_run.id``). The
values are read when accessed, from the active run context; outside a run they are empty (None,
``{}``, ``[]``, 0).
"""

from flowpod.runtime import flow_run, task_run

__all__ = ["flow_run", "task_run"]
