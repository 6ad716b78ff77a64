"""``WatchHub`` over a fake API server: one list+watch per kind, the in-memory copy, batched
notices, re-listing on 410, back-off on errors, the scope of -n, and the 403 fall-back to the
default namespace."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from _ui_fakes import FakeHubApi, event, flowrun, taskrun, wait_for

from flowpod._ui.hub import KINDS, WatchHub


@pytest.fixture
def api() -> Iterator[FakeHubApi]:
    fake = FakeHubApi()
    yield fake
    fake.close()


def started(api: FakeHubApi, **options: object) -> WatchHub:
    hub = WatchHub(api, batch_seconds=0.05, **options)  # type: ignore[arg-type]
    hub.start()
    assert hub.wait_synced(5)
    for kind in KINDS:
        wait_for(lambda kind=kind: api.watching(kind))  # type: ignore[misc]
    return hub


def test_one_list_and_one_watch_per_kind_and_a_slim_copy(api: FakeHubApi) -> None:
    api.add("flowruns", flowrun())
    api.add("taskruns", taskrun("add-0"))
    api.add("pods", {"metadata": {"name": "add-0-1", "namespace": "team-a"},
                     "spec": {"containers": [{"env": [{"name": "K", "value": "secret"}]}]},
                     "status": {"phase": "Running"}})
    hub = started(api)
    try:
        assert hub.stats() == {"list": 4, "watch": 4, "log": 0, "patch": 0}
        assert sorted(args[1] for args in api.list_args) == sorted(KINDS)
        assert all(args[0] is None for args in api.list_args)  # cluster-wide
        assert dict(api.calls) == {"list": 4, "watch": 4}
        assert [t["metadata"]["name"] for t in hub.taskruns_of("team-a", "etl-x")] == ["add-0"]
        pod = hub.get("pods", "team-a", "add-0-1")
        assert pod is not None and "spec" not in pod and pod["status"]["phase"] == "Running"
        run = hub.get("flowruns", "team-a", "etl-x")
        assert run is not None and "env" not in run["spec"]  # values from Secrets never held
    finally:
        hub.stop()


def test_watch_changes_update_the_copy_and_the_index(api: FakeHubApi) -> None:
    hub = started(api)
    try:
        api.emit("taskruns", "ADDED", taskrun("add-1"))
        wait_for(lambda: hub.get("taskruns", "team-a", "add-1"))
        api.emit("taskruns", "MODIFIED", taskrun("add-1", state="Completed"))
        wait_for(lambda: hub.get("taskruns", "team-a", "add-1")["status"]["state"] == "Completed")
        assert len(hub.taskruns_of("team-a", "etl-x")) == 1
        api.emit("taskruns", "DELETED", taskrun("add-1"))
        wait_for(lambda: hub.get("taskruns", "team-a", "add-1") is None)
        assert hub.taskruns_of("team-a", "etl-x") == []
        api.emit("events", "ADDED", event("TaskRun", "add-1"))
        api.emit("events", "ADDED", event("Node", "n1"))  # not about a run: not kept
        wait_for(lambda: hub.events_for("team-a", "TaskRun", "add-1"))
        assert hub.events_for("team-a", "Node", "n1") == []
        assert hub.stats()["list"] == 4 and hub.stats()["watch"] == 4
    finally:
        hub.stop()


def test_an_expired_watch_lists_again_and_a_broken_one_backs_off_and_says_so(
        api: FakeHubApi) -> None:
    hub = started(api)
    try:
        api.add("flowruns", flowrun("late"))  # missed by the watch: the re-list finds it
        api.expire("flowruns")
        wait_for(lambda: hub.get("flowruns", "team-a", "late"))
        assert hub.stats()["list"] == 5 and hub.banner() == []
        api.fail_next_list = 1
        api.break_watch("taskruns")
        wait_for(lambda: hub.banner())
        assert "Watching taskruns failed" in hub.banner()[0]
        wait_for(lambda: not hub.banner(), timeout=5)  # listed again after 1 s
        assert hub.stats()["list"] == 7
    finally:
        hub.stop()


def test_namespaces_given_are_the_scope_as_with_kubectl_n() -> None:
    api = FakeHubApi()
    api.add("flowruns", flowrun("mine", namespace="ns1"))
    api.add("flowruns", flowrun("other", namespace="ns3"))
    hub = WatchHub(api, ["ns1", "ns2"], batch_seconds=0.05)
    hub.start()
    try:
        assert hub.wait_synced(5)
        wait_for(lambda: api.watching("flowruns") == 2)
        assert [r["metadata"]["name"] for r in hub.flowruns()] == ["mine"]
        assert {args[0] for args in api.list_args if args[1] == "flowruns"} == {"ns1", "ns2"}
        assert hub.banner() == []
    finally:
        hub.stop()
        api.close()


def test_a_refused_cluster_wide_list_falls_back_to_the_default_namespace() -> None:
    api = FakeHubApi(forbid_cluster=True)
    api.add("flowruns", flowrun("mine", namespace="team-a"))
    api.add("flowruns", flowrun("other", namespace="ns3"))
    hub = WatchHub(api, batch_seconds=0.05)
    hub.start()
    try:
        assert hub.wait_synced(5)
        wait_for(lambda: api.watching("flowruns") == 1)
        assert [r["metadata"]["name"] for r in hub.flowruns()] == ["mine"]
        assert hub.banner() == ["Listing across the cluster is not allowed (403): showing "
                                "namespace team-a only."]
        assert {args[0] for args in api.list_args if args[1] == "flowruns"} == {
            None, "team-a"}
    finally:
        hub.stop()
        api.close()


def test_a_burst_of_changes_reaches_a_subscriber_as_few_batched_notices(
        api: FakeHubApi) -> None:
    hub = started(api)

    async def run() -> list[list[dict[str, str]]]:
        mine = hub.subscribe(("team-a", "etl-x"))
        everything = hub.subscribe(None)
        for i in range(1000):
            api.emit("taskruns", "MODIFIED", taskrun(f"add-{i}"))
        api.emit("flowruns", "MODIFIED", flowrun())
        api.emit("taskruns", "MODIFIED", taskrun("other-0", flowrun_name="other"))
        await asyncio.to_thread(wait_for, lambda: len(hub.taskruns_of("team-a", "etl-x"))
                                == 1000 and hub.get("flowruns", "team-a", "etl-x"))
        batches = [await asyncio.wait_for(mine.queue.get(), 5)]
        while not any(n["kind"] == "flowruns" for b in batches for n in b):
            batches.append(await asyncio.wait_for(mine.queue.get(), 5))
        runs_page = await asyncio.wait_for(everything.queue.get(), 5)
        assert [n["kind"] for n in runs_page] == ["flowruns"]
        hub.unsubscribe(mine)
        hub.unsubscribe(everything)
        return batches

    try:
        batches = asyncio.run(run())
        notices = [notice for batch in batches for notice in batch]
        assert len(notices) < 20  # not 1,000: one per kind and FlowRun per batch
        assert {n["flowrun"] for n in notices} == {"etl-x"}
        assert hub.clients == 0
    finally:
        hub.stop()
