"""The flow pod's program: loading the flow, validating parameters, running it, the outcome, and
the log every pod uploads at exit. The FlowRun read is replaced at its seam (``reader``)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from flowpod import flow, task
from flowpod._contract.keys import flow_code_key, log_key
from flowpod._kube.payloads import TaskPayload, write_payload
from flowpod._storage import LocalResultStore
from flowpod._storage.run_files import read_flow_outcome, read_result
from flowpod.pod._flow import run_flow

NS = "team-a"


@task
def double(x: int) -> int:
    return 2 * x


@flow(name="doubler")
def doubler(x: int, times: int = 1) -> int:
    for _ in range(times):
        x = double(x)  # direct calls: they run in the flow pod itself
    return x


@flow
def broken() -> None:
    raise ValueError("broken on purpose")


not_a_flow = 7


@pytest.fixture(autouse=True)
def _restore_flow_run_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_flow sets FLOWPOD_FLOW_RUN_NAME/UID for its task runner: undone after each test."""
    monkeypatch.delenv("FLOWPOD_FLOW_RUN_NAME", raising=False)
    monkeypatch.delenv("FLOWPOD_FLOW_RUN_UID", raising=False)


@pytest.fixture
def store(tmp_path: Path) -> LocalResultStore:
    return LocalResultStore(tmp_path / "store")


def reader_for(spec: dict[str, Any], name: str = "fr-1") -> Any:
    def read(namespace: str, requested: str) -> dict[str, Any]:
        assert (namespace, requested) == (NS, name)
        return {"apiVersion": "flowpod.dev/v1alpha1", "kind": "FlowRun",
                "metadata": {"name": name, "namespace": NS, "uid": "uid-1"}, "spec": spec}
    return read


def run(store: LocalResultStore, spec: dict[str, Any], attempt: int = 1) -> Any:
    return run_flow(store, NS, "fr-1", attempt, reader=reader_for(spec))


def test_entrypoint_flow_completes_and_stores_its_result(store: LocalResultStore) -> None:
    outcome = run(store, {"entrypoint": f"{__name__}:doubler",
                          "parameters": {"x": "3", "times": 2}})
    assert outcome.state == "Completed", outcome
    assert outcome.result_ref is not None
    assert read_result(store, outcome.result_ref) == 12  # "3" was coerced to 3
    assert read_flow_outcome(store, NS, "fr-1", 1) == outcome
    assert os.environ["FLOWPOD_FLOW_RUN_NAME"] == "fr-1"


def test_stored_code_flow_runs(store: LocalResultStore) -> None:
    from flowpod._kube.submit import dump_flow  # what `flowpod submit` stores

    key = flow_code_key(NS, "fr-1")
    store.put(key, dump_flow(doubler.with_options(name="stored")))
    outcome = run(store, {"code": key, "parameters": {"x": 5}}, attempt=2)
    assert outcome.state == "Completed"
    assert outcome.attempt == 2
    assert read_result(store, outcome.result_ref) == 10


def test_failing_flow_writes_a_failed_outcome(store: LocalResultStore) -> None:
    outcome = run(store, {"entrypoint": f"{__name__}:broken"})
    assert outcome.state == "Failed"
    assert "broken on purpose" in (outcome.message or "")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"entrypoint": "no_such_module_qq:flow"}, "unknown entrypoint 'no_such_module_qq:flow'"),
        ({"entrypoint": f"{__name__}:nope"}, "has no attribute 'nope'"),
        ({"entrypoint": f"{__name__}:not_a_flow"}, "not a flow"),
        ({"code": "runs/team-a/fr-1/flow-code"}, "cannot load the flow"),
        ({"entrypoint": f"{__name__}:doubler", "parameters": {"x": "three"}}, "x"),
        ({"entrypoint": f"{__name__}:doubler", "parameters": {}}, "'x'"),
        ({"entrypoint": f"{__name__}:doubler", "parameters": {"x": 1, "y": 2}}, "y"),
    ],
    ids=["unknown-module", "unknown-attribute", "not-a-flow", "missing-code", "bad-type",
         "missing", "unexpected"],
)
def test_unrunnable_flows_fail_before_anything_starts(
    store: LocalResultStore, spec: dict[str, Any], expected: str
) -> None:
    outcome = run(store, spec)
    assert outcome.state == "Failed"
    assert expected in (outcome.message or ""), outcome.message
    if "parameters" in spec:
        assert "invalid parameters for flow 'doubler'" in (outcome.message or "")
    assert outcome.result_ref is None


def _pod(store: LocalResultStore, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLOWPOD_STORE_PATH": str(store.root), "KUBECONFIG": "/nonexistent"}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return subprocess.run([sys.executable, "-m", "flowpod.pod", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_flow_pod_without_api_access_fails_and_uploads_its_log(store: LocalResultStore) -> None:
    proc = _pod(store, "flow", f"{NS}/fr-9", "--attempt", "1")
    assert proc.returncode == 1, proc.stderr
    outcome = read_flow_outcome(store, NS, "fr-9", 1)
    assert outcome is not None and outcome.state == "Failed"
    assert "cannot start flow run team-a/fr-9" in (outcome.message or "")
    log = store.get(log_key(NS, "fr-9", 1)).decode()
    assert "cannot start flow run team-a/fr-9" in log
    assert log.strip() in proc.stdout + proc.stderr or log.strip().splitlines()[0] in proc.stdout


def test_task_pod_uploads_its_log(store: LocalResultStore) -> None:
    name = f"double-{uuid.uuid4().hex[:6]}"
    payload = TaskPayload(task=double, parameters={"x": 21}, task_run_id=str(uuid.uuid4()),
                          run_name="double-0")
    write_payload(store, NS, name, payload)
    proc = _pod(store, "task", f"{NS}/{name}", "--attempt", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = store.get(log_key(NS, name, 1)).decode()
    assert "Finished in state Completed" in log
    assert "Finished in state Completed" in proc.stdout  # still printed, not only kept
