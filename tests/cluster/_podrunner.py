"""One pod's life on the node agent: prepare, start the process, watch it, report, finalise.

Each pod gets a thread (PodWorker). It writes the pod's status through the API server the way
the kubelet does (see _podstatus), enforces activeDeadlineSeconds, honours deletion with its grace
period (SIGTERM to the process group, SIGKILL when the grace period ends, then a delete with
grace period 0), and never lets an error escape: a pod that cannot run is reported, the agent
goes on. How the process itself is launched (token, cgroup, user) lives in _podlaunch.
restartPolicy OnFailure/Always restart the process with the kubelet's back-off.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._kube import STRATEGIC_PATCH, ApiError, KubeClient
from ._podlaunch import (
    MemoryCgroup,
    launch_argv,
    prepare_workdir,
    process_env,
    resolve_executable,
    service_env,
    write_token,
)
from ._podlogs import ContainerLog, LogIndexer
from ._podspec import (
    ConfigError,
    StartError,
    build_env,
    container_argv,
    decode_secret_data,
    identity,
)
from ._podstatus import (
    DEADLINE_MESSAGE,
    DEADLINE_REASON,
    SHUTDOWN_MESSAGE,
    SHUTDOWN_REASON,
    Conditions,
    ContainerState,
    exit_code_of,
    exit_reason,
    parse_rfc3339,
    phase_for,
    pod_status,
)

JSON = dict[str, Any]
# The loop is woken by process exit and pod updates; the poll only paces deadline checks
# and the log line time-stamping.
POLL = 0.1


@dataclass
class AgentContext:
    """What every pod worker shares with the agent."""

    kube: KubeClient
    node_name: str
    state_dir: Path
    venv: Path
    api_host: str
    api_port: int
    allocatable: dict[str, str]
    event: Callable[[JSON, str, str, str], None]
    log: Callable[..., None]
    pass_env: dict[str, str] = field(default_factory=dict)
    stop_grace_cap: float = 10.0


def pod_key(pod: JSON) -> str:
    m = pod["metadata"]
    return f"{m.get('namespace', 'default')}_{m['name']}_{m['uid']}"


class PodWorker(threading.Thread):
    """Runs the first container of one pod as a local process."""

    def __init__(self, ctx: AgentContext, pod: JSON) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.ctx = ctx
        self.pod = pod
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.container: JSON = pod["spec"]["containers"][0]
        self.dir = ctx.state_dir / "pods" / pod_key(pod)
        self.log_path = self.dir / f"{self.container['name']}.log"
        self.sa_dir = self.dir / "serviceaccount"
        self.state = ContainerState()
        self.conditions = Conditions()
        self.container_id = f"flowpod://{self.uid}"
        start = (pod.get("status") or {}).get("startTime")
        self.start_time = parse_rfc3339(start) if start else time.time()
        self.proc: subprocess.Popen[bytes] | None = None
        self.pod_reason: str | None = None
        self.pod_message: str | None = None
        self.gone = False  # the pod object no longer exists
        self.done = threading.Event()  # status final (or pod gone), thread ending
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._stop_mode: str | None = None  # None | "keep" | "kill"
        self._dirty = True
        self._next_patch = 0.0
        self._patch_failures = 0
        self._token_refresh_at = 0.0
        self._kill_at: float | None = None
        self._indexer = LogIndexer(self.log_path)
        self._cgroup: MemoryCgroup | None = None
        self._next_start = 0.0
        self._start_backoff = 1.0
        self.restart_count = 0
        self.last_state: ContainerState | None = None

    # -- inputs from the agent -------------------------------------------------------------

    def update(self, pod: JSON | None) -> None:
        with self._lock:
            if pod is None:
                self.gone = True
            else:
                self.pod = pod
        self._wake.set()

    def stop(self, keep: bool) -> None:
        self._stop_mode = "keep" if keep else "kill"
        self._wake.set()

    def container_log(self) -> ContainerLog:
        def waiting() -> str | None:
            # Between restarts the last run's output is served, as the kubelet does.
            if self.state.kind != "waiting" or self.last_state is not None:
                return None
            return self.state.reason

        return ContainerLog(self.log_path, finished=lambda: self.state.kind == "terminated",
                            waiting=waiting)

    # -- helpers ---------------------------------------------------------------------------

    def _log(self, msg: str, **kw: Any) -> None:
        self.ctx.log(msg, pod=f"{self.namespace}/{self.name}", **kw)

    def _event(self, etype: str, reason: str, message: str) -> None:
        self.ctx.event(self.pod, etype, reason, message)

    def _deleting(self) -> bool:
        return bool(self.pod["metadata"].get("deletionTimestamp"))

    def _deadline(self) -> float | None:
        ads = self.pod["spec"].get("activeDeadlineSeconds")
        return None if ads is None else self.start_time + float(ads)

    def _set_state(self, state: ContainerState) -> None:
        self.state = state
        self._dirty = True
        self._next_patch = 0.0

    def _container_id(self, run: int) -> str:
        return self.container_id if run <= 0 else f"{self.container_id}-{run}"

    def _flush_status(self) -> None:
        """Send the current status if it changed; on failure retry later from the loop."""
        if not self._dirty or self.gone or time.monotonic() < self._next_patch:
            return
        phase = phase_for(self.state)
        if phase == "Succeeded" and self.pod_reason in (DEADLINE_REASON, SHUTDOWN_REASON):
            phase = "Failed"  # the kubelet fails such pods whatever the exit code
        if phase == "Pending" and self.last_state is not None:
            phase = "Running"  # restarting: the kubelet counts the container as stopped
        status = pod_status(
            container=self.container,
            state=self.state,
            phase=phase,
            start_time=self.start_time,
            conditions=self.conditions,
            container_id=self._container_id(self.restart_count),
            reason=self.pod_reason,
            message=self.pod_message,
            restart_count=self.restart_count,
            last_state=self.last_state,
            last_container_id=self._container_id(self.restart_count - 1),
        )
        body = {"metadata": {"uid": self.uid}, "status": status}
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status"
        try:
            self.ctx.kube.request("PATCH", path, body, content_type=STRATEGIC_PATCH)
            self._dirty = False
            self._patch_failures = 0
        except ApiError as exc:
            if exc.status in (404, 409):
                self.gone = True
                return
            self._patch_failures += 1
            self._log("status patch failed, retrying", error=str(exc))
            self._next_patch = time.monotonic() + 1.0

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    # -- preparation ----------------------------------------------------------------------

    def _lookup(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        plural = "secrets" if kind == "Secret" else "configmaps"
        try:
            obj = self.ctx.kube.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        if kind == "Secret":
            return decode_secret_data(obj.get("data"))
        return dict(obj.get("data") or {})

    def _wants_token(self) -> bool:
        return self.pod["spec"].get("automountServiceAccountToken") is not False

    def _start(self) -> None:
        """Resolve everything and start the process; raises ConfigError/StartError/ApiError."""
        ident = identity(self.pod, self.container)
        result = build_env(self.pod, self.container, self._lookup,
                           service_env(self.ctx.api_host, self.ctx.api_port),
                           allocatable=self.ctx.allocatable)
        if result.skipped:
            self._event("Warning", "InvalidEnvironmentVariableNames",
                        f"Keys [{', '.join(result.skipped)}] from envFrom were skipped")
        env = process_env(result.env, venv=self.ctx.venv, pod_name=self.name, uid=ident.uid,
                          sa_dir=self.sa_dir, pass_env=self.ctx.pass_env)
        workdir = prepare_workdir(self.container, self.dir / "work", ident)
        argv = resolve_executable(container_argv(self.container, result.env),
                                  env.get("PATH", ""), workdir)
        if self._wants_token():
            self._token_refresh_at = write_token(self.ctx.kube, self.pod, self.sa_dir)
        if self._cgroup is None:
            self._cgroup = MemoryCgroup.for_container(self.container, self.uid)
        else:
            self._cgroup.restarted()
        full = launch_argv(argv, ident, self._cgroup.path if self._cgroup else None,
                           self.sa_dir if self._wants_token() else None)
        self._event("Normal", "Pulled",
                    f'Container image "{self.container.get("image", "")}" already present '
                    "on machine")
        self._event("Normal", "Created", f"Created container: {self.container['name']}")
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                full, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            )
        (self.dir / "pid").write_text(str(self.proc.pid))
        proc = self.proc

        def reap() -> None:
            proc.wait()
            self._wake.set()  # the loop notices the exit at once

        threading.Thread(target=reap, name=f"reap-{self.name}", daemon=True).start()
        self._log("started", pid=self.proc.pid, argv=argv)
        self._event("Normal", "Started", f"Started container {self.container['name']}")
        self._set_state(ContainerState(kind="running", reason="", started_at=time.time()))

    # -- process control ------------------------------------------------------------------

    def _signal(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def _begin_kill(self, grace: float, reason: str) -> None:
        """SIGTERM now, SIGKILL at the end of the grace period (a shorter one wins)."""
        when = time.monotonic() + max(grace, 0.0)
        if self._kill_at is not None and self._kill_at <= when:
            return
        first = self._kill_at is None
        self._kill_at = when
        if first and self.proc is not None and self.proc.poll() is None:
            self._log("killing", reason=reason, grace=grace)
            self._event("Normal", "Killing", f"Stopping container {self.container['name']}")
        if grace <= 0:
            self._signal(signal.SIGKILL)
        elif first:
            self._signal(signal.SIGTERM)

    def _grace(self) -> float:
        meta = self.pod["metadata"]
        if meta.get("deletionGracePeriodSeconds") is not None:
            return float(meta["deletionGracePeriodSeconds"])
        tgp = self.pod["spec"].get("terminationGracePeriodSeconds")
        return 30.0 if tgp is None else float(tgp)

    # -- main loop -------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # one pod's failure never stops the agent
            self._log("pod worker crashed", error=repr(exc))
            if self.proc is not None and self._stop_mode != "keep":
                self._signal(signal.SIGKILL)
        finally:
            self._indexer.poll(final=True)
            if self._cgroup is not None and self._stop_mode != "keep":
                self._cgroup.remove()
            self.done.set()

    def _run(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        if self._deleting():
            self._finalise()
            return
        self._flush_status()  # Pending / ContainerCreating, with startTime
        deadline_hit = False
        while True:
            self._indexer.poll()
            self._observe_exit()
            if self.gone:
                self._signal(signal.SIGKILL)
                return
            if self._stop_mode == "keep":
                return
            running = self.state.kind == "running"
            terminal = self.state.kind == "terminated"
            if self._stop_mode == "kill":
                if not running and not terminal:
                    return  # never started (or between restarts): nothing to stop
                if running:
                    if self._kill_at is None:
                        self.pod_reason, self.pod_message = SHUTDOWN_REASON, SHUTDOWN_MESSAGE
                    self._begin_kill(min(self._grace(), self.ctx.stop_grace_cap),
                                     "agent stopping")
            if self._deleting():
                if running:
                    self._begin_kill(self._grace(), "pod deleted")
                elif not terminal:
                    self._finalise()  # nothing runs: the kubelet removes such a pod at once
                    return
            deadline = self._deadline()
            if (not deadline_hit and not terminal and deadline is not None
                    and time.time() >= deadline):
                deadline_hit = True
                self._deadline_exceeded()
            if running:
                if self._kill_at is not None and time.monotonic() >= self._kill_at:
                    self._signal(signal.SIGKILL)
                if self._wants_token() and time.monotonic() >= self._token_refresh_at:
                    try:
                        self._token_refresh_at = write_token(self.ctx.kube, self.pod,
                                                             self.sa_dir)
                    except ApiError as exc:
                        self._log("token refresh failed", error=str(exc))
                        self._token_refresh_at = time.monotonic() + 10
            if (self.state.kind == "waiting" and not self._stop_mode and not self._deleting()
                    and time.monotonic() >= self._next_start):
                self._try_start()
            self._flush_status()
            if self.state.kind == "terminated" and not self._dirty:
                if self._stop_mode:
                    return
                if self._deleting():
                    self._finalise()
                    return
                # Stay until the pod is deleted, so its deletion is finalised here.
                self._sleep(5.0)
                continue
            if self._stop_mode and self._dirty and self._patch_failures:
                return  # shutting down and the API server is not answering: give up
            wait = POLL
            if self.state.kind == "waiting":
                wait = min(max(self._next_start - time.monotonic(), 0.0), 1.0)
            self._sleep(wait)

    def _deadline_exceeded(self) -> None:
        self.pod_reason, self.pod_message = DEADLINE_REASON, DEADLINE_MESSAGE
        self._event("Warning", DEADLINE_REASON, DEADLINE_MESSAGE)
        if self.state.kind != "running":
            self._set_state(ContainerState(kind="terminated", reason="Error", exit_code=137,
                                           finished_at=time.time(),
                                           message="container was not running"))
        else:
            self._dirty = True
            tgp = self.pod["spec"].get("terminationGracePeriodSeconds")
            self._begin_kill(30.0 if tgp is None else float(tgp), DEADLINE_REASON)

    def _try_start(self) -> None:
        try:
            self._start()
        except ConfigError as exc:
            self._log("config error", error=str(exc))
            self._event("Warning", "Failed", f"Error: {exc}")
            self._set_state(ContainerState(kind="waiting", reason="CreateContainerConfigError",
                                           message=str(exc)))
            self._retry_start_later()
        except StartError as exc:
            self._log("start error", error=str(exc))
            self._event("Warning", "Failed", f"Error: {exc}")
            self._exited(ContainerState(kind="terminated", reason="StartError", message=str(exc),
                                        exit_code=128, started_at=None, finished_at=time.time()))
        except (ApiError, OSError) as exc:
            self._log("cannot start yet", error=str(exc))
            self._event("Warning", "FailedMount", f"cannot prepare the pod: {exc}")
            self._retry_start_later()
        else:
            self._start_backoff = 1.0
            self._flush_status()  # Running is reported even if the process is already gone

    def _retry_start_later(self) -> None:
        self._next_start = time.monotonic() + self._start_backoff
        self._start_backoff = min(self._start_backoff * 2, 10.0)

    def _observe_exit(self) -> None:
        if self.proc is None or self.state.kind != "running":
            return
        rc = self.proc.poll()
        if rc is None:
            return
        self._indexer.poll(final=True)
        code = exit_code_of(rc)
        self._log("exited", exit_code=code)
        self._exited(ContainerState(
            kind="terminated", exit_code=code,
            reason="OOMKilled" if self._cgroup and self._cgroup.oom_killed()
            else exit_reason(code),
            started_at=self.state.started_at, finished_at=time.time(),
            message=self._termination_message(code),
        ))

    def _exited(self, term: ContainerState) -> None:
        """The container ended: final, or restarted after the kubelet's back-off."""
        policy = self.pod["spec"].get("restartPolicy", "Always")
        restart = policy == "Always" or (policy == "OnFailure" and term.exit_code != 0)
        if (not restart or self._kill_at is not None or self._deleting() or self._stop_mode
                or self.pod_reason == DEADLINE_REASON):
            self._set_state(term)
            return
        self.proc = None
        self.restart_count += 1
        self.last_state = term
        # Like the kubelet: the first restart is immediate, then 10 s doubling up to 5 minutes.
        delay = 0.0 if self.restart_count == 1 else min(10.0 * 2 ** (self.restart_count - 2), 300)
        self._next_start = time.monotonic() + delay
        if delay:
            name = self.container["name"]
            msg = (f"back-off {int(delay)}s restarting failed container={name} "
                   f"pod={self.name}_{self.namespace}({self.uid})")
            self._event("Warning", "BackOff", f"Back-off restarting failed container {name} in "
                        f"pod {self.name}_{self.namespace}({self.uid})")
            self._set_state(ContainerState(kind="waiting", reason="CrashLoopBackOff", message=msg))
        else:
            self._set_state(ContainerState(kind="waiting", reason="ContainerCreating"))

    def _termination_message(self, code: int) -> str | None:
        if code == 0 or self.container.get("terminationMessagePolicy") != "FallbackToLogsOnError":
            return None
        try:
            data = self.log_path.read_bytes()[-2048:]
        except OSError:
            return None
        return b"\n".join(data.splitlines()[-80:]).decode(errors="replace") or None

    def _finalise(self) -> None:
        """The kubelet's last word on a deleted pod: remove it for good (grace period 0)."""
        finalise_pod(self.ctx.kube, self.pod, self.ctx.log)


def finalise_pod(kube: KubeClient, pod: JSON, log: Callable[..., None]) -> None:
    meta = pod["metadata"]
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
            "preconditions": {"uid": meta["uid"]}}
    try:
        kube.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body)
        log("pod finalised", pod=f"{meta['namespace']}/{meta['name']}")
    except ApiError as exc:
        if exc.status not in (404, 409):
            log("finalising pod failed", pod=f"{meta['namespace']}/{meta['name']}",
                error=str(exc))
