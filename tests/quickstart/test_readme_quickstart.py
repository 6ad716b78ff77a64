"""The README's "Quickstart on kind", run as written on a fresh test cluster.

The commands are read from the README's own code block, so the test runs what a user copies.
They run in order in one bash session (``source`` and ``export`` carry over, as in a user's
terminal), from the repository's root. Only the lines that need kind and Docker are mapped, by the
table ``KIND_ONLY`` below (docs/testing.md shows the same table):

==========================================  ==============================================
README (kind, Docker)                       here
==========================================  ==============================================
``kind create cluster ...                   ``scripts/cluster check-kind-config
--config kind-config.yaml``                 kind-config.yaml`` (kind's own loader), then
                                            ``scripts/cluster up``, then the kubeconfig and
                                            kubectl and helm on PATH, as kind sets them
``make image kind-load``                    ``scripts/cluster image`` (the Dockerfile, built
                                            with buildah), then ``scripts/cluster
                                            load-image flowpod:dev``
``kind delete cluster ...``                 ``scripts/cluster down``
==========================================  ==============================================

One line is interactive: ``kubectl get taskruns -w`` runs until the user presses Ctrl-C "when
Completed". It runs in the background here and gets SIGINT once every TaskRun of the example is
Completed. Between ``flowpod submit`` and ``flowpod logs`` the test deletes the runs' pods, so the
logs come from the store, as they do for a user once the pods are garbage-collected.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
CLUSTER = REPO_ROOT / "scripts" / "cluster"

pytestmark = [pytest.mark.timeout(1800)]

# README line (comments stripped, whitespace collapsed) -> the commands that stand in for it.
KIND_ONLY: dict[str, str] = {
    "kind create cluster --name flowpod --config kind-config.yaml": (
        "scripts/cluster check-kind-config kind-config.yaml && scripts/cluster up"
        ' && eval "$(scripts/cluster env --kubeconfig-only)"'
    ),
    "make image kind-load": (
        "scripts/cluster image --tag flowpod:dev && scripts/cluster load-image flowpod:dev"
    ),
    "kind delete cluster --name flowpod": "scripts/cluster down",
}
WATCH = "kubectl get taskruns -w"


# -- reading the README ------------------------------------------------------------------------


def _strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` (a ``#`` after a blank, outside quotes)."""
    quote: str | None = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


@dataclass(frozen=True)
class Step:
    text: str          # the README's command, comments stripped
    docker: bool       # the README marks it as needing Docker


def quickstart_steps(readme: str) -> list[Step]:
    """The logical commands of the README's quickstart block, continuation lines joined."""
    section = readme.split("### Quickstart on kind", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the README's quickstart has no ```bash block"
    steps: list[Step] = []
    pending, docker = "", False
    for raw in block.group(1).splitlines():
        docker = docker or "# Docker" in raw
        line = _strip_comment(raw)
        if not line.strip():
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = " ".join((pending + line).split())
        steps.append(Step(text, docker))
        pending, docker = "", False
    return steps


def test_the_mapping_covers_exactly_the_readme_lines_that_need_docker() -> None:
    steps = quickstart_steps(README.read_text())
    assert {s.text for s in steps if s.docker} == set(KIND_ONLY)
    assert WATCH in {s.text for s in steps}
    assert steps[0].text.startswith("kind create cluster") and steps[-1].text.startswith(
        "kind delete cluster")


# -- one bash session --------------------------------------------------------------------------


class Shell:
    """A bash process fed one command at a time; output and exit status come back per command."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log.open("a")
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=REPO_ROOT, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1,
        )

    def run(self, command: str, timeout: float) -> tuple[int, str]:
        marker = f"__flowpod_step_{uuid.uuid4().hex}__"
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.log.write(f"\n$ {command}\n")
        self.proc.stdin.write(f"{command}\nprintf '\\n{marker} %s\\n' \"$?\"\n")
        self.proc.stdin.flush()
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"the shell ended during {command!r}:\n{''.join(lines)}")
            if line.startswith(marker):
                return int(line.split()[1]), "".join(lines)
            lines.append(line)
            self.log.write(line)
            self.log.flush()
            if time.monotonic() > deadline:
                raise AssertionError(f"{command!r} took over {timeout}s:\n{''.join(lines)}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.log.close()


def _clean_env(state: Path) -> dict[str, str]:
    """A user's shell: no cluster, store or flowpod settings, only the test cluster's state dir."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLOWPOD_", "AWS_", "KUBECONFIG", "VIRTUAL_ENV"))}
    env["FLOWPOD_CLUSTER_STATE"] = str(state)
    return env


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    state = tmp_path / "cluster-state"
    sh = Shell(_clean_env(state), tmp_path / "session.log")
    try:
        yield sh
    finally:
        sh.close()
        # Whatever happened, the cluster this test made goes (kind delete cluster).
        subprocess.run([str(CLUSTER), "down"], env=_clean_env(state), capture_output=True,
                       timeout=300, check=False)


def _kubectl_json(sh: Shell, *args: str) -> dict[str, Any]:
    rc, out = sh.run("kubectl " + " ".join(args) + " -o json", timeout=60)
    assert rc == 0, out
    value: dict[str, Any] = json.loads(out)
    return value


# -- the quickstart ----------------------------------------------------------------------------


def test_the_readme_quickstart_runs_as_written(shell: Shell, tmp_path: Path) -> None:
    steps = quickstart_steps(README.read_text())
    flowrun = "repo-stats-example"
    watch_out = tmp_path / "watch.out"
    outputs: dict[str, str] = {}
    for step in steps:
        command = KIND_ONLY.get(step.text, step.text)
        if step.text == WATCH:
            _watch_until_completed(shell, watch_out, flowrun)
            continue
        if step.text.startswith("flowpod logs"):
            _check_pods_then_delete_them(shell, flowrun)
        rc, out = shell.run(command, timeout=1200)
        outputs[step.text] = out
        assert rc == 0, f"README step failed (exit {rc}): {step.text}\n{out[-6000:]}"
        if step.text.startswith("helm install"):
            _check_the_install(shell)

    submit = next(s for s in outputs if s.startswith("flowpod submit"))
    assert "finished in state Completed" in outputs[submit], outputs[submit]
    # The flow pod's and every task pod's log, read from the store once the pods were gone.
    logs = outputs[f"flowpod logs {flowrun}"].splitlines()
    flow_lines = [line for line in logs if line.startswith(f"flow {flowrun} | ")]
    assert any("Flow run" in line and "Finished in state Completed()" in line
               for line in flow_lines), logs
    for repo in ("PrefectHQ/prefect", "pallets/click", "nolar/kopf"):
        assert any(f"{repo}: " in line and " stars" in line for line in flow_lines), (repo, logs)
    for index in range(3):
        assert any(line.startswith(f"get_url-{index} | ") and "Finished in state Completed"
                   in line for line in logs), (index, logs)
    # The operator's own log, through the kubelet: in its container it reached the chart's MinIO
    # by its Service name (cluster DNS, kube-proxy) and made the bucket; the kubelet's probes,
    # every few seconds, do not flood it.
    operator_log = outputs["kubectl -n flowpod-system logs deploy/flowpod-operator"]
    assert "INFO flowpod.operator: created bucket flowpod" in operator_log, operator_log
    assert "kube-probe/" not in operator_log, operator_log
    assert "flowruns.flowpod.dev" in outputs[
        "kubectl delete crd flowruns.flowpod.dev taskruns.flowpod.dev"]


def _check_the_install(sh: Shell) -> None:
    """After ``helm install --wait``: the operator and MinIO run on the node, probes passing."""
    pods = _kubectl_json(sh, "get", "pods", "-n", "flowpod-system")["items"]
    components = {p["metadata"]["labels"].get("app.kubernetes.io/component"): p for p in pods}
    for name in ("operator", "minio"):
        pod = components[name]
        ready = [c for c in pod["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", (name, pod["status"])
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    # The node port of kind-config.yaml answers on this machine's loopback (once kube-proxy has
    # programmed the new Service, a second or so after its endpoint became ready).
    def answers() -> bool:
        rc, _ = sh.run("curl -fsS --max-time 5 http://localhost:30900/minio/health/live", 30)
        return rc == 0

    wait_for(answers, 30, "MinIO on localhost:30900", interval=1)


def _watch_until_completed(sh: Shell, out: Path, flowrun: str) -> None:
    """``kubectl get taskruns -w`` until every TaskRun of the example is Completed; then Ctrl-C."""
    rc, pid_text = sh.run(f"{WATCH} > {out} 2>&1 & echo $!", timeout=30)
    assert rc == 0
    pid = int(pid_text.strip().splitlines()[-1])

    def flowrun_final() -> dict[str, Any] | None:
        status = _kubectl_json(sh, "get", "flowrun", flowrun).get("status") or {}
        final = ("Completed", "Failed", "Crashed", "TimedOut", "Cancelled")
        return status if status.get("state") in final else None

    status = wait_for(flowrun_final, 300, f"FlowRun {flowrun} to finish", interval=1)
    assert status["state"] == "Completed" and status["tasksSummary"] == "3/3", status
    wait_for(lambda: out.read_text().count("Completed") >= 3, 30, "the watch to show Completed")
    os.kill(pid, signal.SIGINT)
    rc, _ = sh.run(f"wait {pid}", timeout=30)
    taskruns = _kubectl_json(sh, "get", "taskruns")["items"]
    assert len(taskruns) == 3 and all(t["status"]["state"] == "Completed" for t in taskruns)


def _check_pods_then_delete_them(sh: Shell, flowrun: str) -> None:
    """The runs' pods ran hardened; then they go, as pod garbage collection would take them."""
    pods = _kubectl_json(sh, "get", "pods", "-l", "flowpod.dev/flowrun")["items"]
    assert pods, "no pods of the example FlowRuns"
    for pod in pods:
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
        if "flowpod.dev/taskrun" in pod["metadata"]["labels"]:
            assert spec["automountServiceAccountToken"] is False
        assert pod["status"]["phase"] == "Succeeded", (pod["metadata"]["name"], pod["status"])
    rc, out = sh.run("kubectl delete pods -l flowpod.dev/flowrun --wait=true", timeout=120)
    assert rc == 0, out
