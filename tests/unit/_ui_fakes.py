"""The dashboard's seams for unit tests: ``FakeHubApi`` (what ``WatchHub`` asks of
``FlowRunApi``: lists with a resourceVersion, watches fed by ``emit``, pod logs, the cancel
patch; every call counted in ``calls``), object builders with realistic histories, and
``wait_for``.

Watches block until ``emit`` sends them a change, ``expire`` ends them with WatchExpired (410)
or ``close`` ends them for good, so a hub over this fake behaves as over an API server: it lists
once per kind and then only listens.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from flowpod._kube.taskrun_api import WatchExpired

T0 = "2026-11-30T10:00:00Z"


def stamp(seconds: float) -> str:
    """T0 plus ``seconds``, as the API writes times."""
    whole, frac = divmod(seconds, 1)
    minutes, secs = divmod(int(whole), 60)
    hours, minutes = divmod(minutes, 60)
    return f"2026-11-30T{10 + hours:02d}:{minutes:02d}:{secs:02d}.{int(frac * 1000):03d}Z"


def wait_for(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll ``condition`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.01)


class ApiRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class FakeHubApi:
    """An API server for the hub: objects by kind, watches fed by ``emit``."""

    def __init__(self, forbid_cluster: bool = False) -> None:
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {
            kind: {} for kind in ("flowruns", "taskruns", "pods", "events")}
        self.calls: Counter[str] = Counter()
        self.list_args: list[tuple[str | None, str, str]] = []
        self.forbid_cluster = forbid_cluster
        self.version = 100
        self.pod_logs: dict[str, str] = {}
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self._watchers: list[tuple[str, str | None, queue.Queue[Any]]] = []
        self._lock = threading.Lock()
        self.closed = threading.Event()
        self.fail_next_list = 0

    def add(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store ``obj`` (no watch event): what exists before the hub lists."""
        with self._lock:
            self.version += 1
            obj.setdefault("metadata", {})["resourceVersion"] = str(self.version)
            meta = obj["metadata"]
            self.objects[kind][(meta["namespace"], meta["name"])] = obj
        return obj

    def emit(self, kind: str, change: str, obj: dict[str, Any]) -> None:
        """A change the API server would send to the watches of ``kind``."""
        self.add(kind, obj) if change != "DELETED" else self.objects[kind].pop(
            (obj["metadata"]["namespace"], obj["metadata"]["name"]), None)
        with self._lock:
            for watched, namespace, events in self._watchers:
                if watched == kind and namespace in (None, obj["metadata"]["namespace"]):
                    events.put((change, copy.deepcopy(obj)))

    def expire(self, kind: str) -> None:
        with self._lock:
            for watched, _, events in self._watchers:
                if watched == kind:
                    events.put(WatchExpired("too old resource version"))

    def break_watch(self, kind: str) -> None:
        with self._lock:
            for watched, _, events in self._watchers:
                if watched == kind:
                    events.put(RuntimeError("connection reset by peer"))

    def close(self) -> None:
        self.closed.set()

    def watching(self, kind: str) -> int:
        with self._lock:
            return sum(1 for watched, _, _ in self._watchers if watched == kind)

    # -- the HubApi protocol -------------------------------------------------------------------

    def _list(self, namespace: str | None, plural: str, selector: str) -> dict[str, Any]:
        self.calls["list"] += 1
        self.list_args.append((namespace, plural, selector))
        if self.fail_next_list:
            self.fail_next_list -= 1
            raise ConnectionError("the API server is restarting")
        if namespace is None and self.forbid_cluster:
            raise ApiRefused(403)
        with self._lock:
            items = [copy.deepcopy(obj) for (ns, _), obj in self.objects[plural].items()
                     if namespace in (None, ns)]
            return {"items": items, "metadata": {"resourceVersion": str(self.version)}}

    def _watch(self, namespace: str | None, plural: str) -> Iterator[tuple[str, dict[str, Any]]]:
        self.calls["watch"] += 1
        events: queue.Queue[Any] = queue.Queue()
        entry = (plural, namespace, events)
        with self._lock:
            self._watchers.append(entry)
        try:
            while not self.closed.is_set():
                try:
                    item = events.get(timeout=0.05)
                except queue.Empty:
                    continue
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            with self._lock:
                self._watchers.remove(entry)

    def list_with_version(self, namespace: str | None, plural: str,
                          label_selector: str = "") -> dict[str, Any]:
        return self._list(namespace, plural, label_selector)

    def list_core(self, namespace: str | None, plural: str,
                  label_selector: str = "") -> dict[str, Any]:
        return self._list(namespace, plural, label_selector)

    def watch_objects(self, namespace: str | None, plural: str, label_selector: str,
                      resource_version: str, timeout_seconds: int,
                      field_selector: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
        return self._watch(namespace, plural)

    def watch_core(self, namespace: str | None, plural: str, label_selector: str,
                   resource_version: str,
                   timeout_seconds: int) -> Iterator[tuple[str, dict[str, Any]]]:
        return self._watch(namespace, plural)

    def pod_log(self, namespace: str, pod: str, *, timestamps: bool = False,
                tail_lines: int | None = None) -> str | None:
        self.calls["log"] += 1
        return self.pod_logs.get(pod)

    def patch_flowrun_spec(self, namespace: str, name: str,
                           spec: dict[str, Any]) -> dict[str, Any]:
        self.calls["patch"] += 1
        self.patches.append((namespace, name, dict(spec)))
        return self.objects["flowruns"][(namespace, name)]

    def default_namespace(self) -> str:
        return "team-a"


# -- objects ----------------------------------------------------------------------------------

def entry(state: str, at: float, attempt: int, message: str | None = None,
          reason: str | None = None) -> dict[str, Any]:
    return {"state": state, "type": "X", "timestamp": stamp(at), "attempt": attempt,
            "message": message, "reason": reason}


def flowrun(name: str = "etl-x", namespace: str = "team-a", *, state: str = "Running",
            flow: str = "etl", parameters: dict[str, Any] | None = None,
            message: str | None = None, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flowpod.dev/v1alpha1", "kind": "FlowRun",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": stamp(0)},
        "spec": {"flowName": flow, "entrypoint": "pkg.mod:flow", "parameters": parameters or {},
                 "env": [{"name": "TOKEN", "value": "s3cr3t-value"}]},
        "status": {"state": state, "startTime": stamp(0), "attempt": 1,
                   "pod": f"{name}-flow-1", "message": message,
                   "taskRuns": {"total": 2, "running": 1, "completed": 1}, **status},
    }


def taskrun(name: str, flowrun_name: str = "etl-x", namespace: str = "team-a", *,
            task: str = "add", run_name: str | None = None,
            history: list[dict[str, Any]] | None = None, state: str = "Running",
            **status: Any) -> dict[str, Any]:
    history = history if history is not None else [entry("Pending", 1, 1),
                                                   entry("Running", 2, 1)]
    attempt = max([int(e["attempt"]) for e in history] or [0])
    return {
        "apiVersion": "flowpod.dev/v1alpha1", "kind": "TaskRun",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": stamp(1),
                     "labels": {"flowpod.dev/flowrun": flowrun_name}},
        "spec": {"taskName": task, "runName": run_name or name, "flowRun": flowrun_name,
                 "taskKey": f"{task}-key", "payload": "p", "retries": 2,
                 "cacheKey": status.pop("cache_key", None)},
        "status": {"state": state, "history": history, "attempt": attempt,
                   "pod": f"{name}-{attempt}" if attempt else None,
                   "startTime": history[0]["timestamp"] if history else None, **status},
    }


def retried_then_completed(name: str, **kwargs: Any) -> dict[str, Any]:
    """Attempt 1 timed out, a 3 s backoff, attempt 2 completed."""
    history = [entry("Pending", 1, 1), entry("Running", 2, 1),
               entry("TimedOut", 4, 1, "attempt 1 timed out after 2s", "DeadlineExceeded"),
               entry("AwaitingRetry", 4, 1, "attempt 1 timed out after 2s - retry 1/2 in 3s",
                     "DeadlineExceeded"),
               entry("Retrying", 7, 2, "Retry 1/2: starting attempt 2"),
               entry("Running", 8, 2), entry("Completed", 9, 2, "Task run completed")]
    return taskrun(name, history=history, state="Completed", endTime=stamp(9), **kwargs)


def cached(name: str, **kwargs: Any) -> dict[str, Any]:
    history = [entry("Cached", 3, 0, "Cached result found under cache key 'k'")]
    found = taskrun(name, history=history, state="Cached", cache_key="k", endTime=stamp(3),
                    **kwargs)
    found["status"].update(attempt=0, pod=None, startTime=stamp(3))
    return found


def event(involved_kind: str, involved_name: str, namespace: str = "team-a", *,
          reason: str = "AwaitingRetry", message: str = "Attempt 1: retrying",
          name: str | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name or f"{involved_name}.{reason.lower()}",
                         "namespace": namespace, "creationTimestamp": stamp(5)},
            "involvedObject": {"kind": involved_kind, "name": involved_name},
            "type": "Warning", "reason": reason, "message": message, "count": 1,
            "lastTimestamp": stamp(5), "source": {"component": "flowpod-operator"}}
