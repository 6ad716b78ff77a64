"""The node agent itself: the Node and its Lease, the pod watch, events, the kubelet endpoint.

See node_agent.py for the command line. Threads: the main thread waits for SIGTERM/SIGINT; one
thread lists and watches the pods bound to this node (re-listing on 410 Gone, backing off while
the API server is away); one renews the Lease every 10 s and the Node's Ready heartbeat; one
posts Events; the HTTPS server has a thread per request; every pod has a PodWorker thread.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import signal
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

from ._kube import STRATEGIC_PATCH, ApiError, KubeClient
from ._podlaunch import SA_MOUNT
from ._podlogs import ContainerLog, KubeletServer, ensure_serving_cert
from ._podrunner import AgentContext, PodWorker, finalise_pod, pod_key
from ._podstatus import (
    Conditions,
    ContainerState,
    parse_rfc3339,
    pod_status,
    rfc3339,
    rfc3339_micro,
)

JSON = dict[str, Any]
LEASE_SECONDS = 40
LEASE_RENEW = 10.0
NODE_STATUS_EVERY = 30.0
CAPACITY = {"cpu": "32", "memory": "64Gi", "pods": "250", "ephemeral-storage": "100Gi"}
AGENT_VERSION = "flowpod-node-agent://0.1.0"
_LOG_LOCK = threading.Lock()


def log(msg: str, level: str = "info", **fields: Any) -> None:
    """One JSON object per line on stderr."""
    record = {"ts": rfc3339_micro(time.time()), "level": level, "msg": msg, **fields}
    line = json.dumps(record, default=str)
    with _LOG_LOCK:
        print(line, file=sys.stderr, flush=True)


class NodeAgent:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.node_name: str = args.node_name
        self.state_dir = Path(args.state_dir).resolve()
        self.kube = KubeClient(args.kubeconfig)
        url = urllib.parse.urlsplit(self.kube.host)
        self.api_host = url.hostname or "127.0.0.1"
        self.api_port = url.port or 443
        self.stopping = threading.Event()
        self.workers: dict[str, PodWorker] = {}
        self.finalising: set[str] = set()
        self._reconciled = False
        self._lock = threading.Lock()
        self._events: queue.Queue[JSON] = queue.Queue(maxsize=10000)
        self.kubelet_version = "v0.0.0"
        self.node_uid: str | None = None
        self.node_conditions = Conditions()
        pass_env = {k: os.environ[k] for k in args.pass_env or [] if k in os.environ}
        self.ctx = AgentContext(
            kube=self.kube, node_name=self.node_name, state_dir=self.state_dir,
            venv=Path(args.venv).resolve(), api_host=self.api_host, api_port=self.api_port,
            allocatable=dict(CAPACITY), event=self.event, log=log, pass_env=pass_env,
        )

    # -- Node and Lease ---------------------------------------------------------------------

    def _node_status(self) -> JSON:
        now = time.time()

        def cond(ctype: str, ok: bool, reason: str, message: str) -> JSON:
            c = self.node_conditions.make(ctype, ok, now, reason, message)
            c.pop("lastProbeTime")
            c["lastHeartbeatTime"] = rfc3339(now)
            return c

        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        machine_id = Path("/etc/machine-id").read_text().strip() if Path(
            "/etc/machine-id").exists() else uuid.uuid5(uuid.NAMESPACE_DNS, self.node_name).hex
        return {
            "capacity": dict(CAPACITY),
            "allocatable": dict(CAPACITY),
            "conditions": [
                cond("MemoryPressure", False, "KubeletHasSufficientMemory",
                     "kubelet has sufficient memory available"),
                cond("DiskPressure", False, "KubeletHasNoDiskPressure",
                     "kubelet has no disk pressure"),
                cond("PIDPressure", False, "KubeletHasSufficientPID",
                     "kubelet has sufficient PID available"),
                cond("Ready", True, "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.args.hostname_address},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.args.kubelet_port}},
            "nodeInfo": {
                "machineID": machine_id,
                "systemUUID": uuid.uuid5(uuid.NAMESPACE_DNS, self.node_name).hex,
                "bootID": boot_id,
                "kernelVersion": platform.release(),
                "osImage": "flowpod node agent (processes, no containers)",
                "containerRuntimeVersion": AGENT_VERSION,
                "kubeletVersion": self.kubelet_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    def register_node(self) -> None:
        self.kubelet_version = str(self.kube.get("/version").get("gitVersion", "v0.0.0"))
        path = f"/api/v1/nodes/{self.node_name}"
        labels = {
            "kubernetes.io/hostname": self.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "flowpod.dev/node-agent": "true",
        }
        spec: JSON = {}
        if self.args.register_with_taints:
            spec["taints"] = [parse_taint(t) for t in self.args.register_with_taints]
        try:
            node = self.kube.get(path)
            node = self.kube.request("PATCH", path, {"metadata": {"labels": labels}, "spec": spec},
                                     content_type=STRATEGIC_PATCH)
        except ApiError as exc:
            if exc.status != 404:
                raise
            body = {"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": self.node_name, "labels": labels},
                    "spec": spec, "status": self._node_status()}
            node = self.kube.request("POST", "/api/v1/nodes", body)
            log("node registered", node=self.node_name)
        self.node_uid = node["metadata"]["uid"]
        self.update_node_status()
        log(f"Node {self.node_name} Ready", kubelet_version=self.kubelet_version,
            kubelet_port=self.args.kubelet_port)

    def update_node_status(self) -> None:
        self.kube.request("PATCH", f"/api/v1/nodes/{self.node_name}/status",
                          {"status": self._node_status()}, content_type=STRATEGIC_PATCH)

    def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node_name}"
        spec = {"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": rfc3339_micro(time.time())}
        try:
            self.kube.request("PATCH", path, {"spec": spec}, content_type=STRATEGIC_PATCH)
        except ApiError as exc:
            if exc.status != 404:
                raise
            owner = [{"apiVersion": "v1", "kind": "Node", "name": self.node_name,
                      "uid": self.node_uid}] if self.node_uid else []
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.node_name, "namespace": "kube-node-lease",
                                 "ownerReferences": owner},
                    "spec": spec}
            self.kube.request("POST", path.rsplit("/", 1)[0], body)

    def heartbeat_loop(self) -> None:
        next_status = time.monotonic() + NODE_STATUS_EVERY
        while not self.stopping.wait(LEASE_RENEW):
            try:
                self.renew_lease()
                if time.monotonic() >= next_status:
                    self.update_node_status()
                    next_status = time.monotonic() + NODE_STATUS_EVERY
            except ApiError as exc:
                log("heartbeat failed", level="warning", error=str(exc))
                if exc.status == 404:  # the Node was deleted under us: register it again
                    try:
                        self.register_node()
                    except ApiError as again:
                        log("re-registering the node failed", level="warning", error=str(again))

    # -- Events ----------------------------------------------------------------------------

    def event(self, pod: JSON, etype: str, reason: str, message: str) -> None:
        meta = pod["metadata"]
        now = time.time()
        cname = pod["spec"]["containers"][0]["name"]
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{time.time_ns():x}",
                         "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta["uid"],
                               "fieldPath": f"spec.containers{{{cname}}}"},
            "reason": reason, "message": message, "type": etype,
            "source": {"component": "kubelet", "host": self.node_name},
            "firstTimestamp": rfc3339(now), "lastTimestamp": rfc3339(now), "count": 1,
            "reportingComponent": "kubelet", "reportingInstance": self.node_name,
        }
        try:
            self._events.put_nowait(body)
        except queue.Full:
            pass

    def event_loop(self) -> None:
        while True:
            body = self._events.get()
            ns = body["metadata"]["namespace"]
            try:
                self.kube.request("POST", f"/api/v1/namespaces/{ns}/events", body, timeout=10)
            except ApiError as exc:
                if exc.status not in (403, 404, 409):
                    log("posting event failed", level="debug", error=str(exc))

    # -- Pods ------------------------------------------------------------------------------

    def _lost(self, pod: JSON) -> None:
        """A pod that was running before the agent (re)started: its process is gone for us."""
        meta = pod["metadata"]
        pod_dir = self.state_dir / "pods" / pod_key(pod)
        pidfile = pod_dir / "pid"
        if pidfile.exists():
            kill_stale(int(pidfile.read_text() or 0), str(pod_dir / "serviceaccount"))
        container = pod["spec"]["containers"][0]
        start = (pod.get("status") or {}).get("startTime")
        state = ContainerState(kind="terminated", reason="ContainerStatusUnknown", exit_code=137,
                               message="The container could not be located when the pod was "
                                       "terminated", finished_at=time.time())
        status = pod_status(container=container, state=state, phase="Failed",
                            start_time=parse_rfc3339(start) if start else time.time(),
                            conditions=Conditions(), container_id=f"flowpod://{meta['uid']}")
        try:
            self.kube.request("PATCH",
                              f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                              {"metadata": {"uid": meta["uid"]}, "status": status},
                              content_type=STRATEGIC_PATCH)
            log("pod lost across an agent restart", pod=f"{meta['namespace']}/{meta['name']}")
        except ApiError as exc:
            log("marking a lost pod failed", level="warning", error=str(exc))

    def _finalise_async(self, pod: JSON) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            if uid in self.finalising:
                return
            self.finalising.add(uid)
        threading.Thread(target=finalise_pod, args=(self.kube, pod, log), daemon=True).start()

    def handle(self, etype: str, pod: JSON) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            worker = self.workers.get(uid)
        if etype == "DELETED":
            if worker is not None:
                worker.update(None)
                with self._lock:
                    self.workers.pop(uid, None)
                    self.finalising.discard(uid)
            return
        if worker is not None:
            worker.update(pod)
            if worker.done.is_set() and pod["metadata"].get("deletionTimestamp"):
                self._finalise_async(pod)
            return
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if pod["metadata"].get("deletionTimestamp"):
            pidfile = self.state_dir / "pods" / pod_key(pod) / "pid"
            if pidfile.exists():
                kill_stale(int(pidfile.read_text() or 0),
                           str(self.state_dir / "pods" / pod_key(pod) / "serviceaccount"))
            self._finalise_async(pod)
            return
        if phase in ("Succeeded", "Failed"):
            return
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        started = any("running" in (s.get("state") or {}) or "terminated" in (s.get("state") or {})
                      for s in statuses)
        if phase == "Running" or started:
            threading.Thread(target=self._lost, args=(pod,), daemon=True).start()
            return
        if not pod["spec"].get("containers"):
            return
        worker = PodWorker(self.ctx, pod)
        with self._lock:
            self.workers[uid] = worker
        worker.start()

    def reconcile(self, items: list[JSON]) -> None:
        seen = {p["metadata"]["uid"] for p in items}
        if not self._reconciled:
            # Processes kept (--keep-pods) for pods that vanished while the agent was down.
            self._reconciled = True
            for pidfile in (self.state_dir / "pods").glob("*/pid"):
                if pidfile.parent.name.rsplit("_", 1)[-1] not in seen:
                    kill_stale(int(pidfile.read_text() or 0),
                               str(pidfile.parent / "serviceaccount"))
        with self._lock:
            vanished = [w for uid, w in self.workers.items() if uid not in seen]
        for w in vanished:
            self.handle("DELETED", w.pod)
        for pod in items:
            self.handle("MODIFIED", pod)

    def watch_loop(self) -> None:
        selector = f"spec.nodeName={self.node_name}"
        rv: str | None = None
        backoff = 0.5
        while not self.stopping.is_set():
            try:
                if rv is None:
                    listing = self.kube.get("/api/v1/pods", fieldSelector=selector)
                    rv = listing["metadata"]["resourceVersion"]
                    self.reconcile(listing.get("items") or [])
                for ev in self.kube.watch("/api/v1/pods", fieldSelector=selector,
                                          resourceVersion=rv, allowWatchBookmarks="true"):
                    if self.stopping.is_set():
                        return
                    etype, obj = ev.get("type"), ev.get("object") or {}
                    if etype == "ERROR":
                        if obj.get("code") == 410:
                            rv = None
                            break
                        raise ApiError(int(obj.get("code") or 0), str(obj.get("message")))
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if etype == "BOOKMARK":
                        continue
                    try:
                        self.handle(str(etype), obj)
                    except Exception as exc:  # one bad pod never stops the watch
                        log("handling a pod event failed", level="error", error=repr(exc))
                backoff = 0.5
            except ApiError as exc:
                if exc.status == 410:
                    rv = None
                    continue
                log("pod watch interrupted", level="warning", error=str(exc), retry_in=backoff)
                if exc.status != 0:
                    rv = None
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    # -- kubelet endpoint ------------------------------------------------------------------

    def resolve_log(self, ns: str, name: str, container: str) -> ContainerLog | None:
        with self._lock:
            candidates = [w for w in self.workers.values() if w.namespace == ns and w.name == name]
        for w in sorted(candidates, key=lambda w: w.start_time, reverse=True):
            if w.container["name"] == container:
                return w.container_log()
        pods_dir = self.state_dir / "pods"
        dirs = sorted(pods_dir.glob(f"{ns}_{name}_*"), key=lambda p: p.stat().st_mtime)
        for d in reversed(dirs):
            if (d / f"{container}.log").exists():
                return ContainerLog(d / f"{container}.log", finished=lambda: True)
        return None

    # -- lifecycle -------------------------------------------------------------------------

    def wait_for_api(self) -> None:
        backoff = 0.5
        while not self.stopping.is_set():
            try:
                self.register_node()
                self.renew_lease()
                return
            except ApiError as exc:
                log("API server not ready", level="warning", error=str(exc), retry_in=backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _on_signals(self) -> None:
        """SIGTERM/SIGINT set `stopping`, from a thread: a Python signal handler calling
        Event.set() can deadlock when the signal lands while the main thread holds that
        Event's lock, so the C-level handler only writes to a wakeup pipe."""
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)

        def relay() -> None:
            os.read(read_end, 1)
            self.stopping.set()

        threading.Thread(target=relay, name="signals", daemon=True).start()

    def run(self) -> int:
        self._on_signals()
        (self.state_dir / "pods").mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o755)
        os.chmod(self.state_dir / "pods", 0o755)
        Path(SA_MOUNT).mkdir(parents=True, exist_ok=True)  # the bind-mount target
        cert, key = ((Path(self.args.tls_cert_file), Path(self.args.tls_private_key_file))
                     if self.args.tls_cert_file
                     else ensure_serving_cert(self.state_dir / "pki", self.node_name))
        server = KubeletServer(self.args.kubelet_port, cert, key, self.resolve_log, self._http_log)
        server.start()
        log("kubelet endpoint listening", port=self.args.kubelet_port)
        self.wait_for_api()
        if self.stopping.is_set():
            return 0
        for target in (self.heartbeat_loop, self.event_loop, self.watch_loop):
            threading.Thread(target=target, name=target.__name__, daemon=True).start()
        self.stopping.wait()
        log("stopping", keep_pods=self.args.keep_pods)
        server.shutdown()
        with self._lock:
            workers = list(self.workers.values())
        for w in workers:
            w.stop(keep=self.args.keep_pods)
        end = time.monotonic() + self.ctx.stop_grace_cap + 5
        for w in workers:
            w.join(max(0.0, end - time.monotonic()))
        if self.args.delete_node_on_exit:
            try:
                self.kube.request("DELETE", f"/api/v1/nodes/{self.node_name}")
            except ApiError as exc:
                log("deleting the node failed", level="warning", error=str(exc))
        log("stopped")
        return 0

    def _http_log(self, msg: str, fields: dict[str, object]) -> None:
        if self.args.verbose:
            log(msg, detail=fields)


def kill_stale(pid: int, sa_dir: str) -> None:
    """Kill a process the agent started before a restart, if it really is that process."""
    if pid <= 0:
        return
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return
    if f"FLOWPOD_SERVICEACCOUNT_DIR={sa_dir}".encode() in environ:
        try:
            os.killpg(pid, signal.SIGKILL)
            log("killed a process left from before the restart", pid=pid)
        except ProcessLookupError:
            pass


def parse_taint(text: str) -> JSON:
    """`key[=value]:Effect`, as the kubelet's --register-with-taints takes it."""
    head, sep, effect = text.rpartition(":")
    if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise SystemExit(f"--register-with-taints {text!r}: expected key[=value]:Effect with "
                         "Effect one of NoSchedule, PreferNoSchedule, NoExecute")
    key, _, value = head.partition("=")
    taint: JSON = {"key": key, "effect": effect}
    if value:
        taint["value"] = value
    return taint
