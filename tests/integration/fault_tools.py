"""Tools of the fault tests (test_faults.py): recorders of every pod and TaskRun a run creates, a
flow of many trivial tasks run in a thread, the faults' measurements, and the cluster's fault
subcommands (``scripts/cluster restart-apiserver``, ``stop-minio``, ``start-minio``).

The recorders list, then watch from the list's resourceVersion, and after any error (the API
server restarting, a dropped connection) watch again from the last version they saw, or list again
when that version is too old (410): they miss no object that existed for any time, so "every pod
ever created" holds across an API server restart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .harness import REPO_ROOT, Cluster, wait_for

TASKRUN_LABEL = "flowpod.dev/taskrun"
ATTEMPT_LABEL = "flowpod.dev/attempt"
RESULTS_DIR = Path(os.environ.get("FLOWPOD_FAULT_RESULTS", "/tmp/flowpod-faults"))


def cluster_command(cluster: Cluster, *args: str, timeout: float = 180) -> float:
    """Run ``scripts/cluster ARGS`` on the test cluster; return how long it took (s)."""
    env = {**os.environ, "FLOWPOD_CLUSTER_STATE": str(cluster.state_dir)}
    env.setdefault("FLOWPOD_PYTHON", sys.executable)
    started = time.monotonic()
    proc = subprocess.run([str(REPO_ROOT / "scripts" / "cluster"), *args], capture_output=True,
                          text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"scripts/cluster {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stderr[-4000:]}")
    return time.monotonic() - started


class Recorder:
    """Every object of one kind in one namespace, as last seen, with the time of each change.

    ``changes`` holds (monotonic time, name, state) for each event that changed an object's
    ``state_of`` (for TaskRuns: status.state; for pods: the phase).
    """

    def __init__(self, list_fn: Callable[..., Any], namespace: str,
                 state_of: Callable[[dict[str, Any]], Any]) -> None:
        self.list_fn = list_fn
        self.namespace = namespace
        self.state_of = state_of
        self.objects: dict[str, dict[str, Any]] = {}  # uid -> object, never forgotten
        self.first_seen: dict[str, float] = {}
        self.changes: list[tuple[float, str, Any]] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="fault-recorder")

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        # The thread (a daemon) sees the event when its current watch ends (at most 30 s); the
        # test need not wait for that.
        self._stop.set()
        self._thread.join(timeout=1)

    def _record(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        uid = str(meta.get("uid"))
        now = time.monotonic()
        with self.lock:
            old = self.objects.get(uid)
            self.objects[uid] = obj
            self.first_seen.setdefault(uid, now)
            state = self.state_of(obj)
            if old is None or self.state_of(old) != state:
                self.changes.append((now, str(meta.get("name")), state))

    def _loop(self) -> None:
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    listed = self.list_fn(self.namespace)
                    for obj in listed.get("items") or []:
                        self._record(obj)
                    version = str(listed["metadata"]["resourceVersion"])
                for kind, obj in self._watch(version):
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            version = None
                            break
                        raise RuntimeError(f"watch error: {obj}")
                    version = str(obj["metadata"]["resourceVersion"])
                    if kind != "BOOKMARK":
                        self._record(obj)
                    if self._stop.is_set():
                        return
            except Exception as exc:  # noqa: BLE001 - the API server restarts: watch again
                if getattr(exc, "status", None) == 410:
                    version = None
                self.errors.append(repr(exc)[:200])
                self._stop.wait(0.5)

    def _watch(self, version: str) -> Any:
        """(type, raw object dict) events after ``version``, until the server ends the watch."""
        response = self.list_fn(self.namespace, watch=True, resource_version=version,
                                timeout_seconds=30, allow_watch_bookmarks=True)
        try:
            buffer = b""
            for chunk in response.stream(4096, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        event = json.loads(line)
                        yield event.get("type"), event.get("object") or {}
        finally:
            response.release_conn()

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.objects.values())

    def first_change_after(self, moment: float) -> float | None:
        """The monotonic time of the first state change seen after ``moment``."""
        with self.lock:
            later = [t for t, _, _ in self.changes if t > moment]
        return min(later) if later else None


def pod_recorder(kube_api: Any, namespace: str) -> Recorder:
    from kubernetes import client

    core = client.CoreV1Api(kube_api)

    def list_pods(ns: str, **kw: Any) -> Any:
        response: Any = core.list_namespaced_pod(ns, _preload_content=False,
                                                 _request_timeout=(5, 60), **kw)
        return response if kw else json.loads(response.data)

    return Recorder(list_pods, namespace,
                    lambda pod: (pod.get("status") or {}).get("phase")).start()


def taskrun_recorder(kube_api: Any, namespace: str) -> Recorder:
    from kubernetes import client

    custom = client.CustomObjectsApi(kube_api)

    def list_taskruns(ns: str, **kw: Any) -> Any:
        response: Any = custom.list_namespaced_custom_object(
            "flowpod.dev", "v1alpha1", ns, "taskruns", _preload_content=False,
            _request_timeout=(5, 60), **kw)
        return response if kw else json.loads(response.data)

    return Recorder(list_taskruns, namespace,
                    lambda tr: (tr.get("status") or {}).get("state")).start()


def completed_names(taskruns: Recorder) -> set[str]:
    return {str(tr["metadata"]["name"]) for tr in taskruns.snapshot()
            if (tr.get("status") or {}).get("state") == "Completed"}


def first_completion_after(taskruns: Recorder, moment: float) -> float | None:
    with taskruns.lock:
        later = [t for t, _, state in taskruns.changes if t > moment and state == "Completed"]
    return min(later) if later else None


def wait_recovery(taskruns: Recorder, fault_end: float,
                  timeout: float = 300) -> tuple[float, float]:
    """Seconds from ``fault_end`` until the next TaskRun state change (the operator progressing
    again: only it writes TaskRun status), and until the next TaskRun Completed."""
    changed = wait_for(lambda: taskruns.first_change_after(fault_end), timeout,
                       "a TaskRun changing state after the fault ended", interval=0.05)
    completed = wait_for(lambda: first_completion_after(taskruns, fault_end), timeout,
                         "a TaskRun completing after the fault ended", interval=0.05)
    return float(changed) - fault_end, float(completed) - fault_end


@dataclass
class Accounting:
    """What a run left in the cluster: every TaskRun and every pod ever created."""

    expected: int
    taskruns: int
    completed: int
    pods: int
    lost: int
    duplicates: int
    extra: int
    duplicate_keys: list[str] = field(default_factory=list)
    not_completed: dict[str, Any] = field(default_factory=dict)
    start_failures: list[str] = field(default_factory=list)
    """Pods whose container the runtime failed to start (kubelet: StartError, exit code 128):
    the node's trouble, not the fault's; their retry is the operator doing its job."""

    def faultless(self) -> bool:
        return self.lost == 0 and self.duplicates == 0 and self.extra == 0 \
            and self.taskruns == self.expected


def _start_failed(pod: dict[str, Any]) -> bool:
    """The container never ran: the runtime could not start it (runc/containerd refused under
    load), which the kubelet reports as terminated with reason StartError and exit code 128."""
    for status in (pod.get("status") or {}).get("containerStatuses") or ():
        ended = (status.get("state") or {}).get("terminated") or {}
        if ended.get("reason") in ("StartError", "ContainerCannotRun"):
            return True
    return False


def account(pods: Recorder, taskruns: Recorder, expected: int,
            role: str = "task") -> Accounting:
    """Lost: expected tasks without a Completed TaskRun. Duplicates: pods beyond the first for one
    (TaskRun, attempt). Extra: pods beyond one per TaskRun (duplicates, or attempts a fault
    caused: the tasks here never fail, so every TaskRun needs exactly one pod), not counting the
    retries of pods whose container the runtime failed to start, listed apart."""
    runs = {str(tr["metadata"]["name"]): tr for tr in taskruns.snapshot()}
    task_pods = [p for p in pods.snapshot()
                 if TASKRUN_LABEL in ((p.get("metadata") or {}).get("labels") or {})]
    by_attempt: dict[tuple[str, str], set[str]] = defaultdict(set)
    for pod in task_pods:
        labels = pod["metadata"]["labels"]
        by_attempt[(labels[TASKRUN_LABEL], labels.get(ATTEMPT_LABEL, "?"))].add(
            pod["metadata"]["uid"])
    duplicates = {key: uids for key, uids in by_attempt.items() if len(uids) > 1}
    done = {name for name, tr in runs.items()
            if (tr.get("status") or {}).get("state") == "Completed"}
    never_started = [p["metadata"]["name"] for p in task_pods if _start_failed(p)]
    return Accounting(
        expected=expected, taskruns=len(runs), completed=len(done), pods=len(task_pods),
        lost=expected - len(done),
        duplicates=sum(len(uids) - 1 for uids in duplicates.values()),
        extra=max(0, len(task_pods) - len(runs) - len(never_started)),
        start_failures=never_started,
        duplicate_keys=[f"{tr}#{attempt}" for tr, attempt in duplicates],
        not_completed={name: (tr.get("status") or {}) for name, tr in runs.items()
                       if name not in done},
    )


@dataclass
class FaultReport:
    """One fault test's figures, printed and written to $FLOWPOD_FAULT_RESULTS/<fault>.json."""

    fault: str
    injected: int = 0
    outcome: str = "not finished"
    run_seconds: float = 0.0
    recover_seconds: list[float] = field(default_factory=list)
    next_completed_seconds: list[float] = field(default_factory=list)
    fault_seconds: list[float] = field(default_factory=list)
    accounting: Accounting | None = None
    notes: list[str] = field(default_factory=list)

    def mark(self, what: str) -> None:
        """A wall-clock note (to match pod and operator logs)."""
        from datetime import datetime

        self.notes.append(f"{what} at {datetime.now().strftime('%H:%M:%S.%f')[:-3]}")

    def recovered(self, seconds: tuple[float, float]) -> None:
        self.recover_seconds.append(seconds[0])
        self.next_completed_seconds.append(seconds[1])

    def write(self) -> None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        data = {
            "fault": self.fault, "injected": self.injected, "outcome": self.outcome,
            "run_seconds": round(self.run_seconds, 1),
            "recover_seconds": [round(s, 2) for s in self.recover_seconds],
            "next_completed_seconds": [round(s, 2) for s in self.next_completed_seconds],
            "fault_seconds": [round(s, 2) for s in self.fault_seconds],
            "accounting": None if self.accounting is None else {
                k: v for k, v in vars(self.accounting).items() if k != "not_completed"
            } | {"not_completed": dict(list(self.accounting.not_completed.items())[:5])},
            "notes": self.notes,
        }
        (RESULTS_DIR / f"{self.fault}.json").write_text(json.dumps(data, indent=2, default=str))
        print(f"\nFAULT REPORT {json.dumps(data, default=str)}")


class BackgroundFlow:
    """``sum(double.map(range(n)))`` as a flow with a KubernetesTaskRunner, in a thread."""

    def __init__(self, flow_fn: Callable[[], int]) -> None:
        self.flow_fn = flow_fn
        self.result: int | None = None
        self.error: BaseException | None = None
        self.started = 0.0
        self.ended: float | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="fault-flow")

    def _run(self) -> None:
        try:
            self.result = self.flow_fn()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.ended = time.monotonic()

    def start(self) -> BackgroundFlow:
        self.started = time.monotonic()
        self._thread.start()
        return self

    @property
    def done(self) -> bool:
        return self.ended is not None

    def wait(self, timeout: float) -> int:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the flow did not finish within {timeout} s")
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started
