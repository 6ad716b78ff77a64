"""The run records, under the name the task pods and the Kubernetes task runner import them by.

They live in ``flowpod.context.runs``, below the engine, because the run contexts hold them.
"""

from __future__ import annotations

from flowpod.context.runs import FlowRun, TaskRun

__all__ = ["FlowRun", "TaskRun"]
