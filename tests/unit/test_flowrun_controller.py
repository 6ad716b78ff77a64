"""The FlowRun controller that carries decisions out, against an in-memory API and store (our
seams): one flow pod per attempt however often events repeat, batched task-count patches,
cancellation of the flow pod and of the TaskRuns, deletion after the TTL."""

from __future__ import annotations

import asyncio
import copy
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flowpod._contract.records import FlowOutcome
from flowpod_operator.flowruns import COUNT_BATCH_S, FlowRunController
from flowpod_operator.kube import Conflict
from flowpod_operator.settings import OperatorConfig, StorageDefaults

CONFIG = OperatorConfig(storage=StorageDefaults(bucket="results"), api_workers=2)


class FakeApi:
    def __init__(self) -> None:
        self.flowruns: dict[str, dict[str, Any]] = {}
        self.taskruns: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.creates: list[str] = []
        self.deleted_pods: list[str] = []
        self.deleted_flowruns: list[str] = []
        self.flow_patches = 0
        self.events: list[tuple[str, str]] = []
        self.rv = 100

    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(obj)

    def add_flowrun(self, name: str, **spec: Any) -> dict[str, Any]:
        body = {"apiVersion": "flowpod.dev/v1alpha1", "kind": "FlowRun",
                "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
                "spec": {"entrypoint": "pkg.mod:flow", **spec}}
        self.flowruns[name] = body
        return self._bump(body)

    def set_spec(self, name: str, **spec: Any) -> dict[str, Any]:
        self.flowruns[name]["spec"].update(spec)
        return self._bump(self.flowruns[name])

    def add_taskrun(self, name: str, flowrun: str, state: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"metadata": {"name": name, "namespace": "ns",
                                             "labels": {"flowpod.dev/flowrun": flowrun}},
                                "spec": {"flowRun": flowrun}, "status": {}}
        if state:
            body["status"] = {"state": state, "attempt": 1}
        self.taskruns[name] = body
        return self._bump(body)

    def create_pod(self, manifest: dict[str, Any]) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        self.creates.append(name)
        if name not in self.pods:
            self.pods[name] = {**copy.deepcopy(manifest), "status": {"phase": "Pending"}}
            return self._bump(self.pods[name])
        return copy.deepcopy(self.pods[name])

    def set_pod_phase(self, name: str, phase: str) -> dict[str, Any]:
        self.pods[name]["status"] = {"phase": phase}
        return self._bump(self.pods[name])

    def read_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        pod = self.pods.get(name)
        return copy.deepcopy(pod) if pod else None

    def read_flowrun(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.flowruns.get(name))

    def read_taskrun(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.taskruns.get(name))

    def _merge(self, body: dict[str, Any], rv: str | None, status: dict[str, Any]) -> Any:
        if rv is not None and rv != body["metadata"]["resourceVersion"]:
            raise Conflict(body["metadata"]["name"])
        merged = dict(body.get("status") or {})
        for key, value in status.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        body["status"] = merged
        return self._bump(body)

    def patch_flowrun_status(self, namespace: str, name: str, rv: str | None,
                             status: dict[str, Any]) -> dict[str, Any]:
        self.flow_patches += 1
        result: dict[str, Any] = self._merge(self.flowruns[name], rv, status)
        return result

    def patch_status(self, namespace: str, name: str, rv: str | None,
                     status: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._merge(self.taskruns[name], rv, status)
        return result

    def delete_pod(self, namespace: str, name: str) -> None:
        self.deleted_pods.append(name)
        self.pods.pop(name, None)

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        key, _, value = selector.partition("=")
        return [copy.deepcopy(p) for p in self.pods.values()
                if (p["metadata"].get("labels") or {}).get(key) == value]

    def post_event(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((body["kind"], reason))

    def delete_flowrun(self, namespace: str, name: str) -> None:
        self.deleted_flowruns.append(name)
        self.flowruns.pop(name, None)


class FakeStores:
    def __init__(self) -> None:
        self.outcomes: dict[tuple[str, int], FlowOutcome] = {}

    def flow_outcome(self, flowrun: Any, attempt: int) -> FlowOutcome | None:
        return self.outcomes.get((flowrun.metadata.name, attempt))


def make() -> tuple[FlowRunController, FakeApi, FakeStores]:
    api, stores = FakeApi(), FakeStores()
    executor = ThreadPoolExecutor(2)
    controller = FlowRunController(CONFIG, api, stores, executor)  # type: ignore[arg-type]
    return controller, api, stores


async def settle(controller: FlowRunController, seconds: float = COUNT_BATCH_S + 0.3) -> None:
    """Let batched count updates and spawned reconciliations run to the end."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline or controller._background:
        await asyncio.sleep(0.02)


def test_lifecycle_with_repeated_events_and_batched_counts() -> None:
    async def scenario() -> None:
        controller, api, stores = make()
        body = api.add_flowrun("fr")
        await controller.flowrun_event("ADDED", body)
        await controller.flowrun_event("MODIFIED", body)  # repeated: no second pod
        assert api.creates == ["fr-flow-1"]
        assert api.flowruns["fr"]["status"]["state"] == "Pending"
        await controller.pod_event("MODIFIED", api.set_pod_phase("fr-flow-1", "Running"))
        assert api.flowruns["fr"]["status"]["state"] == "Running"
        patches = api.flow_patches
        for i in range(5):
            controller.taskrun_seen("ADDED", api.add_taskrun(f"t{i}", "fr", "Running"))
        controller.taskrun_seen("MODIFIED", api.add_taskrun("t0", "fr", "Completed"))
        await settle(controller)
        assert api.flow_patches == patches + 1  # six changes, one patch
        assert api.flowruns["fr"]["status"]["tasksSummary"] == "1/5"
        stores.outcomes[("fr", 1)] = FlowOutcome(1, "Completed", result_ref="r")
        await controller.pod_event("MODIFIED", api.set_pod_phase("fr-flow-1", "Succeeded"))
        status = api.flowruns["fr"]["status"]
        assert status["state"] == "Completed" and status["resultRef"] == "r"
        controller.executor.shutdown()

    asyncio.run(scenario())


def test_cancel_deletes_the_flow_pod_and_cancels_task_runs() -> None:
    async def scenario() -> None:
        controller, api, _ = make()
        await controller.flowrun_event("ADDED", api.add_flowrun("fr"))
        await controller.pod_event("MODIFIED", api.set_pod_phase("fr-flow-1", "Running"))
        controller.taskrun_seen("ADDED", api.add_taskrun("t-run", "fr", "Running"))
        controller.taskrun_seen("ADDED", api.add_taskrun("t-done", "fr", "Completed"))
        api.pods["t-run-1"] = {"metadata": {"name": "t-run-1", "labels": {
            "flowpod.dev/flowrun": "fr"}, "resourceVersion": "1"}, "status": {"phase": "Running"}}
        await controller.flowrun_event("MODIFIED", api.set_spec("fr", cancel=True))
        assert api.flowruns["fr"]["status"]["state"] == "Cancelled"
        assert "fr-flow-1" in api.deleted_pods and "t-run-1" in api.deleted_pods
        assert api.taskruns["t-run"]["status"]["state"] == "Cancelled"
        assert api.taskruns["t-run"]["status"]["history"][-1]["state"] == "Cancelled"
        assert api.taskruns["t-done"]["status"]["state"] == "Completed"
        await settle(controller)
        controller.executor.shutdown()

    asyncio.run(scenario())


def test_ttl_deletes_the_finished_flowrun() -> None:
    async def scenario() -> None:
        controller, api, stores = make()
        await controller.flowrun_event("ADDED", api.add_flowrun("fr", ttlSecondsAfterFinished=0))
        stores.outcomes[("fr", 1)] = FlowOutcome(1, "Failed", message="boom")
        await controller.pod_event("MODIFIED", api.set_pod_phase("fr-flow-1", "Failed"))
        await controller.flowrun_event("MODIFIED", api.read_flowrun("ns", "fr") or {})
        assert api.deleted_flowruns == ["fr"]
        await settle(controller, 0.1)
        assert api.events == [("FlowRun", "Failed")]
        assert ("ns", "fr") not in controller.flowruns
        controller.executor.shutdown()

    asyncio.run(scenario())
