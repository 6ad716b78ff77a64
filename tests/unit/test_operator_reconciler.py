"""The reconciler that carries decisions out, against an in-memory API and store (our seams).

Checks the wiring the pure decisions rely on: repeated and stale events create nothing twice,
a restarted operator finds pods by reading them, a conflicting status patch is re-decided on
fresh data, and a retry waits in the shared scheduler.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable
from typing import Any

from flowpod._contract.records import CacheRecord, Outcome
from flowpod._contract.resources import TaskRunResource
from flowpod_operator.handlers import Reconciler
from flowpod_operator.kube import Conflict
from flowpod_operator.settings import OperatorConfig, StorageDefaults

CONFIG = OperatorConfig(storage=StorageDefaults(bucket="results"), api_workers=2)


class FakeApi:
    """Objects by name with resourceVersions; merge-patches status like the API server."""

    def __init__(self) -> None:
        self.taskruns: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.creates: list[str] = []
        self.patches = 0
        self.events: list[tuple[str, str]] = []
        self.rv = 100
        self.conflict_next = False
        self.requests: dict[str, int] = {}

    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(obj)

    def add_taskrun(self, name: str, **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": "flowpod.dev/v1alpha1", "kind": "TaskRun",
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
            "spec": {"taskName": "t", "taskKey": "k", "runName": "t-0", "payload": "p", **spec},
        }
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

    def read_taskrun(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.taskruns.get(name))

    def patch_status(self, namespace: str, name: str, rv: str | None,
                     status: dict[str, Any]) -> dict[str, Any]:
        body = self.taskruns[name]
        if self.conflict_next or rv != body["metadata"]["resourceVersion"]:
            self.conflict_next = False
            raise Conflict(name)
        merged = dict(body.get("status") or {})
        for key, value in status.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        body["status"] = merged
        self.patches += 1
        return self._bump(body)

    def post_event(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason))


class FakeStores:
    def __init__(self) -> None:
        self.outcomes: dict[tuple[str, int], Outcome] = {}
        self.records: dict[str, CacheRecord] = {}

    def outcome(self, taskrun: TaskRunResource, attempt: int) -> Outcome | None:
        return self.outcomes.get((taskrun.metadata.name or "", attempt))

    def cache_record(self, taskrun: TaskRunResource) -> CacheRecord | None:
        return self.records.get(taskrun.spec.cache_key or "")


def run(test: Callable[[Reconciler, FakeApi, FakeStores], Awaitable[None]]) -> None:
    api, stores = FakeApi(), FakeStores()

    async def main() -> None:
        reconciler = Reconciler(CONFIG, api, stores)  # type: ignore[arg-type]
        try:
            await test(reconciler, api, stores)
        finally:
            reconciler.executor.shutdown(wait=True)

    asyncio.run(main())


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def state(api: FakeApi, name: str) -> str | None:
    return (api.taskruns[name].get("status") or {}).get("state")


def test_repeated_and_stale_events_create_one_pod() -> None:
    async def scenario(rec: Reconciler, api: FakeApi, stores: FakeStores) -> None:
        first = api.add_taskrun("a")
        await rec.taskrun_event("ADDED", first)
        assert api.creates == ["a-1"] and state(api, "a") == "Pending"
        await rec.taskrun_event(None, first)  # the same (now stale) object again
        await rec.taskrun_event("MODIFIED", api.read_taskrun("ns", "a") or {})  # our echo
        assert api.creates == ["a-1"] and api.patches == 1

        await rec.pod_event("MODIFIED", api.set_pod_phase("a-1", "Running"))
        assert state(api, "a") == "Running"
        stores.outcomes[("a", 1)] = Outcome(attempt=1, state="Completed", result_ref="r")
        done = api.set_pod_phase("a-1", "Succeeded")
        await rec.pod_event("MODIFIED", done)
        await rec.pod_event("MODIFIED", done)
        assert state(api, "a") == "Completed"
        assert api.taskruns["a"]["status"]["resultRef"] == "r"
        assert api.patches == 3
        assert [e["state"] for e in api.taskruns["a"]["status"]["history"]] == [
            "Pending", "Running", "Completed"
        ]

    run(scenario)


def test_restarted_operator_reads_the_pod_it_has_not_seen() -> None:
    async def scenario(rec: Reconciler, api: FakeApi, stores: FakeStores) -> None:
        api.add_taskrun("b")
        await rec.taskrun_event("ADDED", api.read_taskrun("ns", "b") or {})
        api.set_pod_phase("b-1", "Succeeded")  # finished while "the operator was down"
        stores.outcomes[("b", 1)] = Outcome(attempt=1, state="Completed", result_ref="r")
        fresh = Reconciler(CONFIG, api, stores)  # type: ignore[arg-type]
        try:
            await fresh.taskrun_event(None, api.read_taskrun("ns", "b") or {})
        finally:
            fresh.executor.shutdown(wait=True)
        assert state(api, "b") == "Completed" and api.creates == ["b-1"]

    run(scenario)


def test_conflicting_patch_is_decided_again_on_fresh_data() -> None:
    async def scenario(rec: Reconciler, api: FakeApi, stores: FakeStores) -> None:
        api.add_taskrun("c")
        api.conflict_next = True
        await rec.taskrun_event("ADDED", api.read_taskrun("ns", "c") or {})
        assert state(api, "c") == "Pending"
        assert api.creates == ["c-1", "c-1"]  # the repeat is an adoption, not a second pod
        assert len(api.pods) == 1
        assert len(api.taskruns["c"]["status"]["history"]) == 1

    run(scenario)


def test_retry_waits_in_the_shared_scheduler_then_creates_the_next_pod() -> None:
    async def scenario(rec: Reconciler, api: FakeApi, stores: FakeStores) -> None:
        api.add_taskrun("d", retries=1, retryDelaySeconds=[0.2])
        await rec.taskrun_event("ADDED", api.read_taskrun("ns", "d") or {})
        stores.outcomes[("d", 1)] = Outcome(attempt=1, state="Failed", exception="E()")
        started = time.monotonic()
        await rec.pod_event("MODIFIED", api.set_pod_phase("d-1", "Failed"))
        assert state(api, "d") == "AwaitingRetry"
        await until(lambda: ("Warning", "AwaitingRetry") in api.events)  # posted in background
        await until(lambda: api.creates == ["d-1", "d-2"])
        assert time.monotonic() - started >= 0.15
        # The pod is created before the status patch lands: wait for it rather than race it.
        await until(lambda: state(api, "d") == "Retrying")
        assert api.taskruns["d"]["status"]["attempt"] == 2

    run(scenario)


def test_cache_hit_creates_no_pod() -> None:
    async def scenario(rec: Reconciler, api: FakeApi, stores: FakeStores) -> None:
        from datetime import UTC, datetime

        stores.records["ck"] = CacheRecord("ck", "k", "cache/ck.value", "pickle",
                                           datetime.now(UTC), None)
        api.add_taskrun("e", cacheKey="ck")
        await rec.taskrun_event("ADDED", api.read_taskrun("ns", "e") or {})
        assert state(api, "e") == "Cached" and api.creates == []
        assert api.taskruns["e"]["status"]["resultRef"] == "cache/ck.value"

    run(scenario)


def test_taskrun_the_models_refuse_is_failed_with_the_reason() -> None:
    async def scenario(rec: Reconciler, api: FakeApi, stores: FakeStores) -> None:
        body = api.add_taskrun("f")
        api.taskruns["f"]["spec"]["retries"] = -1  # what an outdated CRD might let through
        body["spec"]["retries"] = -1
        await rec.taskrun_event("ADDED", body)
        assert state(api, "f") == "Failed" and api.creates == []
        assert "retries" in api.taskruns["f"]["status"]["message"]
        await until(lambda: ("Warning", "Invalid") in api.events)

    run(scenario)


# -- less work and fewer writes per TaskRun (issue 15) ------------------------------------------


def test_own_echoes_and_pod_events_that_change_nothing_are_not_reconciled() -> None:
    async def scenario(rec: Reconciler, api: FakeApi, stores: FakeStores) -> None:
        await rec.taskrun_event("ADDED", api.add_taskrun("g"))
        assert rec.counts["reconciles"] == 1
        await rec.taskrun_event("MODIFIED", api.read_taskrun("ns", "g") or {})  # our echo
        await rec.pod_event("ADDED", api.read_pod("ns", "g-1") or {})  # our create echoed
        pod = api.pods["g-1"]
        pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "True"}]
        pod["status"]["podIP"] = "10.0.0.9"
        await rec.pod_event("MODIFIED", api._bump(pod))  # scheduled: nothing decided on
        assert rec.counts["reconciles"] == 1
        assert rec.counts["watch taskruns skipped"] == 1
        assert rec.counts["watch pods skipped"] == 2
        assert api.patches == 1

    run(scenario)


def test_only_what_decisions_read_is_kept_of_runs_and_pods() -> None:
    async def scenario(rec: Reconciler, api: FakeApi, stores: FakeStores) -> None:
        body = api.add_taskrun("h")
        body["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
        await rec.taskrun_event("ADDED", body)
        kept_run = rec.taskruns[("ns", "h")]
        assert "managedFields" not in kept_run["metadata"]
        kept_pod = rec.pods[("ns", "h-1")]
        assert set(kept_pod) == {"metadata", "spec", "status"}
        assert "ownerReferences" not in kept_pod["metadata"]
        assert "volumes" not in kept_pod["spec"] and "env" not in str(kept_pod["spec"])

    run(scenario)


def test_a_finished_run_leaves_no_timer_lock_or_record_behind() -> None:
    async def scenario(rec: Reconciler, api: FakeApi, stores: FakeStores) -> None:
        await rec.taskrun_event("ADDED", api.add_taskrun("i"))
        assert ("ns", "i") in rec._timers  # the pending deadline
        stores.outcomes[("i", 1)] = Outcome(attempt=1, state="Completed", result_ref="r")
        await rec.pod_event("MODIFIED", api.set_pod_phase("i-1", "Succeeded"))
        assert state(api, "i") == "Completed"
        assert not rec.taskruns and not rec.pods and not rec._timers and not rec._locks
        await rec.reconcile(("ns", "i"))  # a late timer
        assert not rec._locks

    run(scenario)


def test_a_short_task_costs_one_create_and_two_patches() -> None:
    async def scenario(rec: Reconciler, api: FakeApi, stores: FakeStores) -> None:
        from datetime import UTC, datetime

        await rec.taskrun_event("ADDED", api.add_taskrun("j"))
        now = datetime.now(UTC).isoformat()
        api.pods["j-1"]["status"] = {"phase": "Running", "startTime": now, "containerStatuses": [
            {"name": "task", "state": {"running": {"startedAt": now}}}]}
        await rec.pod_event("MODIFIED", api._bump(api.pods["j-1"]))
        assert state(api, "j") == "Pending"  # Running waits for the report delay
        stores.outcomes[("j", 1)] = Outcome(attempt=1, state="Completed", result_ref="r")
        api.pods["j-1"]["status"] = {"phase": "Succeeded", "startTime": now}
        await rec.pod_event("MODIFIED", api._bump(api.pods["j-1"]))
        assert state(api, "j") == "Completed"
        assert api.creates == ["j-1"] and api.patches == 2 and api.events == []
        assert [e["state"] for e in api.taskruns["j"]["status"]["history"]] == [
            "Pending", "Running", "Completed"]

    run(scenario)


def test_a_cache_hit_is_answered_in_one_patch() -> None:
    async def scenario(rec: Reconciler, api: FakeApi, stores: FakeStores) -> None:
        from datetime import UTC, datetime

        stores.records["ck"] = CacheRecord("ck", "k", "cache/ck.value", "pickle",
                                           datetime.now(UTC), None)
        await rec.taskrun_event("ADDED", api.add_taskrun("k", cacheKey="ck"))
        await rec.taskrun_event("MODIFIED", api.read_taskrun("ns", "k") or {})  # the echo
        assert state(api, "k") == "Cached"
        assert api.patches == 1 and api.creates == [] and api.events == []
        assert not rec.taskruns

    run(scenario)


def test_counters_name_the_api_requests_by_kind() -> None:
    from flowpod_operator.kube import request_kind

    assert request_kind("POST", "/api/v1/namespaces/ns/pods") == "POST pods"
    assert request_kind("GET", "/api/v1/namespaces/ns/pods/a-1") == "GET pods"
    assert request_kind(
        "PATCH", "/apis/flowpod.dev/v1alpha1/namespaces/ns/taskruns/a/status"
    ) == "PATCH taskruns/status"
    assert request_kind("GET", "/api/v1/namespaces/ns/pods?labelSelector=x") == "GET pods"


def test_kopf_keeps_no_memory_of_the_objects_it_has_handled() -> None:
    from flowpod_operator.handlers import ForgetfulMemories

    async def scenario() -> None:
        memories = ForgetfulMemories()
        body = {"metadata": {"uid": "u-1", "name": "a", "namespace": "ns"}}
        first = await memories.recall(body)
        second = await memories.recall(body, noticed_by_listing=True)
        assert first is not second  # a fresh record per event
        assert list(memories.iter_all_memories()) == []

    asyncio.run(scenario())


def test_the_counters_are_logged_as_one_json_line(caplog: Any) -> None:
    import json
    import logging

    from flowpod_operator import handlers

    async def scenario(rec: Reconciler, api: FakeApi, stores: FakeStores) -> None:
        await rec.taskrun_event("ADDED", api.add_taskrun("l"))
        api.requests["POST pods"] = 1
        handlers._reconciler = rec
        try:
            with caplog.at_level(logging.INFO, logger="flowpod.operator"):
                handlers.log_counters()
        finally:
            handlers._reconciler = None

    run(scenario)
    line = next(r.getMessage() for r in caplog.records if "flowpod counters" in r.getMessage())
    counters = json.loads(line.split("flowpod counters: ", 1)[1])
    assert counters["reconciles"] == 1 and counters["watch taskruns"] == 1
    assert counters["api POST pods"] == 1


def test_capping_malloc_arenas_is_harmless_anywhere() -> None:
    from flowpod_operator.__main__ import limit_malloc_arenas

    assert limit_malloc_arenas() in (True, False)  # False: not glibc, nothing done


def test_queued_events_coalesce_and_at_most_max_in_flight_reconciles_run() -> None:
    api, stores = FakeApi(), FakeStores()
    running_now = [0]
    most = [0]

    async def main() -> None:
        rec = Reconciler(CONFIG, api, stores, max_in_flight=3)  # type: ignore[arg-type]
        step = rec._step

        async def counted(*args: Any) -> None:
            running_now[0] += 1
            most[0] = max(most[0], running_now[0])
            try:
                await asyncio.sleep(0.01)  # a slow API: reconciles overlap if allowed to
                await step(*args)
            finally:
                running_now[0] -= 1

        rec._step = counted  # type: ignore[method-assign]
        try:
            for i in range(10):
                await rec.taskrun_event("ADDED", api.add_taskrun(f"q{i}"))
            # The handler returned at once: nothing reconciled yet, all ten queued.
            assert api.creates == [] and len(rec._queued) == 10
            await until(rec.idle)
            assert sorted(api.creates) == sorted(f"q{i}-1" for i in range(10))
            assert most[0] == 3

            # Three pod events for one run while it waits in the queue: one reconcile.
            stores.outcomes[("q0", 1)] = Outcome(attempt=1, state="Completed", result_ref="r")
            before = rec.counts["reconciles"]
            for phase in ("Running", "Running", "Succeeded"):
                api.pods["q0-1"]["status"] = {"phase": phase}
                await rec.pod_event("MODIFIED", api._bump(api.pods["q0-1"]))
            assert len(rec._queued) == 1  # no await between them yielded to the queue
            await until(rec.idle)
            assert rec.counts["reconciles"] == before + 1 and state(api, "q0") == "Completed"
        finally:
            rec.executor.shutdown(wait=True)

    asyncio.run(main())


def test_an_outcome_in_the_pods_termination_message_spares_the_store_read() -> None:
    async def scenario(rec: Reconciler, api: FakeApi, stores: FakeStores) -> None:
        api.add_taskrun("t")
        await rec.taskrun_event("ADDED", api.read_taskrun("ns", "t") or {})
        told = Outcome(attempt=1, state="Completed", result_ref="from-the-pod")
        message = told.to_termination_message()
        api.pods["t-1"]["status"] = {"phase": "Succeeded", "containerStatuses": [
            {"name": "task", "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                      "message": message}}}]}
        # The store holds another record: the one the pod reported is what counts.
        stores.outcomes[("t", 1)] = Outcome(attempt=1, state="Completed", result_ref="store")
        await rec.pod_event("MODIFIED", api._bump(api.pods["t-1"]))
        assert state(api, "t") == "Completed"
        assert api.taskruns["t"]["status"]["resultRef"] == "from-the-pod"
        assert rec.counts["pod outcomes"] == 1 and rec.counts["store outcome reads"] == 0

    run(scenario)


def test_a_pod_without_its_outcome_in_the_message_is_judged_from_the_store() -> None:
    async def scenario(rec: Reconciler, api: FakeApi, stores: FakeStores) -> None:
        api.add_taskrun("u")
        await rec.taskrun_event("ADDED", api.read_taskrun("ns", "u") or {})
        stale = Outcome(attempt=2, state="Failed").to_termination_message()  # not this attempt
        api.pods["u-1"]["status"] = {"phase": "Succeeded", "containerStatuses": [
            {"name": "task", "state": {"terminated": {"exitCode": 0, "message": stale}}}]}
        stores.outcomes[("u", 1)] = Outcome(attempt=1, state="Completed", result_ref="store")
        await rec.pod_event("MODIFIED", api._bump(api.pods["u-1"]))
        assert api.taskruns["u"]["status"]["resultRef"] == "store"
        assert rec.counts["store outcome reads"] == 1 and rec.counts["pod outcomes"] == 0

    run(scenario)
