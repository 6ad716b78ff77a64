"""The TaskRun reconciler's own cost, without a cluster: CPU, API calls and memory per TaskRun.

    python bench/operator_local.py [--count 2000] [--flow sim|real] [--profile PATH]

Drives ``flowpod_operator.handlers.Reconciler`` through its public entry points
(``taskrun_event`` / ``pod_event``, what the kopf handlers call) against an in-process fake
cluster that behaves like the API server where the operator can tell: every write bumps the
resourceVersion, returns the whole object (``managedFields`` included) and is echoed on the
watch, in the order the writes happened. Bodies are shaped like the real ones (the SDK's
TaskRun manifest, the operator's own pod manifest plus the API server's defaults), so parsing
and memory costs are real; the HTTP, the kopf machinery and the API server are left out.

All ``--count`` TaskRuns are created at once (every ADDED event is queued before the first is
handled), then a fake kubelet moves each pod along:

- ``sim``: what ``bench/operator_throughput.py`` does - the pod is Unschedulable (its node
  selector fits no node), then the bench marks it Succeeded after writing the outcome;
- ``real``: what a node does - scheduled, ContainerCreating, Running, Succeeded.

With ``--kopf`` every event goes through kopf's own per-event processing
(``process_resource_event``: memories, loggers, cause detection, the registered handlers of
``flowpod_operator.handlers`` with the operator's kopf settings) instead of straight to the
reconciler: the difference is kopf's share of the CPU (the watch streams' HTTP and JSON aside).

Prints operator CPU per TaskRun, API calls and watch events per TaskRun by kind, and the
Python heap's peak (tracemalloc) per TaskRun.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import cProfile
import gc
import json
import os
import sys
import time
import tracemalloc
from collections import Counter, deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "sdk"), str(ROOT / "operator")]

from flowpod._contract.records import Outcome  # noqa: E402
from flowpod._contract.resources import TaskRunResource, TaskRunSpec  # noqa: E402
from flowpod_operator.handlers import Reconciler  # noqa: E402
from flowpod_operator.kube import Conflict  # noqa: E402
from flowpod_operator.settings import OperatorConfig, StorageDefaults  # noqa: E402

NS = "bench"
STAMP = "2026-11-30T00:00:00Z"


def _managed(manager: str, operation: str, subresource: str | None = None) -> dict[str, Any]:
    """A managedFields entry of roughly the real size."""
    entry: dict[str, Any] = {
        "apiVersion": "v1", "fieldsType": "FieldsV1", "manager": manager,
        "operation": operation, "time": STAMP,
        "fieldsV1": {"f:metadata": {"f:labels": {f"f:l{i}": {} for i in range(4)}},
                     "f:spec": {f"f:field{i}": {} for i in range(20)},
                     "f:status": {f"f:s{i}": {} for i in range(10)}},
    }
    if subresource:
        entry["subresource"] = subresource
    return entry


class FakeCluster:
    """TaskRuns and pods with resourceVersions; every write is queued as a watch event."""

    def __init__(self) -> None:
        self.taskruns: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.events: deque[tuple[str, str, dict[str, Any]]] = deque()
        self.calls: Counter[str] = Counter()
        self.requests = self.calls  # what KubeApi counts
        self.rv = 1000
        self.outcomes: dict[tuple[str, int], Outcome] = {}
        self.kubelet: deque[str] = deque()

    def _bump(self, obj: dict[str, Any]) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def _emit(self, kind: str, type_: str, obj: dict[str, Any]) -> None:
        # The watch delivers a freshly decoded copy of each version of the object.
        self.events.append((kind, type_, json.loads(json.dumps(obj))))

    # -- what the SDK does ----------------------------------------------------------------------

    def create_taskrun(self, name: str) -> None:
        spec = TaskRunSpec(task_name="trivial", task_key="bench.trivial", run_name="trivial-0",
                           payload=f"ns/{name}/payload.pkl")
        body = spec.to_manifest(name, NS)
        body["metadata"].update(uid=f"uid-{name}", generation=1, creationTimestamp=STAMP,
                                managedFields=[_managed("flowpod", "Update")])
        self._bump(body)
        self.taskruns[name] = body
        self._emit("taskrun", "ADDED", body)

    # -- the operator's API (the KubeApi seam) --------------------------------------------------

    def create_pod(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.calls["POST pods"] += 1
        name = manifest["metadata"]["name"]
        if name in self.pods:
            return copy.deepcopy(self.pods[name])
        pod = copy.deepcopy(manifest)
        meta = pod["metadata"]
        meta.update(uid=f"uid-{name}", creationTimestamp=STAMP,
                    managedFields=[_managed("flowpod-operator", "Update")])
        spec = pod["spec"]
        spec.update(dnsPolicy="ClusterFirst", schedulerName="default-scheduler",
                    terminationGracePeriodSeconds=30, enableServiceLinks=True,
                    preemptionPolicy="PreemptLowerPriority", priority=0)
        spec["tolerations"] = [
            {"key": f"node.kubernetes.io/{k}", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300} for k in ("not-ready", "unreachable")]
        for container in spec["containers"]:
            container.update(terminationMessagePath="/dev/termination-log",
                             terminationMessagePolicy="File")
        pod["status"] = {"phase": "Pending", "qosClass": "Burstable"}
        self._bump(pod)
        self.pods[name] = pod
        self._emit("pod", "ADDED", pod)
        self.kubelet.append(name)
        return copy.deepcopy(pod)

    def read_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls["GET pods"] += 1
        pod = self.pods.get(name)
        return copy.deepcopy(pod) if pod else None

    def read_taskrun(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls["GET taskruns"] += 1
        body = self.taskruns.get(name)
        return copy.deepcopy(body) if body else None

    def patch_status(self, namespace: str, name: str, rv: str | None,
                     status: dict[str, Any]) -> dict[str, Any]:
        self.calls["PATCH taskruns/status"] += 1
        body = self.taskruns[name]
        if rv and rv != body["metadata"]["resourceVersion"]:
            self.calls["409 taskruns/status"] += 1
            raise Conflict(name)
        merged = dict(body.get("status") or {})
        for key, value in status.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        body["status"] = merged
        self._bump(body)
        self._emit("taskrun", "MODIFIED", body)
        return copy.deepcopy(body)

    def delete_pod(self, namespace: str, name: str) -> None:
        self.calls["DELETE pods"] += 1

    def post_event(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.calls["POST events"] += 1

    def close(self) -> None:
        pass

    # -- the store ------------------------------------------------------------------------------

    def outcome(self, taskrun: TaskRunResource, attempt: int) -> Outcome | None:
        self.calls["S3 outcome"] += 1
        return self.outcomes.get((taskrun.metadata.name or "", attempt))

    def cache_record(self, taskrun: TaskRunResource) -> None:
        self.calls["S3 cache"] += 1
        return None

    # -- the kubelet ----------------------------------------------------------------------------

    def _pod_status(self, name: str, status: dict[str, Any]) -> None:
        pod = self.pods[name]
        pod["status"] = {**pod["status"], **status}
        self._bump(pod)
        self._emit("pod", "MODIFIED", pod)

    def kubelet_steps(self, flow: str, name: str) -> list[dict[str, Any]]:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # the kubelet's clock
        container = {"name": "task", "image": "flowpod:dev", "imageID": "", "ready": False,
                     "restartCount": 0, "started": False}
        scheduled = {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                     "lastTransitionTime": stamp}
        if flow == "sim":
            return [
                {"conditions": [{"type": "PodScheduled", "status": "False",
                                 "reason": "Unschedulable", "lastProbeTime": None,
                                 "lastTransitionTime": stamp,
                                 "message": "0/1 nodes are available: 1 node(s) didn't match "
                                            "Pod's node affinity/selector."}]},
                {"phase": "Succeeded", "startTime": stamp, "containerStatuses": [
                    {**container, "state": {"terminated": {
                        "exitCode": 0, "reason": "Completed", "startedAt": stamp,
                        "finishedAt": stamp}}}]},
            ]
        return [
            {"conditions": [scheduled]},
            {"hostIP": "10.0.0.2", "startTime": stamp, "containerStatuses": [
                {**container, "state": {"waiting": {"reason": "ContainerCreating"}}}]},
            {"phase": "Running", "podIP": "10.244.0.9", "containerStatuses": [
                {**container, "ready": True, "started": True,
                 "state": {"running": {"startedAt": stamp}}}]},
            {"phase": "Succeeded", "containerStatuses": [
                {**container, "state": {"terminated": {
                    "exitCode": 0, "reason": "Completed", "startedAt": stamp,
                    "finishedAt": stamp}}}]},
        ]


def _kopf_dispatch(reconciler: Reconciler, cluster: FakeCluster) -> Any:
    """An event dispatcher through kopf's processing of one watch event."""
    import kopf
    from kopf._cogs.structs import ephemera, references
    from kopf._core.engines import indexing
    from kopf._core.intents import registries
    from kopf._core.reactor import processing

    from flowpod_operator import handlers
    from flowpod_operator.flowruns import FlowRunController

    settings = kopf.OperatorSettings()
    handlers.tune(settings)
    handlers._reconciler = reconciler
    handlers._flowruns = FlowRunController(reconciler.config, cluster,  # type: ignore[arg-type]
                                           cluster, reconciler.executor)  # type: ignore[arg-type]
    registry = registries.get_default_registry()
    memories = handlers.ForgetfulMemories()
    indexers = indexing.OperatorIndexers()
    memobase = ephemera.AnyMemo(ephemera.Memo())
    resources = {
        "taskrun": references.Resource("flowpod.dev", "v1alpha1", "taskruns", kind="TaskRun",
                                       namespaced=True),
        "pod": references.Resource("", "v1", "pods", kind="Pod", namespaced=True),
    }
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def dispatch(kind: str, type_: str, body: dict[str, Any]) -> None:
        await processing.process_resource_event(
            lifecycle=kopf.lifecycles.all_at_once, indexers=indexers, registry=registry,
            settings=settings, memories=memories, memobase=memobase,
            resource=resources[kind], raw_event={"type": type_, "object": body},
            event_queue=queue, no_throttling=True)
        while not queue.empty():
            queue.get_nowait()

    return dispatch


async def drive(count: int, flow: str, config: OperatorConfig,
                through_kopf: bool = False) -> tuple[FakeCluster, Counter[str]]:
    cluster = FakeCluster()
    reconciler = Reconciler(config, cluster, cluster)  # type: ignore[arg-type]

    async def direct(kind: str, type_: str, body: dict[str, Any]) -> None:
        if kind == "taskrun":
            await reconciler.taskrun_event(type_, body)
        else:
            await reconciler.pod_event(type_, body)

    dispatch = _kopf_dispatch(reconciler, cluster) if through_kopf else direct
    handled: Counter[str] = Counter()
    plans: dict[str, deque[dict[str, Any]]] = {}
    for i in range(count):
        cluster.create_taskrun(f"run-{i:06d}")
    try:
        while cluster.events or cluster.kubelet:
            while cluster.events:
                kind, type_, body = cluster.events.popleft()
                handled[f"watch {kind}"] += 1
                await dispatch(kind, type_, body)
            # The kubelet moves every live pod one step, then the watch catches up (a burst).
            for _ in range(len(cluster.kubelet)):
                name = cluster.kubelet.popleft()
                plan = plans.setdefault(name, deque(cluster.kubelet_steps(flow, name)))
                step = plan.popleft()
                if step.get("phase") == "Succeeded":
                    run = name.rsplit("-", 1)[0]
                    cluster.outcomes[(run, 1)] = Outcome(attempt=1, state="Completed",
                                                         result_ref="bench/none")
                cluster._pod_status(name, step)
                if plan:
                    cluster.kubelet.append(name)
                else:
                    del plans[name]
        await asyncio.sleep(0)
    finally:
        reconciler.executor.shutdown(wait=True)
    done = sum(1 for body in cluster.taskruns.values()
               if (body.get("status") or {}).get("state") == "Completed")
    assert done == count, f"only {done} of {count} TaskRuns Completed"
    for name, value in reconciler.counters().items():
        if not name.startswith("api ") and not name.startswith("watch"):
            handled[f"operator {name}"] = value
        elif name.startswith("watch") and "skipped" in name:
            handled[name] = value
    handled["memory: tracked runs left"] = len(getattr(reconciler, "taskruns", {}))
    handled["memory: tracked pods left"] = len(reconciler.pods)
    return cluster, handled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--flow", choices=("sim", "real"), default="sim")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--kopf", action="store_true",
                        help="route every event through kopf's event processing")
    parser.add_argument("--memory", action="store_true",
                        help="also measure the heap's peak (tracemalloc; slows the CPU figure)")
    parser.add_argument("--profile", metavar="PATH", help="cProfile the run into PATH")
    args = parser.parse_args(argv)
    config = OperatorConfig(storage=StorageDefaults(bucket="results"), success_events=False)
    if args.workers:
        config = OperatorConfig(storage=StorageDefaults(bucket="results"),
                                api_workers=args.workers)
    gc.collect()
    if args.memory:
        tracemalloc.start()
    profiler = cProfile.Profile() if args.profile else None
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    cluster, handled = asyncio.run(drive(args.count, args.flow, config, args.kopf))
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    n = args.count
    print(f"operator reconciler{' via kopf' if args.kopf else ''}, fake cluster "
          f"({args.flow} kubelet, {n} TaskRuns at once, "
          f"pid {os.getpid()})")
    print(f"  CPU per TaskRun            {cpu / n * 1000:7.2f} ms   (wall {wall:.1f} s)")
    for name, value in sorted({**cluster.calls, **handled}.items()):
        if name.startswith("memory"):
            print(f"  {name:<26} {value:7d}")
        else:
            print(f"  {name:<26} {value / n:7.2f} per TaskRun")
    writes = sum(v for k, v in cluster.calls.items()
                 if k.split()[0] in ("POST", "PATCH", "DELETE"))
    print(f"  {'API writes':<26} {writes / n:7.2f} per TaskRun")
    if args.memory:
        _, peak = tracemalloc.get_traced_memory()
        print(f"  heap peak                  {peak / n / 1024:7.1f} KiB per TaskRun "
              f"({peak / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
