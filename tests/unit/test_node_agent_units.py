"""The node agent's pure parts and its pod worker against a fake API client (no cluster needed)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.cluster import _podlaunch, _podlogs, _podspec, _podstatus  # noqa: E402
from tests.cluster._podrunner import AgentContext, PodWorker  # noqa: E402

# -- $(VAR) expansion ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "alpha"),
        ("x-$(A)-$(B)-y", "x-alpha-beta-y"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(A)", "$(A)"),
        ("$$", "$"),
        ("cost: $5", "cost: $5"),
        ("$(A", "$(A"),
        ("trailing $", "trailing $"),
        ("$(A)$(A)", "alphaalpha"),
        ("$()", "$()"),
    ],
)
def test_expand_follows_kubelet_rules(text: str, expected: str) -> None:
    assert _podspec.expand(text, {"A": "alpha", "B": "beta"}) == expected


# -- environment ----------------------------------------------------------------------------------


def _pod(container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p1", "namespace": "ns1", "uid": "u-1", "labels": {"app": "x"}},
        "spec": {"nodeName": "n1", "serviceAccountName": "sa1", "containers": [container], **spec},
    }


def _lookup(objects: dict[tuple[str, str, str], dict[str, str]]) -> _podspec.Lookup:
    return lambda kind, ns, name: objects.get((kind, ns, name))


def test_env_sources_and_order() -> None:
    container = {
        "name": "main",
        "envFrom": [
            {"configMapRef": {"name": "cm"}},
            {"secretRef": {"name": "sec"}, "prefix": "S_"},
        ],
        "env": [
            {"name": "FIRST", "value": "1"},
            {"name": "SECOND", "value": "$(FIRST)-$(THIRD)-$(KUBERNETES_SERVICE_HOST)-$(C1)"},
            {"name": "THIRD", "value": "3"},
            {"name": "SK", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
            {"name": "CK", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "C1"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "LBL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "LITERAL", "value": "$(SK)"},  # valueFrom values are not re-expanded
        ],
    }
    objects = {
        ("ConfigMap", "ns1", "cm"): {"C1": "c-one", "C2": "c-two"},
        ("Secret", "ns1", "sec"): {"pw": "s3cret"},
    }
    result = _podspec.build_env(_pod(container), container, _lookup(objects),
                                {"KUBERNETES_SERVICE_HOST": "127.0.0.1"})
    env = result.env
    assert env["C1"] == "c-one" and env["C2"] == "c-two"
    assert env["S_pw"] == "s3cret"
    assert env["SECOND"] == "1-$(THIRD)-127.0.0.1-c-one"
    assert env["SK"] == "s3cret" and env["CK"] == "c-one"
    assert (env["POD"], env["NS"], env["IP"], env["NODE"], env["SA"], env["LBL"]) == (
        "p1", "ns1", "127.0.0.1", "n1", "sa1", "x")
    assert env["LITERAL"] == "s3cret"
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"


def test_secret_data_is_base64_decoded() -> None:
    encoded = {"k": base64.b64encode("välue".encode()).decode()}
    assert _podspec.decode_secret_data(encoded) == {"k": "välue"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}],
         'secret "nope" not found'),
        ([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "zz"}}}],
         "couldn't find key zz in ConfigMap ns1/cm"),
    ],
)
def test_missing_references_are_config_errors(env: list[Any], message: str) -> None:
    container = {"name": "main", "env": env}
    objects = {("ConfigMap", "ns1", "cm"): {"a": "b"}}
    with pytest.raises(_podspec.ConfigError, match=message):
        _podspec.build_env(_pod(container), container, _lookup(objects), {})


def test_optional_references_are_skipped() -> None:
    container = {
        "name": "main",
        "envFrom": [{"secretRef": {"name": "nope", "optional": True}}],
        "env": [
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "n", "key": "k",
                                                         "optional": True}}},
            {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "zz",
                                                            "optional": True}}},
        ],
    }
    objects = {("ConfigMap", "ns1", "cm"): {"a": "b"}}
    env = _podspec.build_env(_pod(container), container, _lookup(objects), {}).env
    assert "X" not in env and "Y" not in env


def test_resource_field_ref_uses_limits_then_allocatable() -> None:
    container = {"name": "m", "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}},
                 "env": [
                     {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                     {"name": "MEM", "valueFrom": {"resourceFieldRef": {
                         "resource": "limits.memory", "divisor": "1Mi"}}},
                     {"name": "EPH", "valueFrom": {"resourceFieldRef": {
                         "resource": "limits.ephemeral-storage", "divisor": "1Gi"}}},
                 ]}
    env = _podspec.build_env(_pod(container), container, _lookup({}), {},
                             allocatable={"ephemeral-storage": "100Gi"}).env
    assert (env["CPU"], env["MEM"], env["EPH"]) == ("2", "1024", "100")


def test_argv_expands_command_and_args() -> None:
    container = {"name": "m", "command": ["echo", "$(A)"], "args": ["$(B)", "$$(A)"]}
    assert _podspec.container_argv(container, {"A": "a", "B": "b"}) == ["echo", "a", "b", "$(A)"]


def test_args_without_command_fail_clearly() -> None:
    with pytest.raises(_podspec.StartError, match="no image ENTRYPOINT.*set spec.containers"):
        _podspec.container_argv({"name": "m", "args": ["x"]}, {})


def test_identity_container_overrides_pod() -> None:
    pod = _pod({"name": "m"}, securityContext={"runAsUser": 1000, "runAsGroup": 1000,
                                               "supplementalGroups": [5]})
    container = {"name": "m", "securityContext": {"runAsUser": 2000}}
    assert _podspec.identity(pod, container) == _podspec.Identity(2000, 1000, (5,))
    with pytest.raises(_podspec.ConfigError, match="runAsNonRoot"):
        _podspec.identity(_pod({"name": "m"}), {"name": "m",
                                                "securityContext": {"runAsNonRoot": True}})


# -- status -------------------------------------------------------------------------------------


def _conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_running_status_is_ready() -> None:
    state = _podstatus.ContainerState(kind="running", reason="", started_at=1_700_000_000)
    status = _podstatus.pod_status(
        container={"name": "main", "image": "busybox"}, state=state, phase="Running",
        start_time=1_700_000_000, conditions=_podstatus.Conditions(), container_id="flowpod://x",
        now=1_700_000_001,
    )
    cond = _conditions(status)
    assert status["phase"] == "Running"
    assert all(cond[t]["status"] == "True" for t in _podstatus.KUBELET_CONDITIONS)
    cs = status["containerStatuses"][0]
    assert cs["state"] == {"waiting": None, "running": {"startedAt": "2023-11-14T22:13:20Z"},
                           "terminated": None}
    assert cs["ready"] is True and cs["restartCount"] == 0
    assert status["podIP"] == status["hostIP"] == "127.0.0.1"
    assert status["startTime"] == "2023-11-14T22:13:20Z"


@pytest.mark.parametrize(("code", "phase", "reason"), [(0, "Succeeded", "Completed"),
                                                       (3, "Failed", "Error")])
def test_terminated_status(code: int, phase: str, reason: str) -> None:
    state = _podstatus.ContainerState(kind="terminated", reason=_podstatus.exit_reason(code),
                                      exit_code=code, started_at=100, finished_at=160)
    assert _podstatus.phase_for(state) == phase
    status = _podstatus.pod_status(
        container={"name": "main", "image": "img"}, state=state, phase=phase, start_time=99,
        conditions=_podstatus.Conditions(), container_id="flowpod://x",
    )
    term = status["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == code and term["reason"] == reason
    assert term["startedAt"] == "1970-01-01T00:01:40Z" and term["finishedAt"].endswith("02:40Z")
    cond = _conditions(status)
    assert cond["Ready"]["status"] == "False" and cond["Ready"]["reason"] == "PodCompleted"
    assert cond["PodReadyToStartContainers"]["status"] == "False"


def test_condition_transition_time_is_kept_while_unchanged() -> None:
    book = _podstatus.Conditions()
    first = book.make("Ready", False, now=1000)
    same = book.make("Ready", False, now=2000)
    flipped = book.make("Ready", True, now=3000)
    assert first["lastTransitionTime"] == same["lastTransitionTime"]
    assert flipped["lastTransitionTime"] == _podstatus.rfc3339(3000)


def test_signal_exit_codes_and_time_formats() -> None:
    assert _podstatus.exit_code_of(-15) == 143 and _podstatus.exit_code_of(-9) == 137
    assert _podstatus.exit_code_of(3) == 3
    assert _podstatus.rfc3339_micro(1.5) == "1970-01-01T00:00:01.500000Z"
    assert _podstatus.rfc3339_micro(2.0) == "1970-01-01T00:00:02.000000Z"
    assert _podstatus.rfc3339_nano(1_000_000_007) == "1970-01-01T00:00:01.000000007Z"


# -- launching ------------------------------------------------------------------------------------


def test_launch_argv_layers_only_what_is_needed(tmp_path: Path) -> None:
    plain = _podspec.Identity(None, None, ())
    assert _podlaunch.launch_argv(["/bin/true"], plain, None, None) == ["/bin/true"]
    user = _podspec.Identity(1000, None, (5, 6))
    assert _podlaunch.launch_argv(["/bin/true"], user, None, None) == [
        "setpriv", "--reuid", "1000", "--regid", "0", "--groups", "5,6", "--", "/bin/true"]
    full = _podlaunch.launch_argv(["/bin/true"], plain, tmp_path / "cg", tmp_path / "sa")
    assert full[:5] == ["unshare", "--mount", "--propagation", "private", "--"]
    assert full[5:8] == ["/bin/sh", "-c", _podlaunch.WRAPPER]
    assert full[8:] == ["flowpod-pod", str(tmp_path / "cg"), str(tmp_path / "sa"), "/bin/true"]
    no_token = _podlaunch.launch_argv(["/bin/true"], plain, tmp_path / "cg", None)
    assert no_token[0] == "/bin/sh" and no_token[-3:] == [str(tmp_path / "cg"), "", "/bin/true"]


def test_resolve_executable(tmp_path: Path) -> None:
    (tmp_path / "tool").write_text("")
    assert _podlaunch.resolve_executable(["sh", "-c", "x"], "/usr/bin:/bin", tmp_path)[0] in (
        "/usr/bin/sh", "/bin/sh")
    assert _podlaunch.resolve_executable(["./tool"], "", tmp_path) == ["./tool"]
    with pytest.raises(_podspec.StartError, match='exec: "nope-xyz": executable file not found'):
        _podlaunch.resolve_executable(["nope-xyz"], "/usr/bin", tmp_path)
    with pytest.raises(_podspec.StartError, match="no such file or directory"):
        _podlaunch.resolve_executable(["/nope/xyz"], "/usr/bin", tmp_path)


def test_process_env_puts_the_venv_first_and_lets_the_pod_win(tmp_path: Path) -> None:
    env = _podlaunch.process_env({"HOME": "/custom"}, venv=Path("/v"), pod_name="p1", uid=None,
                                 sa_dir=tmp_path, pass_env={"EXTRA": "1"})
    assert env["PATH"].startswith("/v/bin:") and env["HOSTNAME"] == "p1"
    assert env["HOME"] == "/custom" and env["EXTRA"] == "1"
    assert env["FLOWPOD_SERVICEACCOUNT_DIR"] == str(tmp_path)
    svc = _podlaunch.service_env("127.0.0.1", 6443)
    assert svc["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert svc["KUBERNETES_PORT_6443_TCP_ADDR"] == "127.0.0.1"


# -- logs ---------------------------------------------------------------------------------------


def _write_log(path: Path, lines: list[tuple[bytes, int]]) -> None:
    """Append lines, indexing each at a fixed time (ns) so filters are deterministic."""
    with open(path, "ab") as f:
        for data, _ in lines:
            f.write(data)
    offset = 0
    with open(str(path) + ".ts", "w") as idx:
        for data, ts in lines:
            offset += len(data)
            idx.write(f"{offset} {ts}\n")


def test_indexer_records_each_line_once(tmp_path: Path) -> None:
    log = tmp_path / "main.log"
    log.write_bytes(b"one\ntw")
    indexer = _podlogs.LogIndexer(log)
    indexer.poll()
    with open(log, "ab") as f:
        f.write(b"o\nthree")
    indexer.poll()
    indexer.poll(final=True)
    entries, end = _podlogs.read_entries(log)
    assert [e[1] for e in entries] == [b"one\n", b"two\n", b"three"]
    assert end == log.stat().st_size
    assert all(later[0] >= earlier[0] for earlier, later in zip(entries, entries[1:],
                                                                  strict=False))


def test_log_query_filters(tmp_path: Path) -> None:
    log = tmp_path / "main.log"
    _write_log(log, [(b"a\n", 1_000_000_000), (b"b\n", 2_000_000_000), (b"c\n", 3_000_000_000)])
    done = _podlogs.ContainerLog(log, finished=lambda: True)

    def body(query: str) -> bytes:
        return b"".join(_podlogs.stream_log(done, _podlogs.LogQuery.parse(query)))

    assert body("") == b"a\nb\nc\n"
    assert body("tailLines=2") == b"b\nc\n"
    assert body("tailLines=0") == b""
    assert body("limitBytes=3") == b"a\nb"
    assert body("sinceTime=1970-01-01T00:00:02Z") == b"b\nc\n"
    assert body("timestamps=true&tailLines=1") == b"1970-01-01T00:00:03.000000000Z c\n"
    assert body("follow=true") == b"a\nb\nc\n"  # finished container: follow ends


def test_follow_streams_until_the_container_finishes(tmp_path: Path) -> None:
    log = tmp_path / "main.log"
    log.write_bytes(b"")
    finished = threading.Event()
    chunks: list[bytes] = []
    clog = _podlogs.ContainerLog(log, finished=finished.is_set)
    reader = threading.Thread(
        target=lambda: chunks.extend(_podlogs.stream_log(clog, _podlogs.LogQuery(follow=True),
                                                         poll_interval=0.01)))
    reader.start()
    with open(log, "ab") as f:
        f.write(b"late line\n")
    deadline = time.monotonic() + 5
    while not chunks and time.monotonic() < deadline:
        time.sleep(0.01)
    assert chunks == [b"late line\n"]
    finished.set()
    reader.join(5)
    assert not reader.is_alive()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl for the serving cert")
def test_https_endpoint_serves_logs(tmp_path: Path) -> None:
    log = tmp_path / "main.log"
    _write_log(log, [(b"hello\n", 5_000_000_000)])
    cert, key = _podlogs.ensure_serving_cert(tmp_path / "pki", "node-x")

    def resolve(ns: str, pod: str, container: str) -> _podlogs.ContainerLog | None:
        if (ns, pod, container) == ("ns1", "p1", "main"):
            return _podlogs.ContainerLog(log, finished=lambda: True)
        return None

    server = _podlogs.KubeletServer(0, cert, key, resolve, lambda *_: None)
    server.start()
    try:
        port = server.server_address[1]
        ctx = ssl.create_default_context(cafile=str(cert))
        base = f"https://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/healthz", context=ctx, timeout=5) as r:
            assert r.read() == b"ok"
        url = f"{base}/containerLogs/ns1/p1/main?timestamps=true"
        with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
            assert r.read() == b"1970-01-01T00:00:05.000000000Z hello\n"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/containerLogs/ns1/p1/other", context=ctx, timeout=5)
        assert err.value.code == 404
        assert "not found" in json.loads(err.value.read())["message"]
    finally:
        server.shutdown()
        server.server_close()


# -- the pod worker against a fake API client (our own seam) ------------------------------------


class FakeKube:
    """Records status patches and deletes; serves Secrets/ConfigMaps from a dict."""

    def __init__(self, objects: dict[str, Any] | None = None) -> None:
        self.objects = objects or {}
        self.patches: list[dict[str, Any]] = []
        self.deletes: list[str] = []
        self.changed = threading.Condition()

    def get(self, path: str, **_: Any) -> dict[str, Any]:
        from tests.cluster._kube import ApiError

        if path in self.objects:
            return dict(self.objects[path])
        raise ApiError(404, "not found")

    def request(self, method: str, path: str, body: Any = None, **_: Any) -> dict[str, Any]:
        with self.changed:
            if method == "PATCH":
                self.patches.append(body["status"])
            elif method == "DELETE":
                self.deletes.append(path)
            self.changed.notify_all()
        return {}

    def ca_bytes(self) -> bytes:
        return b""

    def wait(self, predicate: Any, timeout: float = 10.0) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self), timeout), self.patches[-1:]


def _worker(tmp_path: Path, kube: FakeKube, container: dict[str, Any], **spec: Any) -> PodWorker:
    ctx = AgentContext(
        kube=kube,  # type: ignore[arg-type]
        node_name="n1", state_dir=tmp_path, venv=Path(sys.prefix), api_host="127.0.0.1",
        api_port=6443, allocatable={}, event=lambda *a: None, log=lambda *a, **k: None,
    )
    spec.setdefault("restartPolicy", "Never")
    pod = _pod({"image": "img", **container}, automountServiceAccountToken=False, **spec)
    worker = PodWorker(ctx, pod)
    worker.start()
    return worker


def _last(kube: FakeKube) -> dict[str, Any]:
    return kube.patches[-1] if kube.patches else {}


def test_worker_runs_command_with_env_and_reports_exit(tmp_path: Path) -> None:
    kube = FakeKube({"/api/v1/namespaces/ns1/configmaps/cm": {"data": {"GREETING": "hi"}}})
    worker = _worker(tmp_path, kube, {
        "name": "main",
        "command": ["sh", "-c", 'echo "$GREETING from $(POD) in $PWD"; exit 3'],
        "envFrom": [{"configMapRef": {"name": "cm"}}],
        "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
    })
    kube.wait(lambda k: _last(k).get("phase") == "Failed")
    phases = [p["phase"] for p in kube.patches]
    assert phases[0] == "Pending" and "Running" in phases
    term = _last(kube)["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error"
    text = worker.log_path.read_text()
    assert text == f"hi from p1 in {worker.dir / 'work'}\n"
    worker.update(None)
    worker.join(5)


def test_worker_enforces_active_deadline(tmp_path: Path) -> None:
    kube = FakeKube()
    started = time.monotonic()
    worker = _worker(tmp_path, kube, {"name": "main", "command": ["sleep", "30"]},
                     activeDeadlineSeconds=1)
    kube.wait(lambda k: _last(k).get("phase") == "Failed")
    assert time.monotonic() - started < 5
    status = _last(kube)
    assert status["reason"] == "DeadlineExceeded"
    assert status["message"] == "Pod was active on the node longer than the specified deadline"
    term = status["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "Error" and term["exitCode"] == 143
    assert worker.proc is not None and worker.proc.poll() is not None
    worker.update(None)
    worker.join(5)


def test_worker_kills_on_deletion_and_finalises(tmp_path: Path) -> None:
    kube = FakeKube()
    worker = _worker(tmp_path, kube, {"name": "main", "command": ["sleep", "30"]})
    kube.wait(lambda k: _last(k).get("phase") == "Running")
    assert worker.proc is not None
    pid = worker.proc.pid
    pod = json.loads(json.dumps(worker.pod))
    pod["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    pod["metadata"]["deletionGracePeriodSeconds"] = 30
    worker.update(pod)
    kube.wait(lambda k: k.deletes == ["/api/v1/namespaces/ns1/pods/p1"])
    assert _last(kube)["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 143
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    worker.join(5)
    assert not worker.is_alive()


def test_worker_reports_unknown_executable(tmp_path: Path) -> None:
    kube = FakeKube()
    worker = _worker(tmp_path, kube, {"name": "main", "command": ["no-such-binary-xyz"]})
    kube.wait(lambda k: _last(k).get("phase") == "Failed")
    term = _last(kube)["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "StartError" and term["exitCode"] == 128
    assert 'exec: "no-such-binary-xyz": executable file not found' in term["message"]
    worker.update(None)
    worker.join(5)


def test_worker_waits_on_missing_secret_with_config_error(tmp_path: Path) -> None:
    kube = FakeKube()
    worker = _worker(tmp_path, kube, {
        "name": "main", "command": ["true"],
        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "later", "key": "k"}}}],
    })
    kube.wait(lambda k: ((_last(k).get("containerStatuses", [{}])[0].get("state") or {})
                         .get("waiting") or {}).get("reason") == "CreateContainerConfigError")
    assert _last(kube)["phase"] == "Pending"
    assert _last(kube)["containerStatuses"][0]["state"]["waiting"]["message"] == (
        'secret "later" not found')
    kube.objects["/api/v1/namespaces/ns1/secrets/later"] = {
        "data": {"k": base64.b64encode(b"v").decode()}}
    worker.update(worker.pod)
    kube.wait(lambda k: _last(k).get("phase") == "Succeeded")
    worker.update(None)
    worker.join(5)


HAS_MEMORY_CGROUP = Path("/sys/fs/cgroup/memory/cgroup.procs").exists() and os.geteuid() == 0


@pytest.mark.skipif(not HAS_MEMORY_CGROUP, reason="needs root and the cgroup v1 memory controller")
def test_worker_reports_oom_kill_under_a_memory_limit(tmp_path: Path) -> None:
    kube = FakeKube()
    worker = _worker(tmp_path, kube, {
        "name": "main", "resources": {"limits": {"memory": "40Mi"}},
        "command": [sys.executable, "-c", "x = bytearray(400 * 1024 * 1024); print(len(x))"],
    })
    kube.wait(lambda k: _last(k).get("phase") == "Failed")
    term = _last(kube)["containerStatuses"][0]["state"]["terminated"]
    assert (term["reason"], term["exitCode"]) == ("OOMKilled", 137)
    worker.update(None)
    worker.join(5)
    assert not Path(f"/sys/fs/cgroup/memory/flowpod/{worker.uid}").exists()


def test_on_failure_restarts_until_success(tmp_path: Path) -> None:
    kube = FakeKube()
    script = 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ "$n" -ge 2 ]'
    worker = _worker(tmp_path, kube, {"name": "main", "command": ["sh", "-c", script]},
                     restartPolicy="OnFailure")
    kube.wait(lambda k: _last(k).get("phase") == "Succeeded")
    cs = _last(kube)["containerStatuses"][0]
    assert cs["restartCount"] == 1
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert cs["state"]["terminated"]["exitCode"] == 0
    worker.update(None)
    worker.join(5)


def test_always_backs_off_after_the_first_restart(tmp_path: Path) -> None:
    kube = FakeKube()
    worker = _worker(tmp_path, kube, {"name": "main", "command": ["true"]},
                     restartPolicy="Always")

    def backing_off(k: FakeKube) -> bool:
        cs = _last(k).get("containerStatuses", [{}])[0]
        return ((cs.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff"

    kube.wait(backing_off)
    status = _last(kube)
    cs = status["containerStatuses"][0]
    assert status["phase"] == "Running"
    assert cs["restartCount"] == 2
    assert cs["lastState"]["terminated"]["reason"] == "Completed"
    assert "back-off 10s" in cs["state"]["waiting"]["message"]
    worker.update(None)
    worker.join(5)
