"""``KubernetesTaskRunner``: each ``.submit()`` / ``.map()`` in a flow becomes a TaskRun.

::

    from flowpod import flow, task
    from flowpod.kubernetes import KubernetesTaskRunner

    @flow(task_runner=KubernetesTaskRunner(namespace="etl", image="registry/etl:1.4"))
    def etl(): ...

For each submitted run the runner resolves upstream futures, computes the cache key where the task
was called (``cache_key_fn`` is Python), writes the payload (task + arguments, cloudpickled) to the
result store, and creates a TaskRun whose spec carries retries, the resolved retry-delay list,
jitter, timeout and the cache settings; the flowpod operator runs it as one pod per attempt. One
watch per runner follows all of its TaskRuns (label ``flowpod.dev/runner``); a TaskRun that
reaches a final state resolves its future with the result read back from the store, or with the
task's own exception when the pod could pickle it.

``flowpod._kube.taskrun_api.TaskRunApi`` makes every Kubernetes API call (the seam unit tests
replace).
The ``kubernetes`` client, boto3 and pydantic are imported on first use, never by
``import flowpod``.
"""

from __future__ import annotations

import contextvars
import logging
import os
import random
import re
import string
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from flowpod._contract.labels import FLOWRUN_LABEL, RUNNER_LABEL, TASK_LABEL, label_value
from flowpod._contract.states import FINAL_STATES
from flowpod._kube.submit import FlowRunHandle, StorageViews, storage_views, submit
from flowpod._kube.taskrun_api import TaskRunApi, WatchExpired
from flowpod.futures import FlowpodFuture
from flowpod.task_runners import TaskRunner

if TYPE_CHECKING:
    from flowpod._contract.resources import StorageSpec
    from flowpod._engine.runs import TaskRun
    from flowpod._engine.task_engine import Submission
    from flowpod._storage.stores import ResultStore
    from flowpod.states import State
    from flowpod.tasks import Task

__all__ = [
    "FlowRunHandle",
    "KubernetesTaskFuture",
    "KubernetesTaskRunner",
    "TaskRunApi",
    "WatchExpired",
    "submit",
]

R = TypeVar("R")

# Set in a flow-runner pod by the operator: TaskRuns created there belong to that FlowRun.
FLOWRUN_NAME_VAR = "FLOWPOD_FLOW_RUN_NAME"
FLOWRUN_UID_VAR = "FLOWPOD_FLOW_RUN_UID"

logger = logging.getLogger("flowpod.kubernetes")


# -- futures ------------------------------------------------------------------------------------


class KubernetesTaskFuture(FlowpodFuture[R]):
    """The future of a task run that runs on the cluster as a TaskRun."""

    __slots__ = ("_callbacks", "_done", "_final", "_guard", "taskrun_name")

    def __init__(self, task_run: TaskRun) -> None:
        super().__init__(task_run)
        self.taskrun_name: str | None = None
        self._final: State[R] | None = None
        self._done = threading.Event()
        self._guard = threading.Lock()
        self._callbacks: list[Callable[[FlowpodFuture[R]], object]] = []

    def _final_state(self) -> State[R] | None:
        return self._final

    def wait(self, timeout: float | None = None) -> None:
        self._done.wait(timeout)

    def add_done_callback(self, fn: Callable[[FlowpodFuture[R]], object]) -> None:
        with self._guard:
            if self._final is None:
                self._callbacks.append(fn)
                return
        fn(self)

    def _observe(self, state: State[Any]) -> None:
        """A non-final state seen on the cluster (Running, AwaitingRetry, Retrying)."""
        if self._final is None:
            self._task_run.set_state(state)

    def _resolve(self, state: State[R]) -> bool:
        """Make ``state`` final; False when the future was already resolved.

        The callbacks run before waiters wake up, so code that returns from ``wait()`` finds
        them done.
        """
        with self._guard:
            if self._final is not None:
                return False
            self._task_run.set_state(state)
            self._final = state
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            try:
                fn(self)
            except Exception:  # noqa: BLE001 - one callback must not starve the others
                logger.exception("A done callback of task run %r failed", self._task_run.name)
        self._done.set()
        return True


# -- the runner ---------------------------------------------------------------------------------


def _storage_from_env() -> dict[str, Any] | None:
    """``FLOWPOD_S3_*`` as this process reaches S3 (``storage_views`` makes the pods' view)."""
    bucket = os.environ.get("FLOWPOD_S3_BUCKET", "").strip()
    if not bucket:
        return None
    storage: dict[str, Any] = {"bucket": bucket, "prefix": os.environ.get("FLOWPOD_S3_PREFIX", "")}
    for key, var in (("endpoint", "FLOWPOD_S3_ENDPOINT"), ("region", "FLOWPOD_S3_REGION")):
        if os.environ.get(var):
            storage[key] = os.environ[var]
    return storage


_NAME_CHARS = re.compile(r"[^a-z0-9-]+")
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


def taskrun_object_name(run_name: str, rng: random.Random | None = None) -> str:
    """A unique, valid object name for a task run named ``run_name`` (e.g. 'add-0-k3x9qz').

    Short (<= 47 characters) so that the operator's ``<taskrun>-<attempt>`` pod names stay
    readable within Kubernetes' 63-character limit.
    """
    base = _NAME_CHARS.sub("-", run_name.lower()).strip("-")[:40].strip("-") or "task"
    draw = rng or random
    suffix = "".join(draw.choice(_SUFFIX_ALPHABET) for _ in range(6))
    return f"{base}-{suffix}"


class KubernetesTaskRunner(TaskRunner):
    """Runs each submitted task run as a TaskRun on a Kubernetes cluster with the flowpod operator.

    namespace: where TaskRuns are created (default: the kubeconfig context's namespace, or the
    pod's own). image: the task pods' image (default: the operator's). storage: the S3 storage
    (a ``StorageSpec`` or a dict with bucket, prefix, endpoint, region, credentialsSecret; default
    from ``FLOWPOD_S3_*``); this process writes payloads and reads results there with boto3's
    credential chain; with storage from the environment, ``FLOWPOD_S3_CLUSTER_ENDPOINT`` (when
    set) is the endpoint written into the TaskRuns, for pods that reach S3 at another address
    than this process does. env, resources, service_account_name, node_selector, tolerations,
    image_pull_policy: copied to every TaskRun's pod settings. kubeconfig / context: which
    cluster. store: this process's own view of the same bucket, when it reaches S3 at another
    address than the pods do (an in-cluster endpoint vs. a port-forward), or for tests. api:
    replaces the API access (tests, custom setups).
    """

    def __init__(
        self,
        namespace: str | None = None,
        image: str | None = None,
        storage: StorageSpec | Mapping[str, Any] | None = None,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        env: Sequence[Mapping[str, Any]] | Mapping[str, str] | None = None,
        resources: Mapping[str, Any] | None = None,
        service_account_name: str | None = None,
        node_selector: Mapping[str, str] | None = None,
        tolerations: Sequence[Mapping[str, Any]] | None = None,
        image_pull_policy: str | None = None,
        store: ResultStore | None = None,
        api: TaskRunApi | None = None,
        submit_workers: int = 16,
        watch_timeout_seconds: int = 60,
    ) -> None:
        if namespace is not None and not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", namespace):
            raise ValueError(
                f"namespace {namespace!r} is not a valid Kubernetes namespace name (lower-case "
                "letters, digits and '-', at most 63 characters)"
            )
        if not isinstance(submit_workers, int) or submit_workers < 1:
            raise ValueError(f"submit_workers must be an int >= 1, got {submit_workers!r}")
        self.namespace = namespace
        self.image = image
        self.storage = storage
        self.kubeconfig = kubeconfig
        self.context = context
        self.env = env
        self.resources = resources
        self.service_account_name = service_account_name
        self.node_selector = node_selector
        self.tolerations = tolerations
        self.image_pull_policy = image_pull_policy
        self.submit_workers = submit_workers
        self.watch_timeout_seconds = watch_timeout_seconds
        self._given_store = store
        self._given_api = api
        self._reset()

    def _reset(self) -> None:
        self.runner_id = uuid.uuid4().hex[:12]
        self._store: ResultStore | None = self._given_store
        self._api: TaskRunApi | None = self._given_api
        self._resolved_namespace: str | None = self.namespace
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[str, KubernetesTaskFuture[Any]] = {}
        self._all: list[KubernetesTaskFuture[Any]] = []
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self._storage_views: StorageViews | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Threads, locks and clients stay behind; the copy starts fresh where it lands.
        keep = ("namespace", "image", "storage", "kubeconfig", "context", "env", "resources",
                "service_account_name", "node_selector", "tolerations", "image_pull_policy",
                "submit_workers", "watch_timeout_seconds")
        return {name: getattr(self, name) for name in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._given_store = None
        self._given_api = None
        self._reset()

    def duplicate(self) -> KubernetesTaskRunner:
        return type(self)(
            self.namespace, self.image, self.storage, kubeconfig=self.kubeconfig,
            context=self.context, env=self.env, resources=self.resources,
            service_account_name=self.service_account_name, node_selector=self.node_selector,
            tolerations=self.tolerations, image_pull_policy=self.image_pull_policy,
            store=self._given_store, api=self._given_api, submit_workers=self.submit_workers,
            watch_timeout_seconds=self.watch_timeout_seconds,
        )

    def __repr__(self) -> str:
        return f"KubernetesTaskRunner(namespace={self.namespace!r}, image={self.image!r})"

    # -- configuration ---------------------------------------------------------------------------

    @property
    def api(self) -> TaskRunApi:
        with self._lock:
            if self._api is None:
                self._api = TaskRunApi(self.kubeconfig, self.context)
            return self._api

    def resolved_namespace(self) -> str:
        if self._resolved_namespace is None:
            self._resolved_namespace = self.api.default_namespace()
        return self._resolved_namespace

    def _views(self) -> StorageViews:
        if self._storage_views is None:
            self._storage_views = storage_views(self.storage)
        return self._storage_views

    def storage_spec(self) -> StorageSpec | None:
        """The TaskRuns' ``spec.storage``: the given storage, else ``FLOWPOD_S3_*`` (with
        ``FLOWPOD_S3_CLUSTER_ENDPOINT`` as the endpoint when set), else None (the operator's
        default storage; then ``store=`` must point at the same place)."""
        return self._views().spec

    def result_store(self) -> ResultStore:
        """Where this process writes payloads and reads results (``FLOWPOD_S3_ENDPOINT`` when
        the storage comes from the environment)."""
        if self._store is None:
            spec = self._views().local
            if spec is None:
                from flowpod.exceptions import ConfigurationError

                raise ConfigurationError(
                    "KubernetesTaskRunner needs to know the result store the task pods use: pass "
                    "storage={'bucket': ..., 'endpoint': ...} (or a StorageSpec), set "
                    "FLOWPOD_S3_BUCKET (and FLOWPOD_S3_ENDPOINT / FLOWPOD_S3_PREFIX), or pass "
                    "store=<ResultStore> pointing at the operator's default storage"
                )
            from flowpod._storage.s3 import S3ResultStore

            self._store = S3ResultStore.from_storage(spec)
        return self._store

    # -- submitting ----------------------------------------------------------------------------

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.submit_workers,
                                                thread_name_prefix="flowpod-k8s-submit")
            return self._pool

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Any = None,
    ) -> FlowpodFuture[Any]:
        import flowpod._engine.task_engine as _task_engine
        sub = _task_engine.prepare_submission(task, parameters, wait_for)
        future: KubernetesTaskFuture[Any] = KubernetesTaskFuture(sub.task_run)
        with self._lock:
            self._all.append(future)
        context = contextvars.copy_context()
        self._executor().submit(context.run, self._create, sub, future)
        return future

    def _create(self, sub: Submission, future: KubernetesTaskFuture[Any]) -> None:
        """Resolve inputs, write the payload, create the TaskRun (in a submit worker)."""
        from flowpod._engine.inputs import resolve_inputs
        from flowpod.exceptions import UpstreamTaskError
        from flowpod.states import NotReady, exception_to_failed_state

        try:
            params = resolve_inputs(sub.parameters, sub.wait_for)
        except UpstreamTaskError as exc:
            self._finish(future, NotReady(message=str(exc), data=exc))
            return
        sub.task_run.parameters = params
        name = None
        try:
            name, manifest = self._prepare(sub, params)
            future.taskrun_name = name
            with self._lock:
                self._futures[name] = future
            self._ensure_watch()
            self.api.create(self.resolved_namespace(), manifest)
        except Exception as exc:  # noqa: BLE001 - reported through the future
            if name is not None:
                with self._lock:
                    self._futures.pop(name, None)
            self._finish(future, exception_to_failed_state(
                exc, "Could not submit the task run to Kubernetes:"))

    def _prepare(self, sub: Submission, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        import flowpod._engine.task_engine as _task_engine
        from flowpod._kube.payloads import FlowRunInfo, TaskPayload, write_payload

        task, task_run, flow_ctx = sub.task, sub.task_run, sub.flow_ctx
        log_prints = _task_engine.effective_log_prints(task, flow_ctx, sub.parent)
        if task.task_run_name is not None and not sub.named:
            _task_engine.apply_run_name(task, task_run, params)
        cache_key = _task_engine.compute_cache_key(task, task_run, params, flow_ctx, log_prints)
        task_run.cache_key = cache_key
        retries = _task_engine._retries(task)
        delays = _task_engine._delays(task, retries) if retries else []
        serializer = _task_engine._serializer(task)
        expiration = task.cache_expiration.total_seconds() if task.cache_expiration else None
        flow_info = None
        if flow_ctx is not None:
            flow_run = flow_ctx.flow_run
            flow_info = FlowRunInfo(
                id=str(flow_run.id), name=flow_run.name, flow_name=flow_run.flow_name,
                parameters=dict(flow_run.parameters), tags=list(flow_run.tags),
                persist_result=flow_ctx.persist_result,
                result_serializer=flow_ctx.flow.result_serializer,
            )
        payload = TaskPayload(
            task=task, parameters=params, run_name=task_run.name, task_run_id=str(task_run.id),
            tags=list(task_run.tags), log_prints=log_prints, flow_run=flow_info,
            parent_task_run_id=(str(task_run.parent_task_run_id)
                                if task_run.parent_task_run_id else None),
            cache_key=cache_key, cache_expiration_seconds=expiration,
            result_serializer=serializer, retries=retries,
        )
        namespace = self.resolved_namespace()
        name = taskrun_object_name(task_run.name)
        payload_ref = write_payload(self.result_store(), namespace, name, payload)
        return name, self._manifest(name, namespace, task, task_run, payload_ref, cache_key,
                                    expiration, retries, delays)

    def _manifest(self, name: str, namespace: str, task: Task[Any, Any], task_run: TaskRun,
                  payload_ref: str, cache_key: str | None, expiration: float | None,
                  retries: int, delays: list[float]) -> dict[str, Any]:
        from flowpod._contract.resources import TaskRunSpec

        env: Any = self.env
        if isinstance(env, Mapping):
            env = [{"name": key, "value": value} for key, value in env.items()]
        flowrun_name = os.environ.get(FLOWRUN_NAME_VAR) or None
        flowrun_uid = os.environ.get(FLOWRUN_UID_VAR) or None
        spec = TaskRunSpec.model_validate({
            "taskName": task.name,
            "taskKey": task.task_key,
            "runName": task_run.name,
            "flowRun": flowrun_name,
            "cacheKey": cache_key,
            "cacheExpirationSeconds": expiration,
            "refreshCache": bool(task.refresh_cache),
            "payload": payload_ref,
            "timeoutSeconds": task.timeout_seconds or None,
            "retries": retries,
            "retryDelaySeconds": delays,
            "retryJitterFactor": task.retry_jitter_factor,
            "storage": self.storage_spec(),
            "image": self.image,
            "imagePullPolicy": self.image_pull_policy,
            "serviceAccountName": self.service_account_name,
            "resources": dict(self.resources) if self.resources else None,
            "env": list(env) if env else None,
            "nodeSelector": dict(self.node_selector) if self.node_selector else None,
            "tolerations": [dict(t) for t in self.tolerations] if self.tolerations else None,
        })
        labels = {RUNNER_LABEL: self.runner_id, TASK_LABEL: label_value(task.name)}
        owners = None
        if flowrun_name and flowrun_uid:
            from flowpod._contract.resources import API_VERSION

            labels[FLOWRUN_LABEL] = label_value(flowrun_name)
            owners = [{"apiVersion": API_VERSION, "kind": "FlowRun", "name": flowrun_name,
                       "uid": flowrun_uid, "controller": False, "blockOwnerDeletion": True}]
        return spec.to_manifest(name, namespace, labels=labels, owner_references=owners)

    # -- watching --------------------------------------------------------------------------------

    def _ensure_watch(self) -> None:
        with self._lock:
            if self._watcher is not None:
                return
            self._watcher = threading.Thread(target=self._watch_loop, args=(self._stop,),
                                             daemon=True,
                                             name=f"flowpod-k8s-watch-{self.runner_id}")
            self._watcher.start()

    def _watch_loop(self, stop: threading.Event) -> None:
        namespace = self.resolved_namespace()
        selector = f"{RUNNER_LABEL}={self.runner_id}"
        backoff = 0.2
        while not stop.is_set():
            try:
                items, version = self.api.list(namespace, selector)
                for obj in items:
                    self._on_object("MODIFIED", obj)
                while not stop.is_set():
                    for kind, obj in self.api.watch(namespace, selector, version,
                                                    self.watch_timeout_seconds):
                        version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                        if kind != "BOOKMARK":
                            self._on_object(kind, obj)
                        if stop.is_set():
                            return
                    backoff = 0.2
            except WatchExpired:
                continue
            except Exception as exc:  # noqa: BLE001 - the API server restarts, networks drop
                if stop.is_set():
                    return
                logger.warning("Watching TaskRuns in %r failed (%r); retrying in %.1f s",
                               namespace, exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _on_object(self, kind: str, obj: Mapping[str, Any]) -> None:
        name = str(obj.get("metadata", {}).get("name", ""))
        with self._lock:
            future = self._futures.get(name)
        if future is None:
            return
        status = obj.get("status") or {}
        state_name = status.get("state")
        if kind == "DELETED" and state_name not in FINAL_STATES:
            from flowpod.states import Crashed

            self._settle(name, future, lambda: Crashed(
                message=f"TaskRun {name} was deleted before it finished"))
            return
        if state_name in FINAL_STATES:
            snapshot = dict(status)
            self._settle(name, future, lambda: self._final_from_status(name, future, snapshot))
        elif state_name and state_name != future.task_run.state_name:
            future._observe(_transient_state(str(state_name), status))

    def _settle(self, name: str, future: KubernetesTaskFuture[Any],
                build: Callable[[], State[Any]]) -> None:
        with self._lock:
            if self._futures.pop(name, None) is None:
                return  # already being settled (a repeated event)
        # Reading the result may take a while (a big object): not on the watch thread.
        self._executor().submit(lambda: self._finish(future, _safely(build, name)))

    def _finish(self, future: KubernetesTaskFuture[Any], state: State[Any]) -> None:
        from flowpod._engine.attempts import tlog

        if future._resolve(state):
            from flowpod.states import StateType

            level = logging.INFO if state.type is StateType.COMPLETED else logging.ERROR
            tlog(future.task_run, level, "Finished in state %s", state)

    def _final_from_status(self, name: str, future: KubernetesTaskFuture[Any],
                           status: Mapping[str, Any]) -> State[Any]:
        from flowpod._storage.run_files import read_exception, read_outcome, read_result
        from flowpod.states import State, StateType

        state_name = str(status["state"])
        message = status.get("message")
        store = self.result_store()
        if state_name in ("Completed", "Cached"):
            ref = status.get("resultRef")
            if not ref:
                raise RuntimeError(f"TaskRun {name} is {state_name} but has no resultRef")
            value = read_result(store, ref, self._serializer_for(store, name, ref, status))
            done: State[Any] = State(StateType.COMPLETED, name=state_name, message=message,
                                     data=value)
            if future.task_run.cache_key:
                done.state_details.cache_key = future.task_run.cache_key
            return done
        namespace = self.resolved_namespace()
        attempt = int(status.get("attempt") or 0)
        outcome = read_outcome(store, namespace, name, attempt) if attempt >= 1 else None
        exc: BaseException | None = None
        if outcome is not None and outcome.exception_ref:
            exc = read_exception(store, outcome.exception_ref)
        if exc is None and state_name == "TimedOut":
            from flowpod.exceptions import TaskRunTimeoutError

            exc = TaskRunTimeoutError(message or f"TaskRun {name} exceeded its timeout")
        kind = {"Crashed": StateType.CRASHED, "Cancelled": StateType.CANCELLED}.get(
            state_name, StateType.FAILED)
        return State(kind, name=state_name, message=message, data=exc)

    def _serializer_for(self, store: ResultStore, name: str, ref: str,
                        status: Mapping[str, Any]) -> str:
        if ref.startswith("cache/"):
            from flowpod._contract.records import CacheRecord

            try:
                record_key = ref[: -len(".value")] + ".json" if ref.endswith(".value") else ref
                return CacheRecord.from_json(store.get(record_key)).serializer
            except Exception:  # noqa: BLE001 - fall back to the outcome / default
                pass
        from flowpod._storage.run_files import read_outcome

        attempt = int(status.get("attempt") or 0)
        if attempt >= 1:
            outcome = read_outcome(store, self.resolved_namespace(), name, attempt)
            if outcome is not None and outcome.serializer:
                return outcome.serializer
        return "pickle"

    # -- lifetime --------------------------------------------------------------------------------

    def __enter__(self) -> KubernetesTaskRunner:
        return self

    def __exit__(self, exc_type: object = None, *exc_info: object) -> None:
        with self._lock:
            futures = list(self._all)
        if exc_type is None:
            # As with the thread pool: a flow that returns waits for the runs it submitted.
            for future in futures:
                future.wait()
        with self._lock:
            # The watch thread holds the old event; a later use of this runner gets a new one.
            self._stop.set()
            self._stop = threading.Event()
            pool, self._pool = self._pool, None
            self._watcher = None
        if pool is not None:
            pool.shutdown(wait=exc_type is None, cancel_futures=exc_type is not None)
        if self._given_api is None and self._api is not None:
            self._api.close()
            self._api = None


def _transient_state(name: str, status: Mapping[str, Any]) -> State[Any]:
    from flowpod.states import AwaitingRetry, Pending, Retrying, Running

    message = status.get("message")
    if name == "AwaitingRetry":
        return AwaitingRetry(message=message)
    if name == "Retrying":
        return Retrying(message=message)
    if name == "Running":
        return Running(message=message)
    return Pending(message=message)


def _safely(build: Callable[[], State[Any]], name: str) -> State[Any]:
    try:
        return build()
    except Exception as exc:  # noqa: BLE001 - the future must resolve, with the reason
        from flowpod.states import Crashed

        return Crashed(message=f"TaskRun {name} finished, but its result could not be read: "
                               f"{type(exc).__name__}: {exc}", data=exc)
