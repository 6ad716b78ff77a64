"""Issue 13's cluster command line against the fake cluster (``_cli_fakes``): the group's cluster
options, ``get -o/-A/-l/-w``, ``describe``/``inspect``, ``logs`` merged by real time (across
midnight, ``--task``, ``--tail``, ``--timestamps``, ``-f``) and ``submit``'s checks."""

from __future__ import annotations

import json
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from _cli_fakes import FakeClusterApi
from click.testing import CliRunner

import flowpod._cli.access as _cli_access
import flowpod._cli.logs as _cli_logs
from flowpod._cli.access import ClusterOptions, current_options
from flowpod._cli.main import main
from flowpod._storage import MemoryResultStore

Fake = tuple[FakeClusterApi, MemoryResultStore]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    api, store = FakeClusterApi("ns1"), MemoryResultStore()
    monkeypatch.setattr(_cli_access, "make_api", lambda: api)
    monkeypatch.setattr(_cli_access, "make_store", lambda storage: store)
    modules, path = set(sys.modules), list(sys.path)
    yield api, store
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        if name.startswith(("typed_flows", "_flowpod_target")):
            del sys.modules[name]


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def _flowrun(name: str, namespace: str = "ns1", **status: Any) -> dict[str, Any]:
    return {"apiVersion": "flowpod.dev/v1alpha1", "kind": "FlowRun",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                         "creationTimestamp": "2026-11-23T23:59:00Z",
                         "labels": {"flowpod.dev/flow": "etl"}},
            "spec": {"flowName": "etl", "code": f"runs/{namespace}/{name}/flow-code",
                     "parameters": {"day": "2026-01-01", "n": 3}, "retries": 1,
                     "retryDelaySeconds": [5], "timeoutSeconds": 600, "image": "etl:2"},
            "status": {"state": "Running", "attempt": 1, "pod": f"{name}-flow-1", **status}}


def _taskrun(name: str, flowrun: str, task: str, attempt: int = 1,
             **status: Any) -> dict[str, Any]:
    return {"apiVersion": "flowpod.dev/v1alpha1", "kind": "TaskRun",
            "metadata": {"name": name, "namespace": "ns1",
                         "creationTimestamp": "2026-11-23T23:59:30Z",
                         "labels": {"flowpod.dev/flowrun": flowrun}},
            "spec": {"taskName": task, "runName": name.rsplit("-", 1)[0], "flowRun": flowrun},
            "status": {"state": "Running", "attempt": attempt, "pod": f"{name}-{attempt}",
                       **status}}


# -- the group's cluster options ---------------------------------------------------------------


def test_group_options_reach_every_command_and_the_command_n_wins(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, _ = fake
    seen: list[ClusterOptions] = []

    def make_api() -> FakeClusterApi:
        seen.append(current_options())
        return api

    monkeypatch.setattr(_cli_access, "make_api", make_api)
    api.add("flowruns", _flowrun("a", "ns2"))
    code, out, _ = _invoke("--kubeconfig", "/k/config", "--context", "kind-x", "-n", "ns2",
                           "get", "flowruns")
    assert code == 0 and "a " in out
    assert seen[-1] == ClusterOptions("/k/config", "kind-x", "ns2")
    code, out, err = _invoke("-n", "ns2", "get", "flowruns", "-n", "ns1")
    assert code == 0 and "No flowruns found in namespace ns1." in err
    code, out, _ = _invoke("-n", "ns2", "describe", "flowrun", "a")
    assert code == 0 and "Namespace: ns2" in out


def test_make_api_builds_the_client_for_the_group_options() -> None:
    from flowpod._cli.access import make_api

    @main.command("probe-api", hidden=True)
    def probe() -> None:
        api = make_api()
        print(api.kubeconfig, api.context)

    try:
        result = CliRunner().invoke(main, ["--kubeconfig", "/k", "--context", "c", "probe-api"])
    finally:
        main.commands.pop("probe-api")
    assert result.exit_code == 0 and result.stdout.strip() == "/k c"


# -- get ---------------------------------------------------------------------------------------


def test_get_json_and_yaml_are_the_objects_as_the_api_returns_them(fake: Fake) -> None:
    api, _ = fake
    api.add("flowruns", _flowrun("a"))
    api.add("flowruns", _flowrun("b"))
    code, out, _ = _invoke("get", "flowruns", "-o", "json")
    listed = json.loads(out)
    assert code == 0 and listed["kind"] == "List" and listed["apiVersion"] == "v1"
    assert listed["items"] == [_flowrun("a"), _flowrun("b")]
    code, out, _ = _invoke("get", "flowrun", "a", "-o", "yaml")
    assert code == 0 and yaml.safe_load(out) == _flowrun("a")
    code, out, _ = _invoke("get", "fr", "-o", "name")
    assert out.splitlines() == ["flowrun.flowpod.dev/a", "flowrun.flowpod.dev/b"]
    code, out, _ = _invoke("get", "taskruns", "-o", "json")
    assert json.loads(out)["items"] == []


def test_get_all_namespaces_adds_a_namespace_column_and_selectors_filter(fake: Fake) -> None:
    api, _ = fake
    api.add("flowruns", _flowrun("a", "ns1"))
    other = _flowrun("b", "ns2")
    other["metadata"]["labels"] = {"flowpod.dev/flow": "report"}
    api.add("flowruns", other)
    code, out, _ = _invoke("get", "flowruns", "-A")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [line.split()[:2] for line in lines[1:]] == [["ns1", "a"], ["ns2", "b"]]
    code, out, _ = _invoke("get", "flowruns", "-A", "-l", "flowpod.dev/flow=report")
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [["ns2", "b"]]
    code, out, _ = _invoke("get", "flowruns", "-o", "wide")
    assert out.splitlines()[0].split()[-3:] == ["ATTEMPT", "POD", "IMAGE"]
    assert "REASON" in out.splitlines()[0]
    assert out.splitlines()[1].split()[-3:] == ["1", "a-flow-1", "etl:2"]


def test_get_watch_prints_a_row_per_change_until_interrupted(fake: Fake) -> None:
    api, _ = fake
    api.add("flowruns", _flowrun("a"))

    def operator() -> None:
        assert api.watching.wait(10)
        running = _flowrun("a", tasksSummary="1/3")
        api.object_events.put(("MODIFIED", running))
        api.object_events.put(("MODIFIED", running))  # nothing new: no row
        api.object_events.put(("MODIFIED", _flowrun("a", state="Failed", reason="TaskFailed",
                                                    tasksSummary="3/3")))
        api.object_events.put(None)  # Ctrl-C

    threading.Thread(target=operator).start()
    code, out, _ = _invoke("get", "flowruns", "-w")
    rows = [line.split() for line in out.splitlines()]
    assert code == 0
    assert rows[0][:5] == ["NAME", "FLOW", "STATE", "REASON", "TASKS"]
    assert [row[:5] for row in rows[1:]] == [["a", "etl", "Running", "-", "0/0"],
                                             ["a", "etl", "Running", "-", "1/3"],
                                             ["a", "etl", "Failed", "TaskFailed", "3/3"]]
    assert api.watch_args == [("ns1", "flowruns", "", "7", "")]


def test_get_refuses_a_name_with_all_namespaces_and_bad_output(fake: Fake) -> None:
    code, _, err = _invoke("get", "flowruns", "a", "-A")
    assert code == 2 and err.startswith("Error: ") and "(-A)" in err
    code, _, err = _invoke("get", "flowruns", "-o", "table")
    assert code == 2


# -- describe ----------------------------------------------------------------------------------


def test_describe_shows_spec_state_attempts_counts_and_events(fake: Fake) -> None:
    api, _ = fake
    run = _flowrun("a", state="Running", attempt=2, pod="a-flow-2", reason="Unschedulable",
                   message="0/3 nodes are available", tasksSummary="2/4",
                   taskRuns={"total": 4, "completed": 2, "running": 1, "failed": 1},
                   history=[
                       {"state": "Pending", "attempt": 1, "timestamp": "2026-11-24T00:00:00Z"},
                       {"state": "Running", "attempt": 1, "timestamp": "2026-11-24T00:00:10Z"},
                       {"state": "Crashed", "attempt": 1, "timestamp": "2026-11-24T00:01:10Z",
                        "reason": "OOMKilled", "message": "the pod ran out of memory"},
                       {"state": "Running", "attempt": 2, "timestamp": "2026-11-24T00:01:20Z"}])
    api.add("flowruns", run)
    api.k8s_events.append({"involvedObject": {"kind": "FlowRun", "name": "a"},
                           "type": "Warning", "reason": "AttemptCrashed",
                           "message": "attempt 1 crashed: OOMKilled", "count": 1,
                           "lastTimestamp": "2026-11-24T00:01:10Z",
                           "source": {"component": "flowpod-operator"}})
    for command in ("describe", "inspect"):
        code, out, _ = _invoke(command, "flowrun/a")
        assert code == 0
        lines = [" ".join(line.split()) for line in out.splitlines()]
        for expected in ("Name: a", "Namespace: ns1", "Flow: etl", "Image: etl:2",
                         "Retries: 1 (delays: 5s)", "Timeout: 10m0s", 'day: "2026-01-01"',
                         "n: 3", "State: Running", "Reason: Unschedulable",
                         "Message: 0/3 nodes are available",
                         "Task Runs: 4 total (1 running, 2 completed, 1 failed)",
                         "1 a-flow-1 Crashed OOMKilled 1m10s the pod ran out of memory",
                         "Warning AttemptCrashed"):
            assert any(expected in line for line in lines), (expected, out)
        assert any(line.startswith("2 a-flow-2 Running -") for line in lines)
    code, _, err = _invoke("describe", "flowrun", "nope")
    assert code == 1 and "flowrun ns1/nope not found (cluster)" in err


def test_describe_taskruns_of_a_flowrun(fake: Fake) -> None:
    api, _ = fake
    api.add("taskruns", _taskrun("inc-0-aaaaaa", "a", "inc", state="Completed"))
    api.add("taskruns", _taskrun("inc-1-bbbbbb", "other", "inc"))
    code, out, _ = _invoke("describe", "taskruns", "--flowrun", "a")
    assert code == 0 and "inc-0-aaaaaa" in out and "inc-1-bbbbbb" not in out
    flat = " ".join(out.split())
    assert "Task: inc" in flat and "Events: <none>" in flat


# -- logs --------------------------------------------------------------------------------------


def _logs_fixture(api: FakeClusterApi, store: MemoryResultStore) -> None:
    """A FlowRun that started at 23:59 and went past midnight: stored and live logs."""
    api.add("flowruns", _flowrun("a", history=[
        {"state": "Running", "attempt": 1, "timestamp": "2026-11-23T23:59:00Z"}]))
    api.add("taskruns", _taskrun("extract-0-aaaaaa", "a", "extract", state="Completed", pod=None,
                                 history=[{"state": "Running", "attempt": 1,
                                           "timestamp": "2026-11-23T23:59:30Z"}]))
    api.add("taskruns", _taskrun("load-0-bbbbbb", "a", "load"))
    store.put("runs/ns1/a/log-1.txt",
              b"23:59:01.000 | INFO    | flow starts\n00:00:30.000 | INFO    | flow waits\n")
    store.put("runs/ns1/extract-0-aaaaaa/log-1.txt",
              b"23:59:31.000 | INFO    | extracting\n23:59:59.500 | ERROR   | retry\n"
              b"Traceback: here\n")
    api.pod_logs["load-0-bbbbbb-1"] = (
        "2026-11-24T00:00:10.123456789Z 00:00:10.123 | INFO    | loading\n"
        "2026-11-24T00:00:40.000000001Z 00:00:40.000 | INFO    | loaded\n")


def test_logs_merge_stored_and_live_logs_by_real_time_across_midnight(fake: Fake) -> None:
    api, store = fake
    _logs_fixture(api, store)
    code, out, _ = _invoke("logs", "a")
    assert code == 0
    assert out.splitlines() == [
        "flow etl | 23:59:01.000 | INFO    | flow starts",
        "extract-0 | 23:59:31.000 | INFO    | extracting",
        "extract-0 | 23:59:59.500 | ERROR   | retry",
        "extract-0 | Traceback: here",
        "load-0 | 00:00:10.123 | INFO    | loading",
        "flow etl | 00:00:30.000 | INFO    | flow waits",
        "load-0 | 00:00:40.000 | INFO    | loaded",
    ]


def test_logs_task_tail_and_timestamps(fake: Fake) -> None:
    api, store = fake
    _logs_fixture(api, store)
    code, out, _ = _invoke("logs", "a", "--task", "extract")
    assert code == 0 and {line.split(" | ")[0] for line in out.splitlines()} == {"extract-0"}
    code, out, _ = _invoke("logs", "a", "--tail", "2", "--timestamps")
    assert out.splitlines() == [
        "flow etl | 2026-11-24T00:00:30.000000Z 00:00:30.000 | INFO    | flow waits",
        "load-0 | 2026-11-24T00:00:40.000000Z 00:00:40.000 | INFO    | loaded",
    ]
    code, _, err = _invoke("logs", "a", "--tail", "-1")
    assert code == 2


def test_logs_follow_picks_up_new_task_pods_and_stops_when_the_run_is_final(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, store = fake
    monkeypatch.setattr(_cli_logs, "_POLL_SECONDS", 0.05)
    api.add("flowruns", _flowrun("a"))
    api.pod_logs["a-flow-1"] = "2026-11-24T00:00:01Z 00:00:01.000 | INFO    | flow starts\n"

    def operator() -> None:
        assert api.following.wait(10)  # the flow pod is followed: a task pod starts
        api.pod_logs["load-0-bbbbbb-1"] = "2026-11-24T00:00:03Z 00:00:03.000 | INFO    | load\n"
        api.add("taskruns", _taskrun("load-0-bbbbbb", "a", "load"))
        deadline = time.monotonic() + 10
        while "load-0-bbbbbb-1" not in api.followed and time.monotonic() < deadline:
            time.sleep(0.01)  # polling a condition, with a deadline
        api.followed["a-flow-1"].put("2026-11-24T00:00:05Z 00:00:05.000 | INFO    | flow ends")
        api.followed["a-flow-1"].put(None)
        api.followed["load-0-bbbbbb-1"].put(None)
        api.objects[("flowruns", "ns1", "a")]["status"]["state"] = "Completed"

    threading.Thread(target=operator).start()
    code, out, _ = _invoke("logs", "a", "-f")
    assert code == 0
    # Followed streams print as their lines arrive: the flow pod's own lines keep their order,
    # the new task pod's line comes after what was printed before it started.
    lines = out.splitlines()
    assert lines[0] == "flow etl | 00:00:01.000 | INFO    | flow starts"
    assert sorted(lines[1:]) == ["flow etl | 00:00:05.000 | INFO    | flow ends",
                                 "load-0 | 00:00:03.000 | INFO    | load"]


# -- submit's checks ---------------------------------------------------------------------------

TYPED_FLOW = textwrap.dedent("""
    from flowpod import flow

    @flow
    def typed(n: int, label: str = "x") -> int:
        return n
""")


def _typed(tmp_path: Path) -> str:
    path = tmp_path / "typed_flows.py"
    path.write_text(TYPED_FLOW)
    return f"{path}:typed"


@pytest.mark.parametrize(("params", "expected"), [
    (["-p", "n=abc"], "parameter 'n' got 'abc' (str), which does not match its type hint int"),
    ([], "missing a required argument: 'n'"),
    (["-p", "n=1", "-p", "m=2"], "unexpected keyword argument 'm'"),
])
def test_submit_checks_parameters_like_run_before_uploading(
    fake: Fake, tmp_path: Path, params: list[str], expected: str
) -> None:
    api, store = fake
    code, out, err = _invoke("submit", _typed(tmp_path), *params)
    assert code == 2 and expected in err and "(--param)" in err, err
    assert err.startswith("Error: ") and len(err.strip().splitlines()) == 1
    assert api.objects == {} and store.objects == {}  # nothing uploaded, nothing created


@pytest.mark.parametrize("bad", ["-5", "0", "abc"])
def test_submit_refuses_a_bad_timeout(fake: Fake, tmp_path: Path, bad: str) -> None:
    code, _, err = _invoke("submit", _typed(tmp_path), "-p", "n=1", "--wait", "--timeout", bad)
    assert code == 2 and "--timeout" in err


def test_submit_blames_the_store_quickly_when_it_does_not_answer(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, store = fake

    def dead(key: str) -> bool:
        raise ConnectionError("Could not connect to the endpoint URL: http://127.0.0.1:1/")

    monkeypatch.setattr(store, "exists", dead)
    started = time.monotonic()
    code, _, err = _invoke("submit", _typed(tmp_path), "-p", "n=1")
    assert code == 1 and time.monotonic() - started < 10
    assert "(store)" in err and "Could not connect" in err and "cluster" not in err
    assert api.objects == {}


def test_submit_names_the_settings_when_the_store_settings_are_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWPOD_S3_BUCKET", "b")  # too short for a bucket name
    monkeypatch.setattr(_cli_access, "make_api", lambda: FakeClusterApi("ns1"))
    code, _, err = _invoke("submit", _typed(tmp_path), "-p", "n=1")
    assert code == 2 and "(settings: environment)" in err and "bucket" in err
    assert "Traceback" not in err


def test_describe_names_earlier_attempts_pods_as_the_operator_does() -> None:
    from flowpod._cli.describe import attempts_of
    from flowpod_operator.pods import flow_pod_name, pod_name

    long_name = "load-" + "x" * 70
    for kind, expected in (("TaskRun", pod_name), ("FlowRun", flow_pod_name)):
        history = [{"state": state, "type": "FAILED", "attempt": attempt,
                    "timestamp": f"2026-11-30T01:0{attempt}:00Z"}
                   for attempt, state in ((1, "Pending"), (1, "Crashed"), (2, "Retrying"))]
        obj = {"kind": kind, "metadata": {"name": long_name},
               "status": {"attempt": 2, "pod": expected(long_name, 2), "history": history}}
        pods = [row[1] for row in attempts_of(obj)]
        assert pods == [expected(long_name, 1), expected(long_name, 2)], pods
        assert all(len(pod) <= 63 for pod in pods)
