"""Issue 13's cluster command line against the test cluster: ``get -o json`` is the API's object,
``describe`` shows a failed TaskRun's attempts and its Events, and ``logs --task/--tail`` read
the stored logs after every pod is gone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .harness import Cluster
from .operator_fixtures import (  # noqa: F401 - fixtures, used by name
    operator,
    operator_factory,
    operator_kubeconfig,
    operator_rbac,
)
from .test_flowruns import (
    FAILING_FLOW,
    flow_runner,  # noqa: F401 - fixture, used by name
    flowpod_cli,
    flowrun_obj,
    taskruns_of,
)

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("operator", "flow_runner")]


def test_get_describe_and_logs_of_a_failed_run(cluster: Cluster, namespace: str,
                                               tmp_path: Path) -> None:
    path = tmp_path / "checker_flows.py"
    path.write_text(FAILING_FLOW)
    proc = flowpod_cli("-n", namespace, "submit", f"{path}:checker", "-p", "values=[1, -2]",
                       "--wait", "--timeout", "200")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    name = proc.stdout.split("flowrun.flowpod.dev/")[1].split()[0]

    # get -o json: the object as the API server has it, several as a List.
    one = flowpod_cli("get", "flowrun", name, "-n", namespace, "-o", "json")
    assert one.returncode == 0, one.stderr
    obj = json.loads(one.stdout)
    expected = flowrun_obj(cluster, namespace, name)
    assert obj["metadata"]["uid"] == expected["metadata"]["uid"]
    assert obj["status"]["state"] == "Failed" and obj["spec"] == expected["spec"]
    listed = json.loads(flowpod_cli("get", "taskruns", "-n", namespace, "--flowrun", name,
                                    "-o", "json").stdout)
    assert listed["kind"] == "List" and len(listed["items"]) == 2
    everywhere = flowpod_cli("get", "flowruns", "-A")
    assert any(line.split()[:2] == [namespace, name] for line in everywhere.stdout.splitlines())

    # describe: the FlowRun's counts and attempts; the failed TaskRun's Events.
    flow_text = flowpod_cli("describe", "flowrun", name, "-n", namespace)
    assert flow_text.returncode == 0, flow_text.stderr
    flat = " ".join(flow_text.stdout.split())
    assert "State: Failed" in flat and "Task Runs: 2 total" in flat and "1 failed" in flat
    failed = next(tr for tr in taskruns_of(cluster, namespace, name)
                  if tr["status"]["state"] == "Failed")
    task_text = flowpod_cli("inspect", f"taskrun/{failed['metadata']['name']}", "-n", namespace)
    assert task_text.returncode == 0, task_text.stderr
    out = task_text.stdout
    assert "Attempts:" in out and "Failed" in out.split("Attempts:")[1]
    events = out.split("Events:")[1]
    assert "Warning" in events and "Attempt 1" in events, out

    # logs after the pods are gone: from the store, one task only, the last line only.
    cluster.kubectl("delete", "pods", "--all", "-n", namespace, "--wait=true")
    run_name = failed["spec"]["runName"]
    logs = flowpod_cli("logs", name, "-n", namespace, "--task", run_name)
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert lines and all(line.startswith(f"{run_name} | ") for line in lines)
    assert any("negative input -2" in line for line in lines)
    tail = flowpod_cli("logs", name, "-n", namespace, "--tail", "1", "--timestamps")
    (last,) = tail.stdout.splitlines()
    stamp = last.split(" | ", 1)[1].split(" ", 1)[0]
    assert stamp.endswith("Z") and "T" in stamp, last
