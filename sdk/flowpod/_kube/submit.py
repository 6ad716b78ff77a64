"""Submitting a whole flow to the cluster as a FlowRun, and following it (``FlowRunHandle``).

``submit()`` pickles the flow by value into the result store at ``runs/<ns>/<flowrun>/flow-code``
(so a flow defined in a script needs no image build, only its dependencies in the image), then
creates a FlowRun whose ``spec.code`` is that key; the operator starts a flow pod that loads it.
The handle follows the FlowRun with a watch (``wait``), reports progress as task-run counts (and,
``reason_line``, why a run cannot progress), and reads the flow's return value back from the
store (``result``). Before creating anything, ``submit()`` checks once that the cluster and the
store answer (``flowpod._kube.preflight``).

Storage from ``FLOWPOD_S3_*`` is seen from two places (``flowpod._kube.storage_views``): this
process uses ``FLOWPOD_S3_ENDPOINT``, while the specs written into the cluster carry
``FLOWPOD_S3_CLUSTER_ENDPOINT`` when that is set (pods reach S3 at another address).

Every API call goes through ``flowpod._kube.flowrun_api.FlowRunApi`` (the seam tests replace);
pydantic, cloudpickle, boto3 and the kubernetes client are imported on first use.
"""

from __future__ import annotations

import json
import logging
import random
import re
import string
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from flowpod._contract.keys import flow_code_key
from flowpod._contract.labels import FLOWRUN_LABEL, label_value
from flowpod._contract.states import FINAL_STATES
from flowpod._kube.flowrun_api import FlowRunApi, NotFound
from flowpod._kube.options import check_pending_timeout
from flowpod._kube.preflight import check_cluster, check_store
from flowpod._kube.storage_views import (
    CLUSTER_ENDPOINT_VAR,
    StorageViews,
    local_storage,
    local_store,
    storage_views,
)
from flowpod._kube.taskrun_api import WatchExpired
from flowpod._storage import get_serializer
from flowpod.exceptions import CancelledRun, CrashedRun, FailedRun, SerializationError
from flowpod.flows import Flow

if TYPE_CHECKING:
    from flowpod._contract.pod_settings import StorageSpec
    from flowpod._kube.flowrun_api import FlowRunApi
    from flowpod._storage import ResultStore
    from flowpod.flows import Flow

__all__ = [
    "CLUSTER_ENDPOINT_VAR",
    "FlowRunHandle",
    "StorageViews",
    "flowrun_object_name",
    "progress_line",
    "reason_line",
    "storage_views",
    "submit",
]

logger = logging.getLogger("flowpod.kubernetes")

_NAME_CHARS = re.compile(r"[^a-z0-9-]+")
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


def flowrun_object_name(flow_name: str, rng: random.Random | None = None) -> str:
    """A unique, valid FlowRun name for a flow (e.g. 'repo-stats-k3x9qz'), short enough that the
    operator's '<flowrun>-flow-<attempt>' pod names stay readable."""
    base = _NAME_CHARS.sub("-", flow_name.lower().replace("_", "-")).strip("-")[:40].strip("-")
    draw = rng or random
    suffix = "".join(draw.choice(_SUFFIX_ALPHABET) for _ in range(6))
    return f"{base or 'flow'}-{suffix}"


def progress_line(obj: Mapping[str, Any]) -> str:
    """'Running: 3/5 task runs done (1 failed)' from a FlowRun object's status."""
    status = obj.get("status") or {}
    state = status.get("state") or "Pending"
    counts = status.get("taskRuns") or {}
    total = int(counts.get("total") or 0)
    finished = ("completed", "cached", "failed", "timedOut", "crashed", "cancelled")
    done = sum(int(counts.get(key) or 0) for key in finished)
    line = f"{state}: {done}/{total} task runs done"
    bad = [(int(counts.get(key) or 0), label) for key, label in (
        ("failed", "failed"), ("timedOut", "timed out"), ("crashed", "crashed"),
        ("cancelled", "cancelled"))]
    extras = [f"{n} {label}" for n, label in bad if n]
    running = int(counts.get("running") or 0)
    if running and state not in FINAL_STATES:
        extras.insert(0, f"{running} running")
    if extras:
        line += f" ({', '.join(extras)})"
    return line


def reason_line(obj: Mapping[str, Any]) -> str | None:
    """'Pending (ServiceAccountNotFound): ...' while the operator says why a FlowRun that is not
    final cannot progress (``status.reason`` and message); None otherwise."""
    status = obj.get("status") or {}
    state, reason = status.get("state") or "Pending", status.get("reason")
    if not reason or state in FINAL_STATES:
        return None
    message = status.get("message")
    return f"{state} ({reason})" + (f": {message}" if message else "")


class ReasonLog:
    """An ``on_change`` for ``FlowRunHandle.wait``: one WARNING per new reason line of the run."""

    def __init__(self, handle: FlowRunHandle) -> None:
        self.handle = handle
        self.last: str | None = None

    def __call__(self, obj: dict[str, Any]) -> None:
        line = reason_line(obj)
        if line is not None and line != self.last:
            logger.warning("FlowRun %s/%s is %s", self.handle.namespace, self.handle.name, line)
        self.last = line


def _env_list(env: Sequence[Mapping[str, Any]] | Mapping[str, str] | None) -> list[Any] | None:
    if not env:
        return None
    if isinstance(env, Mapping):
        return [{"name": key, "value": str(value)} for key, value in env.items()]
    return [dict(item) for item in env]


def _check_parameters(flow: Flow[..., Any], parameters: Mapping[str, Any]) -> dict[str, Any]:
    params = dict(parameters)
    for key, value in params.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"parameter {key!r} of flow {flow.name!r} is a {type(value).__name__}, which a "
                "FlowRun cannot carry: FlowRun parameters must be JSON values (numbers, strings, "
                "lists, dicts, booleans, null)"
            ) from None
    import inspect

    signature = inspect.signature(flow.fn)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = sorted(set(params) - set(signature.parameters))
    if unknown and not accepts_any:
        raise ValueError(
            f"flow {flow.name!r} has no parameter {', '.join(map(repr, unknown))}; its "
            f"parameters are: {', '.join(signature.parameters) or 'none'}"
        )
    return params


def dump_flow(flow: Flow[..., Any]) -> bytes:
    """The flow cloudpickled by value (its module too, unless it is an installed package)."""
    import cloudpickle

    from flowpod._kube.payloads import _modules_to_pickle_by_value, _pickled_by_value

    def dump(modules: list[ModuleType]) -> bytes:
        with _pickled_by_value(modules):
            data: bytes = cloudpickle.dumps(flow, protocol=5)
        return data

    own = _modules_to_pickle_by_value(flow)
    siblings = _sibling_modules(flow)
    if siblings:
        try:
            return dump([*own, *siblings])
        except Exception:  # noqa: BLE001 - a helper module holds state (a lock): keep it a
            pass  # reference, the image must then provide it
    try:
        return dump(own)
    except Exception as exc:
        raise SerializationError(
            f"cannot pickle flow {flow.name!r} for the cluster ({type(exc).__name__}: {exc}); "
            "the flow and what it references at module level must be picklable by cloudpickle"
        ) from exc


def _sibling_modules(flow: Flow[..., Any]) -> list[ModuleType]:
    """Loaded modules of the flow's own source tree (the folder its top-level package or script
    sits in), e.g. a helper module next to the flow file: pickled by value too, so the pod needs
    nothing of that tree. Installed packages, the standard library and flowpod stay references."""
    from flowpod._kube.payloads import _stdlib_dirs

    module_name = getattr(flow.fn, "__module__", None) or ""
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if module is None or path is None or module_name.split(".")[0] == "flowpod":
        return []
    file = Path(path).resolve()
    depth = module_name.count(".") + (1 if file.name == "__init__.py" else 0)
    root = file.parents[depth]
    found = []
    for name, other in list(sys.modules.items()):
        other_path = getattr(other, "__file__", None)
        if other is module or other_path is None or name.split(".")[0] == "flowpod":
            continue
        if any(part in other_path for part in ("site-packages", "dist-packages")):
            continue
        if other_path.startswith(_stdlib_dirs()):
            continue
        if Path(other_path).resolve().is_relative_to(root):
            found.append(other)
    return found


def submit(
    flow: Flow[..., Any],
    parameters: Mapping[str, Any] | None = None,
    namespace: str | None = None,
    image: str | None = None,
    wait: bool = False,
    *,
    name: str | None = None,
    env: Sequence[Mapping[str, Any]] | Mapping[str, str] | None = None,
    storage: StorageSpec | Mapping[str, Any] | None = None,
    service_account_name: str | None = None,
    ttl_seconds_after_finished: int | None = None,
    timeout: float | None = None,
    pending_timeout_seconds: float | None = None,
    kubeconfig: str | None = None,
    context: str | None = None,
    store: ResultStore | None = None,
    api: FlowRunApi | None = None,
) -> FlowRunHandle:
    """Run ``flow`` on the cluster as a FlowRun; returns a handle (waited on when ``wait``).

    The flow is pickled by value to the result store (``storage``, default ``FLOWPOD_S3_*``;
    ``store`` overrides this process's view of it; with storage from the environment the
    FlowRun gets ``FLOWPOD_S3_CLUSTER_ENDPOINT`` as its endpoint when that is set). ``image``
    runs the flow pod and, unless the flow's task runner says otherwise, its task pods; it must
    have the flow's dependencies and flowpod. ``env`` is added to the flow pod. Parameters must
    be JSON values. ``pending_timeout_seconds``: how long the flow pod may wait to start before
    the operator ends the attempt Crashed (PendingTimeout); default: the operator's.
    """
    from flowpod._contract.resources import FlowRunSpec

    if not isinstance(flow, Flow):
        raise TypeError(f"submit() takes a flow (decorated with @flow), got {type(flow).__name__}")
    params = _check_parameters(flow, parameters or {})
    check_pending_timeout(pending_timeout_seconds)
    api = api or FlowRunApi(kubeconfig, context)
    run_name = name or flowrun_object_name(flow.name)
    where = [namespace]

    def reach_flowruns() -> object:
        # A list that matches nothing: the config loads, the API answers, FlowRuns exist there.
        ns = where[0] = where[0] or api.default_namespace()
        return api.list_objects(ns, "flowruns", f"{FLOWRUN_LABEL}={label_value(run_name)}")

    check_cluster(reach_flowruns, "flowruns", lambda: where[0],
                  f"Cannot submit flow {flow.name!r} to the cluster")
    namespace = where[0] or api.default_namespace()
    views = storage_views(storage)
    if store is None:
        store = local_store(
            views.local,
            "submit() needs the result store the flow pod reads the flow from: pass "
            "storage={'bucket': ..., 'endpoint': ...}, set FLOWPOD_S3_BUCKET (and "
            "FLOWPOD_S3_ENDPOINT / FLOWPOD_S3_PREFIX), or pass store=<ResultStore> pointing "
            "at the operator's default storage",
        )
    code_key = flow_code_key(namespace, run_name)
    check_store(store, code_key,
                f"Cannot submit flow {flow.name!r}: the result store {store!r} does not answer")
    delay = flow.retry_delay_seconds
    spec = FlowRunSpec.model_validate({
        "code": flow_code_key(namespace, run_name),
        "flowName": flow.name,
        "parameters": params,
        "image": image,
        "env": _env_list(env),
        "storage": views.spec,
        "serviceAccountName": service_account_name,
        "retries": int(flow.retries or 0),
        "retryDelaySeconds": [float(delay)] if delay else [],
        "timeoutSeconds": flow.timeout_seconds or None,
        "ttlSecondsAfterFinished": ttl_seconds_after_finished,
        "pendingTimeoutSeconds": pending_timeout_seconds,
    })
    manifest = spec.to_manifest(run_name, namespace, labels={"flowpod.dev/flow": _label(flow)})
    store.put(flow_code_key(namespace, run_name), dump_flow(flow))
    api.create_flowrun(namespace, manifest)
    handle = FlowRunHandle(run_name, namespace, api=api, store=store)
    if wait:
        handle.wait(timeout, on_change=ReasonLog(handle))
    return handle


def _label(flow: Flow[..., Any]) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", flow.name)[:63].strip("-_.")
    return value or "flow"


class FlowRunHandle:
    """A FlowRun on the cluster: its state, waiting for the end, and the flow's result."""
    def __init__(self, name: str, namespace: str, *, api: FlowRunApi,
                 store: ResultStore | None = None) -> None:
        self.name = name
        self.namespace = namespace
        self.api = api
        self._store = store
        self._last: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"FlowRunHandle({self.namespace}/{self.name}, state={self._last_state()!r})"

    def _last_state(self) -> str | None:
        status = (self._last or {}).get("status") or {}
        state = status.get("state")
        return str(state) if state else None

    def refresh(self) -> dict[str, Any]:
        """The FlowRun object as the API server has it now."""
        self._last = self.api.get(self.namespace, "flowruns", self.name)
        return self._last

    @property
    def state(self) -> str | None:
        """The FlowRun's current state name ('Running', 'Completed', ...), None before the
        operator has seen it."""
        self.refresh()
        return self._last_state()

    @property
    def reason(self) -> str | None:
        """Why the FlowRun is in its state or cannot progress (``status.reason``, e.g.
        'ServiceAccountNotFound'), as last read."""
        status = (self._last or self.refresh()).get("status") or {}
        found = status.get("reason")
        return str(found) if found else None

    @property
    def message(self) -> str | None:
        status = (self._last or self.refresh()).get("status") or {}
        found = status.get("message")
        return str(found) if found else None

    def wait(self, timeout: float | None = None,
             on_change: Callable[[dict[str, Any]], object] | None = None) -> str:
        """Block until the FlowRun is final; returns its state name. ``on_change`` gets each
        new version of the object. TimeoutError when ``timeout`` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            obj = self.refresh()
            if on_change is not None:
                on_change(obj)
            if self._last_state() in FINAL_STATES:
                return str(self._last_state())
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(
                    f"FlowRun {self.namespace}/{self.name} is still {self._last_state()} after "
                    f"{timeout} s"
                )
            window = 60 if remaining is None else max(1, min(60, int(remaining + 1)))
            try:
                for kind, event_obj in self.api.watch_flowrun(self.namespace, self.name, window):
                    if kind == "DELETED":
                        raise NotFound(f"FlowRun {self.namespace}/{self.name} was deleted")
                    if kind in ("ADDED", "MODIFIED"):
                        self._last = event_obj
                        if on_change is not None:
                            on_change(event_obj)
                        if self._last_state() in FINAL_STATES:
                            return str(self._last_state())
                    if deadline is not None and time.monotonic() >= deadline:
                        break
            except WatchExpired:
                continue

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the run, then return the flow's return value (read from the store); raise
        FailedRun / CrashedRun / CancelledRun with the FlowRun's message when it did not
        complete."""
        state = self.wait(timeout)
        status = (self._last or {}).get("status") or {}
        message = status.get("message") or f"FlowRun {self.namespace}/{self.name} is {state}"
        if state != "Completed":
            kind = {"Crashed": CrashedRun, "Cancelled": CancelledRun}.get(state, FailedRun)
            raise kind(str(message))
        ref = status.get("resultRef")
        if not ref:
            return None  # the flow returned nothing the pod stored
        return _read_flow_result(self._result_store(), str(ref))

    def _result_store(self) -> ResultStore:
        if self._store is None:
            self._store = local_store(
                local_storage(self.refresh().get("spec", {}).get("storage")),
                "cannot read the flow's result: set FLOWPOD_S3_BUCKET (and "
                "FLOWPOD_S3_ENDPOINT) to the operator's storage",
            )
        return self._store

    def cancel(self) -> None:
        """Ask the operator to stop the flow pod and its task pods (state Cancelled)."""
        self.api.patch_flowrun_spec(self.namespace, self.name, {"cancel": True})


def _read_flow_result(store: ResultStore, ref: str) -> Any:
    """The value under ``ref``: pickle first (the default serializer), JSON as a fallback."""
    data = store.get(ref)
    for serializer in ("pickle", "json"):
        try:
            return get_serializer(serializer).loads(data)
        except Exception:  # noqa: BLE001 - try the other format
            continue

    raise SerializationError(f"the flow result {ref!r} is neither pickle nor JSON")
