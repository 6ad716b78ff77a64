"""``KubernetesTaskRunner``: each ``.submit()`` / ``.map()`` in a flow becomes a TaskRun.

::

    from flowpod import flow, task
    from flowpod.kubernetes import KubernetesTaskRunner

    @flow(task_runner=KubernetesTaskRunner(namespace="etl", image="registry/etl:1.4"))
    def etl(): ...

For each submitted run the runner resolves upstream futures, computes the cache key where the task
was called (``cache_key_fn`` is Python), writes the payload (task + arguments, cloudpickled) to the
result store, and creates a TaskRun whose spec carries retries, the resolved retry-delay list,
jitter, timeout and the cache settings; the flowpod operator runs it as one pod per attempt. One
watch per runner follows all of its TaskRuns (label ``flowpod.dev/runner``); a TaskRun that
reaches a final state resolves its future with the result read back from the store, or with the
task's own exception when the pod could pickle it. ``submit()`` runs a whole flow as a FlowRun.

This module is the public face; the implementation lives in ``flowpod._kube``: ``runner``
(the runner), ``options`` (its options), ``futures``, ``taskruns`` (payload and manifest),
``results`` (states from a TaskRun's status), ``storage_views``, ``payloads``, ``submit``
(FlowRuns), ``preflight`` (the one check of the cluster and the store before the first run)
and ``taskrun_api`` / ``flowrun_api`` (every Kubernetes API call; the seam unit tests replace).
The ``kubernetes`` client, boto3 and pydantic are imported on first use, never by
``import flowpod``.
"""

from __future__ import annotations

# Also importable from here, as before (not in __all__): explicit re-exports.
from flowpod._contract.labels import RUNNER_LABEL as RUNNER_LABEL
from flowpod._kube.futures import KubernetesTaskFuture
from flowpod._kube.options import RunnerOptions as RunnerOptions
from flowpod._kube.runner import KubernetesTaskRunner
from flowpod._kube.submit import FlowRunHandle, submit
from flowpod._kube.taskrun_api import TaskRunApi, WatchExpired
from flowpod._kube.taskruns import FLOWRUN_NAME_VAR as FLOWRUN_NAME_VAR
from flowpod._kube.taskruns import FLOWRUN_UID_VAR as FLOWRUN_UID_VAR
from flowpod._kube.taskruns import taskrun_object_name as taskrun_object_name

__all__ = [
    "FlowRunHandle",
    "KubernetesTaskFuture",
    "KubernetesTaskRunner",
    "TaskRunApi",
    "WatchExpired",
    "submit",
]

