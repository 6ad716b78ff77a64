"""The node agent against the real control plane: scheduling, status, deadlines, env, deletion,
logs through the API server, in-cluster service-account tokens and concurrency."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
AGENT = REPO_ROOT / "tests" / "cluster" / "node_agent.py"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.cluster.tcp_proxy import TcpProxy  # noqa: E402

pytestmark = pytest.mark.cluster

TERMINAL = ("Succeeded", "Failed")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll until `predicate` returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - reported on timeout
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f" (last error: {last!r})" if last else ""))
        time.sleep(0.1)


@pytest.fixture
def core(kube_api: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(kube_api)


def make_pod(name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "flowpod.invalid/unused:1",
                                 "command": command}
    for key in ("env", "envFrom", "workingDir"):
        if key in spec:
            container[key] = spec.pop(key)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def wait_terminal(core: Any, namespace: str, name: str, timeout: float = 60) -> Any:
    return wait_for(
        lambda: (p := core.read_namespaced_pod(name, namespace)).status.phase in TERMINAL and p,
        timeout, f"pod {namespace}/{name} to finish",
    )


def pod_log(core: Any, namespace: str, name: str, **kw: Any) -> str:
    text = core.read_namespaced_pod_log(name, namespace, container="main", **kw)
    return "" if text is None else str(text)  # the client gives None for an empty log


def test_node_is_ready_with_capacity_and_lease(cluster: Any, kube_api: Any, core: Any) -> None:
    from kubernetes import client

    node = core.read_node(cluster.info["node_name"])
    ready = {c.type: c for c in node.status.conditions}["Ready"]
    assert ready.status == "True" and ready.reason == "KubeletReady"
    assert node.status.allocatable["cpu"] == "32" and node.status.capacity["pods"] == "250"
    assert not [t for t in node.spec.taints or [] if t.effect in ("NoSchedule", "NoExecute")]
    version = client.VersionApi(kube_api).get_code().git_version
    assert node.status.node_info.kubelet_version == version
    lease: Any = client.CoordinationV1Api(kube_api).read_namespaced_lease(
        cluster.info["node_name"], "kube-node-lease")
    assert lease.spec.holder_identity == cluster.info["node_name"]
    age = time.time() - lease.spec.renew_time.timestamp()
    assert age < 30, f"lease last renewed {age:.0f}s ago"


def test_scheduled_pods_report_exit_codes(cluster: Any, core: Any, namespace: str) -> None:
    core.create_namespaced_pod(namespace, make_pod("ok", ["sh", "-c", "exit 0"]))
    core.create_namespaced_pod(namespace, make_pod("three", ["sh", "-c", "echo bye; exit 3"]))
    ok = wait_terminal(core, namespace, "ok")
    three = wait_terminal(core, namespace, "three")

    assert ok.spec.node_name == cluster.info["node_name"]  # bound by the real scheduler
    assert ok.status.phase == "Succeeded"
    term = ok.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason) == (0, "Completed")
    assert term.started_at is not None and term.finished_at >= term.started_at

    assert three.status.phase == "Failed"
    term = three.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason) == (3, "Error")
    conditions = {c.type: c.status for c in three.status.conditions}
    assert conditions["PodScheduled"] == "True" and conditions["Ready"] == "False"
    assert three.status.pod_ip == "127.0.0.1" and three.status.start_time is not None


def test_active_deadline_fails_the_pod(core: Any, namespace: str) -> None:
    started = time.monotonic()
    core.create_namespaced_pod(namespace, make_pod("late", ["sleep", "30"],
                                                   activeDeadlineSeconds=2))
    pod = wait_terminal(core, namespace, "late", timeout=20)
    elapsed = time.monotonic() - started
    assert pod.status.phase == "Failed"
    assert pod.status.reason == "DeadlineExceeded"
    assert pod.status.message == "Pod was active on the node longer than the specified deadline"
    assert pod.status.container_statuses[0].state.terminated.reason == "Error"
    assert elapsed < 10, f"deadline enforced after {elapsed:.1f}s"


def test_env_from_secret_and_configmap_reaches_the_process(core: Any, namespace: str) -> None:
    from kubernetes import client

    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="creds"), string_data={"password": "hunter2"}))
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="settings"), data={"MODE": "fast", "LEVEL": "7"}))
    script = ("import json, os; print(json.dumps({k: os.environ.get(k) for k in "
              "['PASSWORD', 'MODE', 'LEVEL', 'CFG_MODE', 'COMBINED', 'POD_NAME', 'POD_NS', "
              "'KUBERNETES_SERVICE_HOST']}))")
    core.create_namespaced_pod(namespace, make_pod(
        "envy", ["python", "-c", script],
        envFrom=[{"configMapRef": {"name": "settings"}},
                 {"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        env=[
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds",
                                                               "key": "password"}}},
            {"name": "COMBINED", "value": "$(MODE)-$(LEVEL)"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ],
    ))
    pod = wait_terminal(core, namespace, "envy")
    assert pod.status.phase == "Succeeded", pod_log(core, namespace, "envy")
    seen = json.loads(pod_log(core, namespace, "envy"))
    assert seen == {"PASSWORD": "hunter2", "MODE": "fast", "LEVEL": "7", "CFG_MODE": "fast",
                    "COMBINED": "fast-7", "POD_NAME": "envy", "POD_NS": namespace,
                    "KUBERNETES_SERVICE_HOST": "127.0.0.1"}


def test_missing_secret_holds_the_pod_pending(core: Any, namespace: str) -> None:
    from kubernetes import client

    core.create_namespaced_pod(namespace, make_pod(
        "waits", ["sh", "-c", 'test "$X" = later'],
        env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "later", "key": "x"}}}]))

    def config_error() -> Any:
        pod = core.read_namespaced_pod("waits", namespace)
        statuses = pod.status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        return waiting if waiting and waiting.reason == "CreateContainerConfigError" else None

    waiting = wait_for(config_error, 30, "CreateContainerConfigError")
    assert waiting.message == 'secret "later" not found'
    assert core.read_namespaced_pod("waits", namespace).status.phase == "Pending"
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="later"), string_data={"x": "later"}))
    assert wait_terminal(core, namespace, "waits", timeout=40).status.phase == "Succeeded"


def test_deleting_a_running_pod_kills_its_process(core: Any, namespace: str) -> None:
    from kubernetes.client.exceptions import ApiException

    # `$$$$`: the kubelet turns `$$` into `$`, so the shell sees `$$` (its own pid).
    core.create_namespaced_pod(namespace, make_pod("doomed",
                                                   ["sh", "-c", "echo $$$$; exec sleep 300"]))
    pid = int(wait_for(lambda: pod_log(core, namespace, "doomed").strip(), 60, "the pod's pid"))
    assert core.read_namespaced_pod("doomed", namespace).status.phase == "Running"
    os.kill(pid, 0)  # alive now

    core.delete_namespaced_pod("doomed", namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_pod("doomed", namespace)
        except ApiException as exc:
            return bool(exc.status == 404)
        return False

    wait_for(gone, 20, "the pod object to disappear")

    def dead() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    assert wait_for(dead, 5, f"process {pid} to be gone")


def test_logs_through_the_api_server(cluster: Any, core: Any, namespace: str) -> None:
    core.create_namespaced_pod(namespace, make_pod(
        "talker", ["sh", "-c", "echo one; echo two >&2; echo three"]))
    assert wait_terminal(core, namespace, "talker").status.phase == "Succeeded"
    assert pod_log(core, namespace, "talker") == "one\ntwo\nthree\n"
    assert pod_log(core, namespace, "talker", tail_lines=1) == "three\n"
    stamped = pod_log(core, namespace, "talker", timestamps=True).splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["one", "two", "three"]
    assert all(line.split(" ", 1)[0].endswith("Z") for line in stamped)
    assert pod_log(core, namespace, "talker", limit_bytes=6) == "one\ntw"
    if shutil.which(cluster.info["binaries"]["kubectl"]) or os.path.exists(
            cluster.info["binaries"]["kubectl"]):
        out = cluster.kubectl("logs", "-n", namespace, "talker").stdout
        assert out == "one\ntwo\nthree\n"


def test_follow_streams_a_running_pod(core: Any, namespace: str) -> None:
    core.create_namespaced_pod(namespace, make_pod(
        "ticker", ["sh", "-c", "for i in 1 2 3; do echo tick$i; sleep 0.5; done"]))
    wait_for(lambda: core.read_namespaced_pod("ticker", namespace).status.phase
             in ("Running", *TERMINAL), 60, "ticker to start")
    resp = core.read_namespaced_pod_log("ticker", namespace, follow=True,
                                        _preload_content=False)
    body = resp.read().decode()
    assert body == "tick1\ntick2\ntick3\n"


def test_in_cluster_service_account_token(core: Any, kube_api: Any, namespace: str) -> None:
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(kube_api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader")))
    rbac.create_namespaced_role(namespace, client.V1Role(
        metadata=client.V1ObjectMeta(name="pod-reader"),
        rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["list"])]))
    rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="pod-reader"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role",
                                  name="pod-reader"),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader",
                                       namespace=namespace)]))
    script = (
        "import json, os\n"
        "from kubernetes import client, config\n"
        "from kubernetes.client.exceptions import ApiException\n"
        "config.load_incluster_config()\n"
        "ns = open('/var/run/secrets/kubernetes.io/serviceaccount/namespace').read()\n"
        "try:\n"
        "    names = [p.metadata.name for p in client.CoreV1Api().list_namespaced_pod(ns).items]\n"
        "    print(json.dumps({'ns': ns, 'pods': names}))\n"
        "except ApiException as exc:\n"
        "    print(json.dumps({'ns': ns, 'status': exc.status}))\n"
    )
    core.create_namespaced_pod(namespace, make_pod("allowed", ["python", "-c", script],
                                                   serviceAccountName="reader"))
    core.create_namespaced_pod(namespace, make_pod("denied", ["python", "-c", script]))
    allowed = wait_terminal(core, namespace, "allowed")
    denied = wait_terminal(core, namespace, "denied")
    assert allowed.status.phase == "Succeeded", pod_log(core, namespace, "allowed")
    assert denied.status.phase == "Succeeded", pod_log(core, namespace, "denied")
    seen = json.loads(pod_log(core, namespace, "allowed"))
    assert seen["ns"] == namespace and "allowed" in seen["pods"]
    assert json.loads(pod_log(core, namespace, "denied")) == {"ns": namespace, "status": 403}
    # The token lives in the pod's private mount namespace, not on the host.
    assert not os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token")


def test_run_as_user(core: Any, namespace: str) -> None:
    core.create_namespaced_pod(namespace, make_pod(
        "nobody", ["sh", "-c", "id -u; id -g"],
        securityContext={"runAsUser": 65534, "runAsGroup": 65534}))
    pod = wait_terminal(core, namespace, "nobody")
    assert pod.status.phase == "Succeeded", pod_log(core, namespace, "nobody")
    assert pod_log(core, namespace, "nobody").split() == ["65534", "65534"]


def test_twenty_pods_run_concurrently(core: Any, namespace: str) -> None:
    names = [f"many-{i:02d}-{uuid.uuid4().hex[:4]}" for i in range(20)]
    for name in names:
        core.create_namespaced_pod(namespace, make_pod(name, ["sh", "-c", "sleep 4"]))
    pods = [wait_terminal(core, namespace, name, timeout=120) for name in names]
    assert [p.status.phase for p in pods] == ["Succeeded"] * 20
    terms = [p.status.container_statuses[0].state.terminated for p in pods]
    # All twenty were running at one moment: the last start precedes the first finish.
    assert max(t.started_at for t in terms) <= min(t.finished_at for t in terms)


def test_kubectl_sees_the_node(cluster: Any) -> None:
    kubectl = cluster.info["binaries"]["kubectl"]
    if not os.path.exists(kubectl):
        pytest.skip("kubectl not built")
    out = subprocess.run([kubectl, "--kubeconfig", cluster.kubeconfig, "get", "node",
                          cluster.info["node_name"], "-o", "json"], capture_output=True,
                         text=True, check=True).stdout
    node = json.loads(out)
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] > 0


# -- a private agent on its own Node, behind a proxy the tests can cut ---------------------------


class PrivateAgent:
    """A second node agent process (tainted Node, own state dir) reaching the API via a proxy."""

    def __init__(self, kubeconfig: Path, node_name: str, state_dir: Path, log_path: Path) -> None:
        self.kubeconfig = kubeconfig
        self.node_name = node_name
        self.state_dir = state_dir
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_args: list[str] = []
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]

    def start(self) -> None:
        ready = f"Node {self.node_name} Ready"
        before = self.log_path.read_text().count(ready) if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(AGENT), "--kubeconfig", str(self.kubeconfig),
                 "--node-name", self.node_name, "--state-dir", str(self.state_dir),
                 "--kubelet-port", str(self.port),
                 "--register-with-taints", "flowpod.dev/private-agent=true:NoSchedule",
                 *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_for(lambda: self.log_path.read_text().count(ready) > before, 30,
                 f"private agent {self.node_name} to register")

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(30)

    def pid_of(self, namespace: str, pod: Any) -> int:
        key = f"{namespace}_{pod.metadata.name}_{pod.metadata.uid}"
        return int((self.state_dir / "pods" / key / "pid").read_text())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(
        f"/proc/{pid}/status").read_text().lower()


@pytest.fixture
def private_agent(cluster: Any, core: Any, tmp_path: Path) -> Iterator[tuple[PrivateAgent,
                                                                             TcpProxy]]:
    import yaml  # type: ignore[import-untyped,unused-ignore]
    from kubernetes.client.exceptions import ApiException

    api_port = urllib.parse.urlsplit(cluster.info["apiserver_url"]).port
    assert api_port is not None
    proxy = TcpProxy(api_port).start()
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    kubeconfig = tmp_path / "agent.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    agent = PrivateAgent(kubeconfig, f"private-{uuid.uuid4().hex[:6]}", tmp_path / "state",
                         tmp_path / "agent.log")
    agent.start()
    try:
        yield agent, proxy
    finally:
        # Pods bound to this Node would outlive it (until pod GC): remove them first.
        for pod in core.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={agent.node_name}").items:
            with contextlib.suppress(ApiException):  # already gone
                core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace,
                                           grace_period_seconds=0)
        if agent.proc is not None and agent.proc.poll() is None:
            agent.signal(signal.SIGTERM)
        core.delete_node(agent.node_name)
        proxy.cut()


def pinned(name: str, node: str, command: list[str]) -> dict[str, Any]:
    return make_pod(name, command, nodeName=node)


def wait_running(core: Any, namespace: str, name: str) -> Any:
    return wait_for(
        lambda: (p := core.read_namespaced_pod(name, namespace)).status.phase == "Running" and p,
        60, f"pod {namespace}/{name} to run")


def test_agent_rides_out_an_api_outage(private_agent: Any, core: Any, namespace: str) -> None:
    agent, proxy = private_agent
    core.create_namespaced_pod(namespace, pinned("during", agent.node_name,
                                                 ["sh", "-c", "sleep 1; exit 5"]))
    pod = wait_running(core, namespace, "during")
    pid = agent.pid_of(namespace, pod)
    proxy.cut()
    wait_for(lambda: not alive(pid), 20, "the pod's process to end during the outage")
    core.create_namespaced_pod(namespace, pinned("after", agent.node_name, ["true"]))
    assert core.read_namespaced_pod("during", namespace).status.phase == "Running"
    proxy.restore()
    during = wait_terminal(core, namespace, "during", timeout=60)
    assert during.status.phase == "Failed"
    assert during.status.container_statuses[0].state.terminated.exit_code == 5
    assert wait_terminal(core, namespace, "after", timeout=60).status.phase == "Succeeded"


def test_agent_restart_handles_lost_and_deleted_pods(private_agent: Any, core: Any,
                                                     namespace: str) -> None:
    from kubernetes.client.exceptions import ApiException

    agent, _ = private_agent
    core.create_namespaced_pod(namespace, pinned("lost", agent.node_name, ["sleep", "300"]))
    core.create_namespaced_pod(namespace, pinned("removed", agent.node_name, ["sleep", "300"]))
    lost_pid = agent.pid_of(namespace, wait_running(core, namespace, "lost"))
    removed_pid = agent.pid_of(namespace, wait_running(core, namespace, "removed"))
    agent.signal(signal.SIGKILL)  # a crash: the processes outlive it
    assert alive(lost_pid) and alive(removed_pid)
    core.delete_namespaced_pod("removed", namespace)  # nobody is there to finish this
    assert core.read_namespaced_pod("removed", namespace).metadata.deletion_timestamp

    agent.start()

    lost = wait_terminal(core, namespace, "lost", timeout=30)
    assert lost.status.phase == "Failed"
    assert lost.status.container_statuses[0].state.terminated.reason == "ContainerStatusUnknown"

    def removed_gone() -> bool:
        try:
            core.read_namespaced_pod("removed", namespace)
        except ApiException as exc:
            return bool(exc.status == 404)
        return False

    wait_for(removed_gone, 30, "the pod deleted during the crash to be finalised")
    wait_for(lambda: not alive(lost_pid) and not alive(removed_pid), 10,
             "leftover processes to be killed")


def test_agent_stop_fails_running_pods_and_kills_them(private_agent: Any, core: Any,
                                                      namespace: str) -> None:
    agent, _ = private_agent
    core.create_namespaced_pod(namespace, pinned("stopped", agent.node_name, ["sleep", "300"]))
    pid = agent.pid_of(namespace, wait_running(core, namespace, "stopped"))
    assert agent.signal(signal.SIGTERM) == 0
    assert not alive(pid)
    pod = core.read_namespaced_pod("stopped", namespace)
    assert pod.status.phase == "Failed" and pod.status.reason == "Terminated"


@pytest.mark.skipif(not Path("/sys/fs/cgroup/memory/cgroup.procs").exists(),
                    reason="memory limits need the cgroup v1 memory controller")
def test_memory_limit_oom_kills(core: Any, namespace: str) -> None:
    pod = make_pod("hog", ["python", "-c", "x = bytearray(400 * 1024 * 1024)"])
    pod["spec"]["containers"][0]["resources"] = {"limits": {"memory": "40Mi"}}
    core.create_namespaced_pod(namespace, pod)
    done = wait_terminal(core, namespace, "hog")
    term = done.status.container_statuses[0].state.terminated
    assert done.status.phase == "Failed"
    assert (term.reason, term.exit_code) == ("OOMKilled", 137)


def test_on_failure_pods_restart(core: Any, namespace: str) -> None:
    script = 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ "$n" -ge 2 ]'
    core.create_namespaced_pod(namespace, make_pod("flaky", ["sh", "-c", script],
                                                   restartPolicy="OnFailure"))
    pod = wait_terminal(core, namespace, "flaky")
    cs = pod.status.container_statuses[0]
    assert pod.status.phase == "Succeeded"
    assert cs.restart_count == 1 and cs.last_state.terminated.exit_code == 1


def test_keep_pods_leaves_processes_running(private_agent: Any, core: Any,
                                            namespace: str) -> None:
    agent, _ = private_agent
    agent.signal(signal.SIGTERM)
    agent.extra_args = ["--keep-pods"]
    agent.start()
    core.create_namespaced_pod(namespace, pinned("kept", agent.node_name, ["sleep", "300"]))
    pid = agent.pid_of(namespace, wait_running(core, namespace, "kept"))
    assert agent.signal(signal.SIGTERM) == 0
    assert alive(pid)
    assert core.read_namespaced_pod("kept", namespace).status.phase == "Running"
    agent.extra_args = []
    agent.start()  # a restarted agent cannot adopt it: the kubelet's ContainerStatusUnknown
    pod = wait_terminal(core, namespace, "kept", timeout=30)
    assert pod.status.container_statuses[0].state.terminated.reason == "ContainerStatusUnknown"
    wait_for(lambda: not alive(pid), 10, "the kept process to be killed")
