"""``flowpod submit / get / describe / logs / cancel`` against a fake cluster API and a memory
store (``_cli_fakes``), through click's test runner."""

from __future__ import annotations

import pickle
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _cli_fakes import FakeClusterApi as FakeFlowRunApi
from click.testing import CliRunner

import flowpod._cli.access as _cli_access
from flowpod._cli.get import format_table
from flowpod._cli.main import main
from flowpod._kube.run_logs import LogSource, interleave_logs
from flowpod._storage import MemoryResultStore

FLOW_FILE = textwrap.dedent("""
    from flowpod import flow, task

    @task
    def inc(x: int) -> int:
        return x + 1

    @flow(retries=1)
    def counter(n: int = 1) -> int:
        return inc(n)
""")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeFlowRunApi, MemoryResultStore]]:
    api, store = FakeFlowRunApi("ns1"), MemoryResultStore()
    monkeypatch.setattr(_cli_access, "make_api", lambda: api)
    monkeypatch.setattr(_cli_access, "make_store", lambda storage: store)
    modules, path = set(sys.modules), list(sys.path)
    yield api, store
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        if name.startswith(("counter_flows", "_flowpod_target")):
            del sys.modules[name]


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _flow_file(tmp_path: Path) -> Path:
    path = tmp_path / "counter_flows.py"
    path.write_text(FLOW_FILE)
    return path


def _only_flowrun(api: FakeFlowRunApi) -> dict[str, Any]:
    (obj,) = api.list_objects("ns1", "flowruns")
    return obj


def test_submit_creates_a_flowrun_with_the_pickled_flow(
    fake: tuple[FakeFlowRunApi, MemoryResultStore], tmp_path: Path
) -> None:
    api, store = fake
    code, out, _ = _invoke("submit", f"{_flow_file(tmp_path)}:counter", "--param", "n=41",
                           "--image", "img:1", "--env", "A=b")
    assert code == 0
    obj = _only_flowrun(api)
    name = obj["metadata"]["name"]
    assert f"flowrun.flowpod.dev/{name} created in namespace ns1" in out
    assert obj["spec"]["parameters"] == {"n": 41} and obj["spec"]["retries"] == 1
    assert obj["spec"]["env"] == [{"name": "A", "value": "b"}]
    flow = pickle.loads(store.get(obj["spec"]["code"]))
    assert flow(n=41) == 42


def test_submit_wait_prints_progress_and_exits_1_when_the_run_fails(
    fake: tuple[FakeFlowRunApi, MemoryResultStore], tmp_path: Path
) -> None:
    api, _ = fake

    def operator() -> None:
        assert api.watching.wait(10)
        name = _only_flowrun(api)["metadata"]["name"]
        api.set_status("ns1", name, state="Running", taskRuns={"total": 5, "completed": 3,
                                                               "failed": 1})
        api.set_status("ns1", name, state="Failed", message="task inc-3 failed",
                       taskRuns={"total": 5, "completed": 3, "failed": 2})

    threading.Thread(target=operator).start()
    code, out, _ = _invoke("submit", f"{_flow_file(tmp_path)}:counter", "--wait",
                           "--timeout", "10")
    assert code == 1
    assert "Running: 4/5 task runs done (1 failed)" in out
    assert "finished in state Failed: task inc-3 failed" in out


def test_submit_wait_exits_0_when_completed(
    fake: tuple[FakeFlowRunApi, MemoryResultStore], tmp_path: Path
) -> None:
    api, _ = fake

    def operator() -> None:
        assert api.watching.wait(10)
        name = _only_flowrun(api)["metadata"]["name"]
        api.set_status("ns1", name, state="Completed", taskRuns={"total": 0})

    threading.Thread(target=operator).start()
    code, out, _ = _invoke("submit", f"{_flow_file(tmp_path)}:counter", "-w", "--timeout", "10")
    assert code == 0 and "finished in state Completed" in out


def test_submit_rejects_an_unknown_parameter_with_exit_2(
    fake: tuple[FakeFlowRunApi, MemoryResultStore], tmp_path: Path
) -> None:
    api, _ = fake
    result = CliRunner().invoke(main, ["submit", f"{_flow_file(tmp_path)}:counter", "-p", "m=1"])
    assert result.exit_code == 2 and "unexpected keyword argument 'm'" in result.output
    assert result.output.startswith("Error: ") and "(--param)" in result.output
    assert api.objects == {}


def _flowrun(name: str, state: str, summary: str) -> dict[str, Any]:
    return {"kind": "FlowRun", "metadata": {"name": name, "namespace": "ns1",
                                            "creationTimestamp": "2026-11-24T04:00:00Z"},
            "spec": {"flowName": "counter", "code": "x"},
            "status": {"state": state, "tasksSummary": summary, "duration": "12s",
                       "pod": f"{name}-flow-1"}}


def _taskrun(name: str, flowrun: str, run_name: str, attempt: int) -> dict[str, Any]:
    return {"kind": "TaskRun",
            "metadata": {"name": name, "namespace": "ns1", "labels": {"flowpod.dev/flowrun":
                                                                      flowrun}},
            "spec": {"runName": run_name},
            "status": {"state": "Running", "attempt": attempt, "pod": f"{name}-{attempt}"}}


def test_get_flowruns_prints_a_table(fake: tuple[FakeFlowRunApi, MemoryResultStore]) -> None:
    api, _ = fake
    api.add("flowruns", _flowrun("counter-abc", "Running", "3/5"))
    api.add("flowruns", _flowrun("counter-def", "Completed", "5/5"))
    code, out, _ = _invoke("get", "flowruns", "-n", "ns1")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["NAME", "FLOW", "STATE", "TASKS", "AGE", "DURATION"]
    assert lines[1].split()[:4] == ["counter-abc", "counter", "Running", "3/5"]
    assert lines[2].split()[:4] == ["counter-def", "counter", "Completed", "5/5"]
    code, out, _ = _invoke("get", "flowrun", "counter-def")
    assert code == 0 and len(out.splitlines()) == 2 and "counter-def" in out


def test_get_taskruns_of_one_flowrun(fake: tuple[FakeFlowRunApi, MemoryResultStore]) -> None:
    api, _ = fake
    api.add("taskruns", _taskrun("inc-0-aaaaaa", "counter-abc", "inc-0", 1))
    api.add("taskruns", _taskrun("inc-0-bbbbbb", "other", "inc-0", 2))
    code, out, _ = _invoke("get", "taskruns", "--flowrun", "counter-abc")
    assert code == 0 and "inc-0-aaaaaa" in out and "inc-0-bbbbbb" not in out


def test_get_unknown_kind_and_missing_object_say_so(
    fake: tuple[FakeFlowRunApi, MemoryResultStore]
) -> None:
    result = CliRunner().invoke(main, ["get", "pods"])
    assert result.exit_code == 2 and "use flowruns (fr) or taskruns (tr)" in result.output
    result = CliRunner().invoke(main, ["get", "flowruns", "nope"])
    assert result.exit_code == 1 and "flowrun ns1/nope not found" in result.output


def test_logs_interleave_stored_and_live_logs_by_time(
    fake: tuple[FakeFlowRunApi, MemoryResultStore]
) -> None:
    api, store = fake
    api.add("flowruns", _flowrun("counter-abc", "Running", "1/2"))
    api.add("taskruns", _taskrun("inc-0-aaaaaa", "counter-abc", "inc-0", 1))
    api.add("taskruns", _taskrun("inc-1-bbbbbb", "counter-abc", "inc-1", 1))
    store.put("runs/ns1/counter-abc/log-1.txt",
              b"04:00:01.000 | INFO    | flow starts\n04:00:05.000 | INFO    | flow goes on\n")
    store.put("runs/ns1/inc-0-aaaaaa/log-1.txt",
              b"04:00:02.000 | ERROR   | boom\nTraceback: line\n")
    api.pod_logs["inc-1-bbbbbb-1"] = (
        "2026-11-24T04:00:03.000123456Z 04:00:03.000 | INFO    | still running\n")
    code, out, _ = _invoke("logs", "counter-abc")
    assert code == 0
    assert out.splitlines() == [
        "flow counter | 04:00:01.000 | INFO    | flow starts",
        "inc-0 | 04:00:02.000 | ERROR   | boom",
        "inc-0 | Traceback: line",
        "inc-1 | 04:00:03.000 | INFO    | still running",
        "flow counter | 04:00:05.000 | INFO    | flow goes on",
    ]


def test_cancel_patches_the_spec_and_skips_finished_runs(
    fake: tuple[FakeFlowRunApi, MemoryResultStore]
) -> None:
    api, _ = fake
    api.add("flowruns", _flowrun("counter-abc", "Running", "1/2"))
    api.add("flowruns", _flowrun("counter-def", "Completed", "2/2"))
    code, out, _ = _invoke("cancel", "counter-abc")
    assert code == 0 and "cancel requested" in out
    assert api.patches == [("ns1", "counter-abc", {"cancel": True})]
    code, out, _ = _invoke("cancel", "counter-def")
    assert code == 0 and "already finished in state Completed" in out
    assert len(api.patches) == 1


def test_cancel_wait_follows_until_cancelled(
    fake: tuple[FakeFlowRunApi, MemoryResultStore]
) -> None:
    api, _ = fake
    api.add("flowruns", _flowrun("counter-abc", "Running", "1/2"))

    def operator() -> None:
        assert api.watching.wait(10)
        api.set_status("ns1", "counter-abc", state="Cancelled")

    threading.Thread(target=operator).start()
    code, out, _ = _invoke("cancel", "counter-abc", "--wait", "--timeout", "10")
    assert code == 0 and "finished in state Cancelled" in out


def test_format_table_and_interleave_are_plain_functions() -> None:
    assert format_table(["A", "BB"], [["xyz", "1"]]) == "A     BB\nxyz   1"
    start = datetime(2026, 1, 1, 9, 59, tzinfo=UTC)
    merged = interleave_logs([LogSource.stored("a", "10:00:02.0 x\n", start),
                              LogSource.stored("b", "10:00:01.0 y\n", start)])
    assert merged == ["b | 10:00:01.0 y", "a | 10:00:02.0 x"]


def test_submit_without_a_store_and_api_refusals_say_what_to_fix(
    fake: tuple[FakeFlowRunApi, MemoryResultStore], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    api, _ = fake
    monkeypatch.setattr(_cli_access, "make_store", lambda storage: None)
    result = CliRunner().invoke(main, ["submit", f"{_flow_file(tmp_path)}:counter"])
    assert result.exit_code == 2 and "set FLOWPOD_S3_BUCKET" in result.output

    class Forbidden(Exception):
        status, reason, body = 403, "Forbidden", '{"message": "cannot list flowruns"}'

    def refuse(*args: Any) -> list[dict[str, Any]]:
        raise Forbidden()

    monkeypatch.setattr(api, "list_objects", refuse)
    monkeypatch.setattr(api, "list_with_version", refuse)
    result = CliRunner().invoke(main, ["get", "flowruns"])
    assert result.exit_code == 1
    assert "refused the call: 403 Forbidden: cannot list flowruns" in result.output


# -- issue 12: reasons in get and submit --wait, --pending-timeout, failing fast ----------------


def test_get_shows_a_reason_column_when_the_operator_gives_one(
    fake: tuple[FakeFlowRunApi, MemoryResultStore]
) -> None:
    api, _ = fake
    stuck = _flowrun("counter-abc", "Pending", "0/0")
    stuck["status"].update(reason="ServiceAccountNotFound",
                           message='serviceaccount "etl" not found in namespace ns1')
    api.add("flowruns", stuck)
    api.add("flowruns", _flowrun("counter-def", "Completed", "5/5"))
    code, out, _ = _invoke("get", "flowruns")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["NAME", "FLOW", "STATE", "REASON", "TASKS", "AGE", "DURATION"]
    assert lines[1].split()[:5] == ["counter-abc", "counter", "Pending",
                                    "ServiceAccountNotFound", "0/0"]
    assert lines[2].split()[:5] == ["counter-def", "counter", "Completed", "-", "5/5"]
    code, out, _ = _invoke("get", "flowrun", "counter-abc")
    assert code == 0
    assert out.splitlines()[-1] == 'MESSAGE: serviceaccount "etl" not found in namespace ns1'

    waiting = _taskrun("inc-0-aaaaaa", "counter-abc", "inc-0", 1)
    waiting["status"].update(state="Pending", reason="ImagePullBackOff")
    api.add("taskruns", waiting)
    code, out, _ = _invoke("get", "taskruns")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "RUN", "NAME", "STATE", "REASON", "ATTEMPT", "FLOWRUN",
                                "AGE", "DURATION"]
    assert lines[1].split()[:4] == ["inc-0-aaaaaa", "inc-0", "Pending", "ImagePullBackOff"]


def test_submit_wait_says_once_why_the_run_cannot_start(
    fake: tuple[FakeFlowRunApi, MemoryResultStore], tmp_path: Path
) -> None:
    api, _ = fake
    missing = 'serviceaccount "etl" not found'

    def operator() -> None:
        assert api.watching.wait(10)
        name = _only_flowrun(api)["metadata"]["name"]
        for _ in range(3):
            api.set_status("ns1", name, state="Pending", reason="ServiceAccountNotFound",
                           message=missing)
        api.set_status("ns1", name, state="Crashed", reason="ServiceAccountNotFound",
                       message=f"the flow pod cannot be created: {missing}")

    threading.Thread(target=operator).start()
    code, out, _ = _invoke("submit", f"{_flow_file(tmp_path)}:counter", "--wait",
                           "--timeout", "10", "--pending-timeout", "45")
    assert code == 1
    name = _only_flowrun(api)["metadata"]["name"]
    assert _only_flowrun(api)["spec"]["pendingTimeoutSeconds"] == 45
    assert out.count("ServiceAccountNotFound") == 2  # one while waiting, one at the end
    assert f"FlowRun {name} is Pending (ServiceAccountNotFound): {missing}" in out
    assert (f"FlowRun {name} finished in state Crashed (ServiceAccountNotFound): the flow pod "
            f"cannot be created: {missing}") in out


def test_submit_refuses_a_bad_pending_timeout_and_an_unusable_cluster(
    fake: tuple[FakeFlowRunApi, MemoryResultStore], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    api, _ = fake
    result = CliRunner().invoke(main, ["submit", f"{_flow_file(tmp_path)}:counter",
                                       "--pending-timeout", "0"])
    assert result.exit_code == 2 and "--pending-timeout" in result.output

    class Unreachable(Exception):
        pass

    def refuse(*args: Any) -> list[dict[str, Any]]:
        raise Unreachable("Max retries exceeded with url: /apis/flowpod.dev (Connection refused)")

    monkeypatch.setattr(api, "list_objects", refuse)
    result = CliRunner().invoke(main, ["submit", f"{_flow_file(tmp_path)}:counter"])
    assert result.exit_code == 1
    assert "cannot submit to the cluster: cannot load the Kubernetes" in result.output
    assert "(cluster)" in result.output
    assert "Connection refused" in result.output and "KUBECONFIG" in result.output
    assert api.objects == {}
