"""``flowpod.kubernetes.submit`` and its handle against a fake of our own seam, ``FlowRunApi``.

The fake keeps FlowRuns and TaskRuns in dicts and plays status changes through ``watch_flowrun``
like the API server would; the store is a real in-memory ResultStore, so the pickled flow is
loaded back and run to check it really travels by value.
"""

from __future__ import annotations

import logging
import pickle
import queue
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from flowpod import flow, task
from flowpod._contract.keys import flow_code_key
from flowpod._kube.flowrun_api import FlowRunApi, NotFound
from flowpod._kube.submit import ReasonLog, flowrun_object_name, progress_line, reason_line
from flowpod._storage import MemoryResultStore
from flowpod.exceptions import ConfigurationError, FailedRun
from flowpod.kubernetes import FlowRunHandle, submit


class FakeFlowRunApi(FlowRunApi):
    """In-memory stand-in for ``FlowRunApi``: same methods, objects as plain dicts."""

    def __init__(self, namespace: str = "team-a") -> None:
        super().__init__()
        self.namespace = namespace
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.events: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self.pod_logs: dict[str, str] = {}
        self.watch_calls = 0
        self.watching = threading.Event()

    def default_namespace(self) -> str:
        return self.namespace

    def create_flowrun(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        obj = dict(manifest)
        obj["metadata"] = dict(obj["metadata"], creationTimestamp="2026-11-24T04:00:00Z")
        self.objects[("flowruns", namespace, obj["metadata"]["name"])] = obj
        return obj

    def add(self, plural: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects[(plural, meta.get("namespace", self.namespace), meta["name"])] = obj

    def get(self, namespace: str, plural: str, name: str) -> dict[str, Any]:
        try:
            return self.objects[(plural, namespace, name)]
        except KeyError:
            raise NotFound(f"{plural[:-1]} {namespace}/{name} not found") from None

    def list_objects(self, namespace: str, plural: str,
                     label_selector: str = "") -> list[dict[str, Any]]:
        wanted = dict(part.split("=", 1) for part in label_selector.split(",") if part)
        return [obj for (kind, ns, _), obj in self.objects.items()
                if kind == plural and ns == namespace
                and all((obj["metadata"].get("labels") or {}).get(k) == v
                        for k, v in wanted.items())]

    def set_status(self, namespace: str, name: str, **status: Any) -> None:
        """Change a FlowRun's status and announce it to the watch (as the operator would)."""
        old = self.objects[("flowruns", namespace, name)]
        obj = dict(old, status=dict(old.get("status") or {}, **status))
        self.objects[("flowruns", namespace, name)] = obj
        self.events.put(("MODIFIED", obj))

    def watch_flowrun(self, namespace: str, name: str,
                      timeout_seconds: int) -> Iterator[tuple[str, dict[str, Any]]]:
        self.watch_calls += 1
        self.watching.set()
        while True:
            try:
                event = self.events.get(timeout=timeout_seconds)
            except queue.Empty:
                return
            if event is None:
                return
            yield event

    def patch_flowrun_spec(self, namespace: str, name: str,
                           spec: Mapping[str, Any]) -> dict[str, Any]:
        obj = self.get(namespace, "flowruns", name)
        obj["spec"] = dict(obj["spec"], **spec)
        self.patches.append((namespace, name, dict(spec)))
        return obj

    def pod_log(self, namespace: str, pod: str) -> str | None:
        return self.pod_logs.get(pod)

    def close(self) -> None:
        pass


@task
def double(x: int) -> int:
    return 2 * x


@flow(retries=2, retry_delay_seconds=7, timeout_seconds=90)
def doubler(n: int, label: str = "x") -> dict[str, Any]:
    return {"label": label, "value": double(n)}


def test_submit_stores_the_flow_and_creates_a_flowrun_from_its_settings() -> None:
    api, store = FakeFlowRunApi(), MemoryResultStore()
    handle = submit(doubler, {"n": 4}, image="registry/etl:1", api=api, store=store,
                    env={"FLOWPOD_EXAMPLE_API": "http://stub:8080"})

    assert isinstance(handle, FlowRunHandle) and handle.namespace == "team-a"
    obj = api.get("team-a", "flowruns", handle.name)
    spec = obj["spec"]
    assert obj["kind"] == "FlowRun" and handle.name.startswith("doubler-")
    assert spec["code"] == flow_code_key("team-a", handle.name)
    assert spec["code"] == f"runs/team-a/{handle.name}/flow-code"
    assert spec["flowName"] == "doubler" and spec["parameters"] == {"n": 4}
    assert spec["retries"] == 2 and spec["retryDelaySeconds"] == [7.0]
    assert spec["timeoutSeconds"] == 90 and spec["image"] == "registry/etl:1"
    assert spec["env"] == [{"name": "FLOWPOD_EXAMPLE_API", "value": "http://stub:8080"}]
    # The stored code is the flow itself: loading it gives a flow that runs.
    loaded = pickle.loads(store.get(spec["code"]))
    assert loaded.name == "doubler"
    assert loaded(n=5) == {"label": "x", "value": 10}


def test_submit_refuses_bad_parameters_before_creating_anything() -> None:
    api, store = FakeFlowRunApi(), MemoryResultStore()
    with pytest.raises(ValueError, match="no parameter 'm'"):
        submit(doubler, {"m": 1}, api=api, store=store)
    with pytest.raises(ValueError, match="parameter 'n'.*JSON"):
        submit(doubler, {"n": object()}, api=api, store=store)
    with pytest.raises(TypeError, match="takes a flow"):
        submit(double, {"x": 1}, api=api, store=store)  # type: ignore[arg-type]
    assert api.objects == {}


def test_submit_without_any_storage_says_how_to_configure_it() -> None:
    with pytest.raises(ConfigurationError, match="FLOWPOD_S3_BUCKET"):
        submit(doubler, {"n": 1}, api=FakeFlowRunApi())


def test_wait_follows_the_watch_to_the_final_state_and_result_reads_the_store() -> None:
    api, store = FakeFlowRunApi(), MemoryResultStore()
    handle = submit(doubler, {"n": 4}, api=api, store=store)
    ns, name = handle.namespace, handle.name
    store.put(f"runs/{ns}/{name}/flow-result-1", pickle.dumps({"value": 8}))
    seen: list[str] = []

    def operator() -> None:
        assert api.watching.wait(10)
        api.set_status(ns, name, state="Running", taskRuns={"total": 2, "running": 1,
                                                             "completed": 1})
        api.set_status(ns, name, state="Completed", resultRef=f"runs/{ns}/{name}/flow-result-1",
                       taskRuns={"total": 2, "completed": 2})

    threading.Thread(target=operator).start()
    state = handle.wait(timeout=10, on_change=lambda obj: seen.append(progress_line(obj)))
    assert state == "Completed"
    assert seen[-1] == "Completed: 2/2 task runs done"
    assert "Running: 1/2 task runs done (1 running)" in seen
    assert handle.result(timeout=1) == {"value": 8}


def test_result_of_a_failed_run_raises_with_the_operators_message() -> None:
    api, store = FakeFlowRunApi(), MemoryResultStore()
    handle = submit(doubler, {"n": 4}, api=api, store=store)
    api.set_status(handle.namespace, handle.name, state="Failed",
                   message="parameter 'n': not an int")
    with pytest.raises(FailedRun, match="parameter 'n'"):
        handle.result(timeout=5)


def test_wait_times_out_with_a_clear_error() -> None:
    api, store = FakeFlowRunApi(), MemoryResultStore()
    handle = submit(doubler, {"n": 4}, api=api, store=store)
    api.set_status(handle.namespace, handle.name, state="Running")
    with pytest.raises(TimeoutError, match="still Running"):
        handle.wait(timeout=1)


def test_wait_reports_a_deleted_flowrun() -> None:
    api, store = FakeFlowRunApi(), MemoryResultStore()
    handle = submit(doubler, {"n": 4}, api=api, store=store)
    api.events.put(("DELETED", api.get(handle.namespace, "flowruns", handle.name)))
    with pytest.raises(NotFound, match="deleted"):
        handle.wait(timeout=5)


def test_cancel_patches_spec_cancel() -> None:
    api, store = FakeFlowRunApi(), MemoryResultStore()
    handle = submit(doubler, {"n": 4}, api=api, store=store)
    handle.cancel()
    assert api.patches == [(handle.namespace, handle.name, {"cancel": True})]


def test_progress_line_counts_finished_and_failed_runs() -> None:
    obj = {"status": {"state": "Running", "taskRuns": {
        "total": 5, "completed": 2, "cached": 0, "failed": 1, "running": 2}}}
    assert progress_line(obj) == "Running: 3/5 task runs done (2 running, 1 failed)"
    assert progress_line({}) == "Pending: 0/0 task runs done"


def test_flowrun_names_are_valid_kubernetes_names() -> None:
    import random

    name = flowrun_object_name("Repo_Stats Flow!" * 5, random.Random(1))
    assert len(name) <= 47
    assert name.replace("-", "").isalnum() and name == name.lower()
    assert name.startswith("repo-stats-flow")


def test_a_helper_module_next_to_the_flow_file_travels_by_value(tmp_path: Any) -> None:
    import subprocess
    import sys

    (tmp_path / "helper_mod_x1.py").write_text("def shout(text):\n    return text.upper()\n")
    (tmp_path / "flow_mod_x1.py").write_text(
        "from flowpod import flow\nfrom helper_mod_x1 import shout\n\n"
        "@flow\ndef loud(text: str) -> str:\n    return shout(text)\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import flow_mod_x1  # type: ignore[import-not-found]

        from flowpod._kube.submit import dump_flow

        data = dump_flow(flow_mod_x1.loud)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("flow_mod_x1", None)
        sys.modules.pop("helper_mod_x1", None)
    # A fresh interpreter that cannot import either module still runs the flow.
    code = ("import pickle, sys; flow = pickle.loads(sys.stdin.buffer.read()); "
            "print(flow(text='hi'))")
    done = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True,
                          cwd="/", timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip().splitlines()[-1] == "HI"


# -- issue 12: the pending deadline, reasons while waiting, and failing fast on configuration ----


def test_submit_passes_the_pending_timeout_and_refuses_a_bad_one() -> None:
    api, store = FakeFlowRunApi(), MemoryResultStore()
    handle = submit(doubler, {"n": 1}, api=api, store=store, pending_timeout_seconds=120)
    assert api.get("team-a", "flowruns", handle.name)["spec"]["pendingTimeoutSeconds"] == 120
    plain = submit(doubler, {"n": 1}, api=api, store=store)
    assert "pendingTimeoutSeconds" not in api.get("team-a", "flowruns", plain.name)["spec"]
    with pytest.raises(ValueError, match="pending_timeout_seconds must be a number of seconds"):
        submit(doubler, {"n": 1}, api=api, store=store, pending_timeout_seconds=-1)


def test_waiting_logs_each_new_reason_of_the_flowrun_once() -> None:
    from _engine_support import capture_logs

    api, store = FakeFlowRunApi(), MemoryResultStore()
    handle = submit(doubler, {"n": 4}, api=api, store=store)
    ns, name = handle.namespace, handle.name
    missing = 'pods "x" is forbidden: error looking up service account team-a/etl: not found'

    def operator() -> None:
        assert api.watching.wait(10)
        for _ in range(3):
            api.set_status(ns, name, state="Pending", reason="ServiceAccountNotFound",
                           message=missing)
        api.set_status(ns, name, state="Crashed", reason="ServiceAccountNotFound",
                       message=missing)

    threading.Thread(target=operator).start()
    with capture_logs() as logs:
        assert handle.wait(timeout=5, on_change=ReasonLog(handle)) == "Crashed"
    assert [r.getMessage() for r in logs.records if r.levelno == logging.WARNING] == [
        f"FlowRun {ns}/{name} is Pending (ServiceAccountNotFound): {missing}"]
    assert handle.reason == "ServiceAccountNotFound"
    assert reason_line({"status": {"state": "Running"}}) is None
    assert reason_line({"status": {"state": "Failed", "reason": "TaskFailed"}}) is None


class _Refused(Exception):
    status, reason = 404, "Not Found"


def test_submit_fails_fast_when_the_cluster_or_the_store_cannot_be_used() -> None:
    api, store = FakeFlowRunApi(), MemoryResultStore()

    def refuse(*args: Any) -> list[dict[str, Any]]:
        raise _Refused()

    api.list_objects = refuse  # type: ignore[method-assign]
    with pytest.raises(ConfigurationError, match=r"Cannot submit flow 'doubler' to the cluster: "
                       r"flowruns cannot be listed in namespace 'team-a' \(404 Not Found\).*"
                       r"CRDs are not installed"):
        submit(doubler, {"n": 1}, api=api, store=store)
    assert api.objects == {} and not store.exists("runs")

    class DeadStore(MemoryResultStore):
        def exists(self, key: str) -> bool:
            raise ConnectionError("connection refused: http://127.0.0.1:9")

    api = FakeFlowRunApi()
    with pytest.raises(ConfigurationError, match="the result store .* does not answer: "
                       "connection refused"):
        submit(doubler, {"n": 1}, api=api, store=DeadStore())
    assert api.objects == {}


def test_a_dead_s3_endpoint_fails_the_check_in_seconds() -> None:
    import time

    from flowpod._kube.preflight import check_store
    from flowpod._storage.s3 import S3ResultStore

    store = S3ResultStore("results", endpoint_url="http://127.0.0.1:9", region="us-east-1",
                          access_key_id="k", secret_access_key="s")
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match="127.0.0.1:9"):
        check_store(store, "runs/ns/x/flow-code", "the store")
    assert time.monotonic() - started < 20
    assert store.retry_budget_seconds == 60.0  # the store itself keeps its budget
