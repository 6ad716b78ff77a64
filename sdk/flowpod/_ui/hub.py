"""``WatchHub``: the dashboard's one view of the cluster, shared by every browser.

One list+watch loop per kind (FlowRuns, TaskRuns, flowpod's pods, Events) keeps an in-memory
copy of the objects keyed by (namespace, name), the way an informer does; pages are rendered
from that copy, so opening more browsers never makes more API requests. Every request the hub
makes is counted (``stats()``, shown by ``/healthz``).

Changes become notices (``{"kind", "namespace", "name", "flowrun"}``) that a notifier thread
hands to the subscribers (the SSE streams) at most once per ``batch_seconds``: within a batch the
notices of one kind for one FlowRun collapse into one, so a burst of 1,000 TaskRun changes costs
each browser one refetch, not 1,000. Each subscriber lives on an asyncio loop; notices reach it
through ``loop.call_soon_threadsafe``.

Scope: the namespaces given (``flowpod ui -n``, the chart's ``ui.namespaces``), as kubectl's
``-n`` means; with none, every namespace, and when the cluster-wide list is refused (403) the
kubeconfig's default namespace, which ``banner()`` then names. A watch that expires (410)
lists again; any other failure backs off (1 s doubling to 30 s) and is reported in
``banner()`` until the next list succeeds. Pods are kept slim (no spec, so no env), and a run's
``spec.env`` is dropped: the dashboard never holds values that may come from Secrets.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from flowpod._contract.labels import FLOWRUN_LABEL, MANAGED_BY, MANAGED_BY_LABEL, label_value
from flowpod._kube.taskrun_api import WatchExpired

__all__ = ["KINDS", "HubApi", "Subscription", "WatchHub"]

KINDS = ("flowruns", "taskruns", "pods", "events")
POD_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"  # the operator's pods
_RUN_KINDS = {"FlowRun", "TaskRun"}  # Events about anything else are not kept
_BACKOFF_MAX = 30.0
Key = tuple[str, str]


class HubApi(Protocol):
    """What the hub needs of ``FlowRunApi`` (unit tests pass a fake)."""

    def list_with_version(self, namespace: str | None, plural: str,
                          label_selector: str = "") -> dict[str, Any]: ...

    def watch_objects(self, namespace: str | None, plural: str, label_selector: str,
                      resource_version: str, timeout_seconds: int,
                      field_selector: str = "") -> Iterator[tuple[str, dict[str, Any]]]: ...

    def list_core(self, namespace: str | None, plural: str,
                  label_selector: str = "") -> dict[str, Any]: ...

    def watch_core(self, namespace: str | None, plural: str, label_selector: str,
                   resource_version: str,
                   timeout_seconds: int) -> Iterator[tuple[str, dict[str, Any]]]: ...

    def pod_log(self, namespace: str, pod: str, *, timestamps: bool = False,
                tail_lines: int | None = None) -> str | None: ...

    def patch_flowrun_spec(self, namespace: str, name: str,
                           spec: dict[str, Any]) -> dict[str, Any]: ...

    def default_namespace(self) -> str: ...


@dataclass(eq=False)
class Subscription:
    """One SSE client: the notices it wants (``run``: one FlowRun's, None: every FlowRun
    change) arrive in ``queue`` as lists, one list per batch."""

    loop: asyncio.AbstractEventLoop
    run: Key | None
    queue: asyncio.Queue[list[dict[str, str]]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=32))

    def wants(self, notice: dict[str, str]) -> bool:
        if self.run is None:
            return notice["kind"] == "flowruns"
        namespace, name = self.run
        return notice["namespace"] == namespace and notice["flowrun"] in (name,
                                                                          label_value(name))

    def deliver(self, notices: list[dict[str, str]]) -> None:
        wanted = [notice for notice in notices if self.wants(notice)]
        if wanted and not self.queue.full():  # a full queue: the client refetches anyway
            self.queue.put_nowait(wanted)


def _slim(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """What the dashboard keeps of an object: no managedFields, no env, a pod without spec."""
    meta = {key: value for key, value in (obj.get("metadata") or {}).items()
            if key != "managedFields"}
    if kind == "pods":
        status = obj.get("status") or {}
        return {"metadata": meta, "status": {
            key: status.get(key) for key in ("phase", "reason", "message", "startTime",
                                             "containerStatuses") if key in status}}
    if kind == "events":
        kept = ("involvedObject", "type", "reason", "message", "count", "firstTimestamp",
                "lastTimestamp", "eventTime", "source", "reportingComponent")
        return {"metadata": meta, **{key: obj[key] for key in kept if key in obj}}
    spec = {key: value for key, value in (obj.get("spec") or {}).items() if key != "env"}
    return {**obj, "metadata": meta, "spec": spec}


def _flowrun_of(kind: str, obj: dict[str, Any]) -> str:
    """The FlowRun an object belongs to (a pod's: its label value)."""
    meta = obj.get("metadata") or {}
    if kind == "flowruns":
        return str(meta.get("name") or "")
    if kind == "taskruns":
        return str((obj.get("spec") or {}).get("flowRun")
                   or (meta.get("labels") or {}).get(FLOWRUN_LABEL) or "")
    if kind == "pods":
        return str((meta.get("labels") or {}).get(FLOWRUN_LABEL) or "")
    return ""


class WatchHub:
    """The shared, counted list+watch of every kind; see the module docstring."""

    def __init__(self, api: HubApi, namespaces: tuple[str, ...] | list[str] = (), *,
                 batch_seconds: float = 0.5, watch_timeout: int = 300,
                 kinds: tuple[str, ...] = KINDS) -> None:
        self.api = api
        self.namespaces = tuple(namespaces)
        self.batch_seconds = batch_seconds
        self.watch_timeout = watch_timeout
        self.kinds = kinds
        self._lock = threading.RLock()
        self._objects: dict[str, dict[Key, dict[str, Any]]] = {kind: {} for kind in KINDS}
        self._by_flowrun: dict[Key, dict[str, dict[str, Any]]] = {}
        self._counts: Counter[str] = Counter({"list": 0, "watch": 0, "log": 0, "patch": 0})
        self._problems: dict[str, str] = {}
        self._scope_note: str | None = None
        self._synced = {kind: threading.Event() for kind in kinds}
        self._pending: dict[tuple[str, str, str], dict[str, str]] = {}
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._subscribers: set[Subscription] = set()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """One watch thread per kind and namespace given (else one cluster-wide, which falls
        back to the default namespace when refused) and the notifier thread; once."""
        with self._lock:
            if self._threads:
                return
        for kind in self.kinds:
            for namespace in self.namespaces or (None,):
                self._spawn(kind, namespace)
        self._thread(self._notifier, "flowpod-ui-notices")

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()

    def wait_synced(self, timeout: float) -> bool:
        """True once every kind has been listed (for tests and the benchmark)."""
        return all(event.wait(timeout) for event in self._synced.values())

    def _thread(self, target: Callable[..., None], name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _spawn(self, kind: str, namespace: str | None) -> None:
        self._thread(self._run, f"flowpod-ui-{kind}-{namespace or 'all'}", kind, namespace)

    # -- reading -----------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """How many API requests the hub has made, by kind of request."""
        with self._lock:
            return dict(self._counts)

    def count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self._counts[what] += n

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def banner(self) -> list[str]:
        """What the pages say about the hub's view: its scope and failing watches."""
        with self._lock:
            found = [self._scope_note] if self._scope_note else []
            return found + [self._problems[key] for key in sorted(self._problems)]

    def flowruns(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._objects["flowruns"].values())

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects[kind].get((namespace, name))

    def taskruns_of(self, namespace: str, flowrun: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._by_flowrun.get((namespace, flowrun), {}).values())

    def events_for(self, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [event for (ns, _), event in self._objects["events"].items()
                    if ns == namespace and (event.get("involvedObject") or {}).get("kind") == kind
                    and event["involvedObject"].get("name") == name]

    # -- the few requests a page may cause (counted) -----------------------------------------

    def pod_log(self, namespace: str, pod: str, *, timestamps: bool = False,
                tail_lines: int | None = None) -> str | None:
        self.count("log")
        return self.api.pod_log(namespace, pod, timestamps=timestamps, tail_lines=tail_lines)

    def cancel(self, namespace: str, name: str) -> None:
        self.count("patch")
        self.api.patch_flowrun_spec(namespace, name, {"cancel": True})

    # -- subscribers -------------------------------------------------------------------------

    def subscribe(self, run: Key | None) -> Subscription:
        """A subscription on the running loop (call from async code)."""
        sub = Subscription(asyncio.get_running_loop(), run)
        with self._lock:
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    def _notifier(self) -> None:
        """Hands the pending notices to every subscriber, at most once per batch."""
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.wait(self.batch_seconds):
                return
            with self._lock:
                self._dirty.clear()
                notices, self._pending = list(self._pending.values()), {}
                subscribers = list(self._subscribers)
            for sub in subscribers:
                try:
                    sub.loop.call_soon_threadsafe(sub.deliver, notices)
                except RuntimeError:  # its loop is closed: the client is gone
                    self.unsubscribe(sub)

    def _notice(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        if kind == "events":
            involved = obj.get("involvedObject") or {}
            target = self._objects["taskruns"].get((namespace, str(involved.get("name"))))
            flowrun = (_flowrun_of("taskruns", target) if target is not None
                       else str(involved.get("name") or ""))
        else:
            flowrun = _flowrun_of(kind, obj)
        # One notice per kind and FlowRun per batch (FlowRuns themselves: one per FlowRun).
        key = (kind, namespace, name if kind == "flowruns" else flowrun)
        self._pending[key] = {"kind": kind, "namespace": namespace, "name": name,
                              "flowrun": flowrun}
        self._dirty.set()

    # -- the copy ----------------------------------------------------------------------------

    def _put(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        self._objects[kind][key] = obj
        if kind == "taskruns":
            self._by_flowrun.setdefault((key[0], _flowrun_of(kind, obj)), {})[key[1]] = obj

    def _drop(self, kind: str, key: Key) -> dict[str, Any] | None:
        obj = self._objects[kind].pop(key, None)
        if obj is not None and kind == "taskruns":
            group = self._by_flowrun.get((key[0], _flowrun_of(kind, obj)))
            if group is not None:
                group.pop(key[1], None)
        return obj

    def apply(self, kind: str, change: str, obj: dict[str, Any]) -> None:
        """One watch event (ADDED, MODIFIED, DELETED) into the copy, and its notice."""
        if kind == "events" and (obj.get("involvedObject") or {}).get("kind") not in _RUN_KINDS:
            return
        slim = _slim(kind, obj)
        meta = slim["metadata"]
        with self._lock:
            # Drop first: a TaskRun's index entry follows the object as it is now.
            self._drop(kind, (str(meta.get("namespace") or ""), str(meta.get("name") or "")))
            if change != "DELETED":
                self._put(kind, slim)
            self._notice(kind, slim)

    def _replace(self, kind: str, namespace: str | None, items: list[dict[str, Any]]) -> None:
        """A fresh list of ``kind`` in ``namespace`` (None: all): notices for what changed."""
        with self._lock:
            old = {key: obj for key, obj in self._objects[kind].items()
                   if namespace is None or key[0] == namespace}
            seen: set[Key] = set()
            for item in items:
                meta = item.get("metadata") or {}
                key = (str(meta.get("namespace") or namespace or ""), str(meta.get("name") or ""))
                seen.add(key)
                before = old.get(key)
                if before is None or before["metadata"].get("resourceVersion") != meta.get(
                        "resourceVersion"):
                    item.setdefault("metadata", {}).setdefault("namespace", key[0])
                    self.apply(kind, "MODIFIED", item)
            for key in old.keys() - seen:
                gone = self._drop(kind, key)
                if gone is not None:
                    self._notice(kind, gone)

    # -- the watch loop ----------------------------------------------------------------------

    def _list(self, kind: str, namespace: str | None) -> dict[str, Any]:
        self.count("list")
        if kind in ("pods", "events"):
            selector = POD_SELECTOR if kind == "pods" else ""
            return self.api.list_core(namespace, kind, selector)
        return self.api.list_with_version(namespace, kind)

    def _watch(self, kind: str, namespace: str | None,
               version: str) -> Iterator[tuple[str, dict[str, Any]]]:
        self.count("watch")
        if kind in ("pods", "events"):
            selector = POD_SELECTOR if kind == "pods" else ""
            return self.api.watch_core(namespace, kind, selector, version, self.watch_timeout)
        return self.api.watch_objects(namespace, kind, "", version, self.watch_timeout)

    def _fall_back(self, kind: str) -> None:
        """The cluster-wide list was refused: watch the kubeconfig's namespace instead."""
        namespaces = (self.api.default_namespace(),)
        with self._lock:
            self._scope_note = ("Listing across the cluster is not allowed (403): showing "
                                f"namespace{'s' if len(namespaces) > 1 else ''} "
                                f"{', '.join(namespaces)} only.")
        for namespace in namespaces:
            self._spawn(kind, namespace)

    def _run(self, kind: str, namespace: str | None) -> None:
        backoff = 1.0
        where = f"{kind} in {namespace}" if namespace else kind
        while not self._stop.is_set():
            try:
                listed = self._list(kind, namespace)
            except Exception as exc:  # noqa: BLE001 - reported, then tried again
                if namespace is None and getattr(exc, "status", None) == 403:
                    self._fall_back(kind)
                    return
                backoff = self._failed(where, exc, backoff)
                continue
            self._replace(kind, namespace, list(listed.get("items") or []))
            version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
            with self._lock:
                self._problems.pop(where, None)
            self._synced[kind].set()
            backoff = 1.0
            try:
                while not self._stop.is_set():
                    for change, obj in self._watch(kind, namespace, version):
                        if self._stop.is_set():
                            return
                        version = str((obj.get("metadata") or {}).get("resourceVersion")
                                      or version)
                        if change != "BOOKMARK":
                            self.apply(kind, change, obj)
            except WatchExpired:
                continue  # list again
            except Exception as exc:  # noqa: BLE001 - reported, then listed again
                backoff = self._failed(where, exc, backoff)

    def _failed(self, where: str, exc: Exception, backoff: float) -> float:
        with self._lock:
            self._problems[where] = (f"Watching {where} failed ({type(exc).__name__}: "
                                     f"{str(exc)[:200]}); retrying in {backoff:.0f} s.")
        self._stop.wait(backoff)
        return min(backoff * 2, _BACKOFF_MAX)
