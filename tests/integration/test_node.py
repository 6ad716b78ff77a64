"""The node is a real one: the kubelet runs pods of the image built here in containerd.

What flowpod relies on, seen from the API as a user sees it: exit codes and reasons,
``activeDeadlineSeconds``, OOM kills, Secret and ConfigMap references, logs, the in-cluster
ServiceAccount token, cluster DNS, Services and node ports through kube-proxy, and the network
guard that keeps every pod packet on this machine. Every wait polls a condition with a timeout.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from .harness import Cluster, pinned, wait_for

pytestmark = [pytest.mark.timeout(300)]

# A documentation address (RFC 5737): routed by the test into a network namespace of its own.
OUTSIDE_ADDRESS = "198.51.100.7"
OUTSIDE_PREFIX = "198.51.100.0/24"


@pytest.fixture
def core(kube_api: Any) -> Any:
    return client.CoreV1Api(kube_api)


def pod_manifest(name: str, image: str, command: list[str], **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image, "command": command,
                                 "imagePullPolicy": "IfNotPresent"}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": spec.pop("labels", {})},
        "spec": {"restartPolicy": "Never", "containers": [container],
                 "automountServiceAccountToken": False, **spec},
    }


def python_pod(name: str, image: str, code: str, **spec: Any) -> dict[str, Any]:
    return pod_manifest(name, image, ["python", "-c", code], **spec)


def read_pod(core: Any, namespace: str, name: str) -> dict[str, Any]:
    pod: dict[str, Any] = core.api_client.sanitize_for_serialization(
        core.read_namespaced_pod(name, namespace))
    return pod


def wait_phase(core: Any, namespace: str, name: str, phases: set[str],
               timeout: float = 90) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        pod = read_pod(core, namespace, name)
        return pod if pod["status"].get("phase") in phases else None

    result: dict[str, Any] = wait_for(reached, timeout, f"pod {name} to reach {sorted(phases)}")
    return result


def terminated(pod: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    return state


def logs(core: Any, namespace: str, name: str) -> str:
    return str(core.read_namespaced_pod_log(name, namespace))


def run_to_end(core: Any, namespace: str, manifest: dict[str, Any],
               timeout: float = 90) -> dict[str, Any]:
    core.create_namespaced_pod(namespace, manifest)
    return wait_phase(core, namespace, manifest["metadata"]["name"], {"Succeeded", "Failed"},
                      timeout)


# -- the node ----------------------------------------------------------------------------------


def test_the_node_is_a_real_kubelet_on_containerd(cluster: Cluster, core: Any) -> None:
    node = core.api_client.sanitize_for_serialization(core.read_node(cluster.info["node_name"]))
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == pinned("KUBERNETES_VERSION")
    assert info["kubeProxyVersion"] in ("", pinned("KUBERNETES_VERSION"))
    assert info["containerRuntimeVersion"].startswith("containerd://1.6."), info
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == cluster.node_ip
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True", node["status"]["conditions"]
    # The endpoints reconciler is on: the `kubernetes` Service points at the API server.
    slices = client.DiscoveryV1Api(core.api_client).list_namespaced_endpoint_slice(
        "default", label_selector="kubernetes.io/service-name=kubernetes").items
    assert [ep.addresses for s in slices for ep in s.endpoints] == [[cluster.node_ip]]


def test_a_pod_of_the_image_runs_non_root_with_a_read_only_root(
    cluster: Cluster, core: Any, namespace: str
) -> None:
    code = (
        "import os, sys\n"
        "print('uid', os.getuid(), 'python', sys.executable, 'home', os.environ.get('HOME'))\n"
        "try:\n    open('/written', 'w')\nexcept OSError as e:\n    print('root fs:', e.strerror)\n"
        "import flowpod, flowpod_operator, boto3\nprint('imports ok')\n"
    )
    pod = run_to_end(core, namespace, python_pod(
        "readonly", cluster.image, code,
        securityContext={"runAsNonRoot": True, "runAsUser": 1000},
        container={"securityContext": {"readOnlyRootFilesystem": True,
                                       "allowPrivilegeEscalation": False}},
    ))
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert terminated(pod)["reason"] == "Completed"
    out = logs(core, namespace, "readonly")
    assert "uid 1000 python /opt/flowpod/bin/python home /home/flowpod" in out, out
    assert "root fs: Read-only file system" in out, out
    assert "imports ok" in out, out
    assert pod["status"]["podIP"].startswith(cluster.node_ip.rsplit(".", 1)[0] + "."), pod["status"]


def test_exit_codes_and_reasons_are_reported(cluster: Cluster, core: Any, namespace: str) -> None:
    pod = run_to_end(core, namespace, python_pod("exits", cluster.image, "raise SystemExit(3)"))
    assert pod["status"]["phase"] == "Failed"
    assert terminated(pod)["exitCode"] == 3
    assert terminated(pod)["reason"] == "Error"


def test_active_deadline_ends_the_pod_deadline_exceeded(
    cluster: Cluster, core: Any, namespace: str
) -> None:
    start = time.monotonic()
    pod = run_to_end(core, namespace, python_pod(
        "deadline", cluster.image, "import time; time.sleep(600)", activeDeadlineSeconds=3,
    ), timeout=120)
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["reason"] == "DeadlineExceeded", pod["status"]
    assert time.monotonic() - start < 90


def test_a_pod_over_its_memory_limit_is_oom_killed(
    cluster: Cluster, core: Any, namespace: str
) -> None:
    pod = run_to_end(core, namespace, python_pod(
        "hog", cluster.image, "b = b'x' * (512 << 20)",
        container={"resources": {"limits": {"memory": "64Mi"}}},
    ))
    assert pod["status"]["phase"] == "Failed"
    assert terminated(pod)["reason"] == "OOMKilled", terminated(pod)
    assert terminated(pod)["exitCode"] == 137


def test_env_from_secrets_and_config_maps(cluster: Cluster, core: Any, namespace: str) -> None:
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="creds"), string_data={"KEY": "s3cret"}))
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="settings"), data={"LEVEL": "debug"}))
    code = "import os; print(os.environ['FROM_SECRET'], os.environ['LEVEL'])"
    pod = run_to_end(core, namespace, python_pod("env", cluster.image, code, container={
        "env": [{"name": "FROM_SECRET",
                 "valueFrom": {"secretKeyRef": {"name": "creds", "key": "KEY"}}}],
        "envFrom": [{"configMapRef": {"name": "settings"}}],
    }))
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert logs(core, namespace, "env").strip() == "s3cret debug"


def test_a_missing_secret_holds_the_pod_with_a_reason(
    cluster: Cluster, core: Any, namespace: str
) -> None:
    core.create_namespaced_pod(namespace, python_pod("nosecret", cluster.image, "pass", container={
        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}],
    }))

    def waiting() -> dict[str, Any] | None:
        statuses = read_pod(core, namespace, "nosecret")["status"].get("containerStatuses") or []
        state = statuses[0]["state"].get("waiting") if statuses else None
        return state if state and state.get("reason") == "CreateContainerConfigError" else None

    state = wait_for(waiting, 60, "CreateContainerConfigError")
    assert 'secret "absent" not found' in state["message"], state


def test_a_missing_image_fails_at_once_without_contacting_a_registry(
    core: Any, namespace: str
) -> None:
    core.create_namespaced_pod(namespace, pod_manifest(
        "noimage", "registry.example.invalid/flowpod/absent:1", ["true"]))

    def pull_failed() -> list[str] | None:
        events = core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=noimage").items
        messages = [e.message for e in events if e.reason == "Failed"]
        return messages or None

    messages = wait_for(pull_failed, 60, "the pull to fail")
    # containerd sends every pull to a proxy address on loopback where nothing listens.
    assert any("127.0.0.1:9" in m for m in messages), messages


def test_deleting_a_running_pod_stops_its_container(
    cluster: Cluster, core: Any, namespace: str
) -> None:
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: (print('got SIGTERM', flush=True), "
            "sys.exit(0)))\nprint('up', flush=True)\ntime.sleep(600)\n")
    core.create_namespaced_pod(namespace, python_pod("victim", cluster.image, code,
                                                     terminationGracePeriodSeconds=30))
    wait_for(lambda: "up" in logs(core, namespace, "victim"), 60, "the container to start")
    start = time.monotonic()
    core.delete_namespaced_pod("victim", namespace)

    def gone() -> bool:
        return not core.list_namespaced_pod(namespace, field_selector="metadata.name=victim").items

    wait_for(gone, 60, "the pod to be deleted")
    # The container's PID 1 got SIGTERM and exited at once instead of waiting out its grace.
    assert time.monotonic() - start < 20


def test_logs_stream_from_a_running_pod(cluster: Cluster, core: Any, namespace: str) -> None:
    code = ("import time\nfor i in range(600):\n"
            "    print('tick', i, flush=True)\n    time.sleep(0.2)\n")
    core.create_namespaced_pod(namespace, python_pod("ticker", cluster.image, code))
    wait_phase(core, namespace, "ticker", {"Running"})
    proc = subprocess.Popen(
        [cluster.info["binaries"]["kubectl"], "--kubeconfig", cluster.kubeconfig, "logs", "-f",
         "ticker", "-n", namespace], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        seen = [proc.stdout.readline().strip() for _ in range(5)]
        assert all(line.startswith("tick ") for line in seen), seen
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_the_in_cluster_token_authenticates_the_pod(
    cluster: Cluster, core: Any, namespace: str
) -> None:
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="runner")))
    # The kubelet mounts the projected token; the client finds the API server through the
    # `kubernetes` Service's environment variables (10.96.0.1:443, translated by kube-proxy).
    code = (
        "from kubernetes import client, config\n"
        "config.load_incluster_config()\n"
        "review = client.AuthenticationV1Api().create_self_subject_review("
        "client.V1SelfSubjectReview())\n"
        "print(review.status.user_info.username)\n"
    )
    manifest = python_pod("whoami", cluster.image, code, serviceAccountName="runner",
                          automountServiceAccountToken=True)
    pod = run_to_end(core, namespace, manifest)
    assert pod["status"]["phase"] == "Succeeded", logs(core, namespace, "whoami")
    assert logs(core, namespace, "whoami").strip() == f"system:serviceaccount:{namespace}:runner"


# -- DNS, Services, node ports -----------------------------------------------------------------


@pytest.fixture
def web(cluster: Cluster, core: Any, namespace: str) -> Iterator[dict[str, Any]]:
    """A pod serving HTTP on 8080 behind a Service ``web`` of type NodePort."""
    core.create_namespaced_pod(namespace, python_pod(
        "web", cluster.image,
        "import http.server, socketserver\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        body = b'hello from web'\n"
        "        self.send_response(200); self.end_headers(); self.wfile.write(body)\n"
        "http.server.HTTPServer(('', 8080), H).serve_forever()\n",
        labels={"app": "web"},
        container={"ports": [{"containerPort": 8080}],
                   "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}},
    ))
    service = core.create_namespaced_service(namespace, client.V1Service(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1ServiceSpec(type="NodePort", selector={"app": "web"}, ports=[
            client.V1ServicePort(port=80, target_port=8080)]),
    ))

    def ready() -> bool:
        slices = client.DiscoveryV1Api(core.api_client).list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=web").items
        return any(ep.conditions.ready for s in slices for ep in (s.endpoints or []))

    wait_for(ready, 90, "the web Service's endpoint to be ready")
    yield {"cluster_ip": service.spec.cluster_ip, "node_port": service.spec.ports[0].node_port}


def _http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_pods_resolve_cluster_names_and_reach_services(
    cluster: Cluster, core: Any, namespace: str, web: dict[str, Any]
) -> None:
    code = (
        "import json, socket, urllib.request\n"
        "out = {}\n"
        f"for name in ['kubernetes.default.svc.cluster.local', 'kubernetes.default', 'web',"
        f" 'web.{namespace}.svc']:\n"
        "    out[name] = socket.gethostbyname(name)\n"
        "try:\n    socket.gethostbyname('example.com'); out['outside'] = 'resolved'\n"
        "except OSError as e:\n    out['outside'] = type(e).__name__\n"
        f"out['body'] = urllib.request.urlopen('http://web.{namespace}.svc', timeout=10)"
        ".read().decode()\n"
        "print(json.dumps(out))\n"
    )
    pod = run_to_end(core, namespace, python_pod("client", cluster.image, code))
    output = logs(core, namespace, "client")
    assert pod["status"]["phase"] == "Succeeded", output
    seen = json.loads(output.strip().splitlines()[-1])
    assert seen["kubernetes.default.svc.cluster.local"] == "10.96.0.1"
    assert seen["kubernetes.default"] == "10.96.0.1"
    assert seen["web"] == seen[f"web.{namespace}.svc"] == web["cluster_ip"]
    # Nothing outside cluster.local is resolved: no query leaves the machine.
    assert seen["outside"] == "gaierror"
    assert seen["body"] == "hello from web"


def test_node_ports_answer_on_loopback_and_the_node_address(
    cluster: Cluster, web: dict[str, Any]
) -> None:
    port = web["node_port"]
    # kube-proxy programs a new Service within a second or so of its endpoint being ready.
    for host in ("127.0.0.1", cluster.node_ip):
        url = f"http://{host}:{port}/"
        assert wait_for(lambda u=url: _http_get(u), 30, f"{url} to answer") == "hello from web"


# -- the network guard -------------------------------------------------------------------------


def _guard_counter(cluster: Cluster, chain: str, comment: str) -> int:
    table = cluster.info["node"]["guard_table"]
    out = subprocess.run(["nft", "-j", "list", "chain", "inet", table, chain],
                         capture_output=True, text=True, check=True).stdout
    for item in json.loads(out)["nftables"]:
        rule = item.get("rule")
        if rule and rule.get("comment") == comment:
            for expr in rule["expr"]:
                if "counter" in expr:
                    return int(expr["counter"]["packets"])
    raise AssertionError(f"no rule {comment!r} in chain {chain} of table {table}")


@pytest.fixture
def outside_route() -> Iterator[str]:
    """A route for a documentation prefix through a veth whose other end is in a network
    namespace of the test's own: where a pod packet to an 'outside' address would leave if the
    guard let it, with nothing but this machine behind it."""
    tag = uuid.uuid4().hex[:6]
    link, peer, netns = f"fpout{tag}", f"fpin{tag}", f"fpoutside-{tag}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "link", "add", link, "type", "veth", "peer", "name", peer],
                       check=True)
        # No IPv6 on it: its autoconfiguration chatter would be the link's only traffic.
        with open(f"/proc/sys/net/ipv6/conf/{link}/disable_ipv6", "w") as f:
            f.write("1")
        subprocess.run(["ip", "link", "set", peer, "netns", netns], check=True)
        subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw",
                        f"net.ipv6.conf.{peer}.disable_ipv6=1"], check=True)
        subprocess.run(["ip", "-n", netns, "link", "set", peer, "up"], check=True)
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
        subprocess.run(["ip", "route", "add", OUTSIDE_PREFIX, "dev", link], check=True)
        yield link
    finally:
        subprocess.run(["ip", "link", "del", link], check=False)
        subprocess.run(["ip", "netns", "del", netns], check=False)


def _tx_packets(link: str) -> int:
    with open(f"/sys/class/net/{link}/statistics/tx_packets") as f:
        return int(f.read())


def test_a_pod_packet_to_an_outside_address_is_dropped(
    cluster: Cluster, core: Any, namespace: str, outside_route: str
) -> None:
    # The machine itself does not forward: only the cluster bridge does.
    default_dev = subprocess.run(["ip", "-j", "route", "show", "default"], capture_output=True,
                                 text=True, check=True).stdout
    for route in json.loads(default_dev):
        with open(f"/proc/sys/net/ipv4/conf/{route['dev']}/forwarding") as f:
            assert f.read().strip() == "0", route
    before = _guard_counter(cluster, "forward", "pod-leaves-machine")
    code = (
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"for i in range(5):\n    s.sendto(b'x', ('{OUTSIDE_ADDRESS}', 9))\nprint('sent')\n"
    )
    pod = run_to_end(core, namespace, python_pod("escape", cluster.image, code))
    assert pod["status"]["phase"] == "Succeeded", logs(core, namespace, "escape")
    wait_for(lambda: _guard_counter(cluster, "forward", "pod-leaves-machine") >= before + 5, 30,
             "the guard to count the pod's packets")
    assert _tx_packets(outside_route) == 0


def test_pods_run_concurrently(cluster: Cluster, core: Any, namespace: str) -> None:
    names = [f"many-{i}" for i in range(8)]
    for name in names:
        core.create_namespaced_pod(namespace, python_pod(name, cluster.image, "print('ok')"))
    for name in names:
        pod = wait_phase(core, namespace, name, {"Succeeded", "Failed"}, timeout=120)
        assert pod["status"]["phase"] == "Succeeded", pod["status"]
