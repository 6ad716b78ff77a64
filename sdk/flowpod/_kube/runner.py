"""``KubernetesTaskRunner``: each ``.submit()`` / ``.map()`` in a flow becomes a TaskRun.

For each submitted run the runner resolves upstream futures in a submit worker, writes the
payload and creates the TaskRun (``flowpod._kube.taskruns``). One watch per runner follows all
of its TaskRuns (label ``flowpod.dev/runner``); a TaskRun that reaches a final state resolves
its future (``flowpod._kube.futures``) with the state read back from the store
(``flowpod._kube.results``); while a run cannot progress, the watch logs the operator's
``status.reason`` and message once per change, as a WARNING of that task run. Before the first
TaskRun the runner checks once that the cluster and the store answer
(``flowpod._kube.preflight``): a broken configuration fails every run with one
ConfigurationError, reported once. Options live in one ``RunnerOptions`` value
(``flowpod._kube.options``); every Kubernetes API call goes through ``TaskRunApi``.

In a flow pod the runner follows its FlowRun's TaskRuns (label ``flowpod.dev/flowrun``) and names
them by their place in the flow (``flowpod._kube.taskruns.FlowPodRun``). A flow pod that resumes
one the platform took away finds the TaskRuns that one created under the same names and adopts
them - their futures follow the existing TaskRun, finished or not - instead of running them
again; a TaskRun of that name that belongs to another task (the flow submitted in another order)
is left alone and the submission gets a fresh name.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from flowpod._contract.labels import FLOWRUN_LABEL, RUNNER_LABEL, label_value
from flowpod._contract.states import FINAL_STATES
from flowpod._engine.attempts import tlog
from flowpod._engine.inputs import resolve_inputs
from flowpod._engine.task_engine import prepare_submission
from flowpod._kube.futures import KubernetesTaskFuture
from flowpod._kube.options import OPTION_NAMES, RunnerOptions
from flowpod._kube.payloads import write_payload
from flowpod._kube.preflight import Verdict, check_cluster, check_store
from flowpod._kube.results import final_state, safely, transient_state
from flowpod._kube.storage_views import StorageViews, local_store, storage_views
from flowpod._kube.taskrun_api import AlreadyExists, TaskRunApi, WatchExpired
from flowpod._kube.taskruns import (
    FlowPodRun,
    PreparedTaskRun,
    next_submission,
    prepare_taskrun,
    taskrun_object_name,
)
from flowpod.exceptions import UpstreamTaskError
from flowpod.states import Crashed, NotReady, StateType, exception_to_failed_state
from flowpod.task_runners import TaskRunner

if TYPE_CHECKING:
    from flowpod._contract.pod_settings import StorageSpec
    from flowpod._engine.task_engine import Submission
    from flowpod._storage import ResultStore
    from flowpod.futures import FlowpodFuture
    from flowpod.states import State
    from flowpod.tasks import Task

__all__ = ["KubernetesTaskRunner"]

logger = logging.getLogger("flowpod.kubernetes")


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
    replaces the API access (tests, custom setups). pending_timeout_seconds: how long an attempt
    may wait to start before the operator ends it Crashed (PendingTimeout). oom_memory_factor and
    oom_max_memory (both or neither): after an OOMKilled attempt, the next one gets the memory
    limit times the factor, up to the max. Each option is documented on
    ``RunnerOptions``; ``runner.<option>`` reads it.
    """
    options: RunnerOptions

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
        pending_timeout_seconds: float | None = None,
        oom_memory_factor: float | None = None,
        oom_max_memory: str | None = None,
    ) -> None:
        self.options = RunnerOptions(
            namespace, image, storage, kubeconfig=kubeconfig, context=context, env=env,
            resources=resources, service_account_name=service_account_name,
            node_selector=node_selector, tolerations=tolerations,
            image_pull_policy=image_pull_policy, store=store, api=api,
            submit_workers=submit_workers, watch_timeout_seconds=watch_timeout_seconds,
            pending_timeout_seconds=pending_timeout_seconds,
            oom_memory_factor=oom_memory_factor, oom_max_memory=oom_max_memory,
        )
        self._reset()

    @classmethod
    def from_options(cls, options: RunnerOptions) -> KubernetesTaskRunner:
        """A fresh runner with ``options``."""
        runner = cls.__new__(cls)
        runner.options = options
        runner._reset()
        return runner

    def __getattr__(self, name: str) -> Any:
        # runner.image, runner.namespace, ...: the options (only reached for missing attributes).
        if name in OPTION_NAMES and "options" in self.__dict__:
            return getattr(self.options, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _reset(self) -> None:
        self.runner_id = uuid.uuid4().hex[:12]
        self._store: ResultStore | None = self.options.store
        self._api: TaskRunApi | None = self.options.api
        self._resolved_namespace: str | None = self.options.namespace
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[str, KubernetesTaskFuture[Any]] = {}
        self._all: list[KubernetesTaskFuture[Any]] = []
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self._storage_views: StorageViews | None = None
        self._verdict = Verdict()
        self._notices: dict[str, tuple[str, str | None]] = {}
        self._flow_pod: FlowPodRun | None = FlowPodRun.current()

    def __getstate__(self) -> dict[str, Any]:
        # Threads, locks and clients stay behind; the copy starts fresh where it lands.
        return {"options": self.options.portable()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.options = state["options"]
        self._reset()

    def duplicate(self) -> KubernetesTaskRunner:
        return type(self).from_options(replace(self.options))

    def __repr__(self) -> str:
        return (f"KubernetesTaskRunner(namespace={self.options.namespace!r}, "
                f"image={self.options.image!r})")

    # -- configuration ---------------------------------------------------------------------------

    @property
    def api(self) -> TaskRunApi:
        with self._lock:
            if self._api is None:
                self._api = TaskRunApi(self.options.kubeconfig, self.options.context)
            return self._api

    def resolved_namespace(self) -> str:
        if self._resolved_namespace is None:
            self._resolved_namespace = self.api.default_namespace()
        return self._resolved_namespace

    def _views(self) -> StorageViews:
        if self._storage_views is None:
            self._storage_views = storage_views(self.options.storage)
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
            self._store = local_store(
                self._views().local,
                "KubernetesTaskRunner needs to know the result store the task pods use: pass "
                "storage={'bucket': ..., 'endpoint': ...} (or a StorageSpec), set "
                "FLOWPOD_S3_BUCKET (and FLOWPOD_S3_ENDPOINT / FLOWPOD_S3_PREFIX), or pass "
                "store=<ResultStore> pointing at the operator's default storage",
            )
        return self._store

    # -- submitting ----------------------------------------------------------------------------

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.options.submit_workers,
                                                thread_name_prefix="flowpod-k8s-submit")
            return self._pool

    def submit(self, task: Task[Any, Any], parameters: dict[str, Any],
               wait_for: Any = None) -> FlowpodFuture[Any]:
        submission = prepare_submission(task, parameters, wait_for)
        future: KubernetesTaskFuture[Any] = KubernetesTaskFuture(submission.task_run)
        with self._lock:
            self._all.append(future)
        # Counted here, in the order the flow submits, not in the workers' order.
        sequence = next_submission() if self._flow_pod is not None else None
        self._executor().submit(contextvars.copy_context().run, self._create, submission, future,
                                sequence)
        return future

    def _selector(self) -> str:
        """The TaskRuns this runner follows: its FlowRun's in a flow pod (a resumed flow pod
        adopts TaskRuns an earlier one created), else its own."""
        if self._flow_pod is not None:
            return f"{FLOWRUN_LABEL}={label_value(self._flow_pod.name)}"
        return f"{RUNNER_LABEL}={self.runner_id}"

    def check_configuration(self) -> None:
        """Check once that the cluster and the result store answer (``flowpod._kube.preflight``);
        ConfigurationError naming what failed. Later calls repeat the first answer."""
        error, _ = self._verdict.check(self._check_configuration)
        if error is not None:
            raise error

    def _check_configuration(self) -> None:
        selector = f"{RUNNER_LABEL}={self.runner_id}"

        def list_taskruns() -> object:
            # Matches nothing yet: the config loads, the API answers, TaskRuns exist there.
            return self.api.list(self.resolved_namespace(), selector)

        check_cluster(list_taskruns, "taskruns", lambda: self._resolved_namespace,
                      "KubernetesTaskRunner cannot use the cluster")
        namespace = self.resolved_namespace()
        store = self.result_store()
        check_store(store, f"runs/{namespace}/.flowpod-check-{self.runner_id}",
                    f"KubernetesTaskRunner cannot use the result store {store!r}")

    def _create(self, sub: Submission, future: KubernetesTaskFuture[Any],
                sequence: int | None = None) -> None:
        """Resolve inputs, write the payload, create the TaskRun (in a submit worker)."""
        error, first = self._verdict.check(self._check_configuration)
        if error is not None:
            # One report for the whole runner: the first run logs it, the others only fail.
            state = exception_to_failed_state(error, "Could not submit the task run:")
            if first:
                self._finish(future, state)
            else:
                future._resolve(state)
            return
        try:
            params = resolve_inputs(sub.parameters, sub.wait_for)
        except UpstreamTaskError as exc:
            self._finish(future, NotReady(message=str(exc), data=exc))
            return
        sub.task_run.parameters = params
        name = None
        try:
            prepared = prepare_taskrun(sub, params, self, self._flow_pod, sequence)
            name = prepared.name
            self._follow(name, future, prepared.task_key)
            self._place(prepared, future)
        except Exception as exc:  # noqa: BLE001 - reported through the future
            with self._lock:
                self._futures.pop(future.taskrun_name or "", None)
            self._finish(future, exception_to_failed_state(
                exc, "Could not submit the task run to Kubernetes:"))

    def _follow(self, name: str, future: KubernetesTaskFuture[Any], task_key: str) -> None:
        """Route the watch's events of TaskRun ``name`` running ``task_key`` to ``future``
        (before it exists)."""
        future.taskrun_name = name
        future.task_key = task_key
        with self._lock:
            self._futures[name] = future
        self._ensure_watch()

    def _place(self, prepared: PreparedTaskRun, future: KubernetesTaskFuture[Any]) -> None:
        """Write the payload and create the TaskRun - or adopt the one an earlier flow pod of
        this series created under the same name."""
        namespace = prepared.namespace
        if self._flow_pod is not None and self._flow_pod.resuming:
            existing = self.api.get_taskrun(namespace, prepared.name)
            if existing is not None:
                renamed = self._adopt(prepared, existing, future)
                if renamed is None:
                    return
                prepared = renamed
        write_payload(self.result_store(), namespace, prepared.name, prepared.payload)
        try:
            self.api.create(namespace, prepared.manifest)
        except AlreadyExists:
            existing = self.api.get_taskrun(namespace, prepared.name)
            if existing is None:
                raise
            renamed = self._adopt(prepared, existing, future)
            if renamed is None:
                return
            write_payload(self.result_store(), namespace, renamed.name, renamed.payload)
            self.api.create(namespace, renamed.manifest)

    def _adopt(self, prepared: PreparedTaskRun, existing: Mapping[str, Any],
               future: KubernetesTaskFuture[Any]) -> PreparedTaskRun | None:
        """Follow ``existing`` as this submission's TaskRun (None), or - when it runs another
        task - return the submission under a fresh name, already followed."""
        spec = existing.get("spec") or {}
        state = (existing.get("status") or {}).get("state") or "not started"
        if spec.get("taskKey") == prepared.task_key:
            tlog(future.task_run, logging.INFO,
                 "Adopted TaskRun %s (%s), created by an earlier pod of this flow run",
                 prepared.name, state)
            self._on_object("MODIFIED", existing)
            return None
        renamed = prepared.renamed(taskrun_object_name(future.task_run.name))
        tlog(future.task_run, logging.INFO,
             "TaskRun %s belongs to task %r: the flow submitted its tasks in another order than "
             "the flow pod it resumes, so this one runs afresh as %s", prepared.name,
             spec.get("taskName"), renamed.name)
        with self._lock:
            self._futures.pop(prepared.name, None)
        self._follow(renamed.name, future, renamed.task_key)
        return renamed

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
        selector = self._selector()
        backoff = 0.2
        while not stop.is_set():
            try:
                items, version = self.api.list(namespace, selector)
                for obj in items:
                    self._on_object("MODIFIED", obj)
                while not stop.is_set():
                    for kind, obj in self.api.watch(namespace, selector, version,
                                                    self.options.watch_timeout_seconds):
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
        task_key = (obj.get("spec") or {}).get("taskKey")
        if future.task_key is not None and task_key is not None and task_key != future.task_key:
            # Another task's TaskRun under this name (a resumed flow pod submitting in another
            # order): _place renames this submission; the stranger's result is not its result.
            return
        status = obj.get("status") or {}
        state_name = status.get("state")
        if kind == "DELETED" and state_name not in FINAL_STATES:
            self._settle(name, future, lambda: Crashed(
                message=f"TaskRun {name} was deleted before it finished"))
            return
        if state_name in FINAL_STATES:
            snapshot = dict(status)
            self._settle(name, future, lambda: final_state(
                self.result_store(), self.resolved_namespace(), name, future.task_run, snapshot))
        elif state_name:
            if state_name != future.task_run.state_name:
                future._observe(transient_state(str(state_name), status))
            self._report_reason(name, future, str(state_name), status)

    def _report_reason(self, name: str, future: KubernetesTaskFuture[Any], state_name: str,
                       status: Mapping[str, Any]) -> None:
        """One WARNING per new ``status.reason`` / ``message`` of a run that is not final (the
        operator says why it cannot progress), and one INFO when it runs again after that."""
        reason = status.get("reason")
        message = status.get("message")
        with self._lock:
            before = self._notices.get(name)
            if reason:
                notice = (str(reason), str(message) if message else None)
                if notice == before:
                    return
                self._notices[name] = notice
            elif before is None or state_name != "Running":
                return
            else:
                del self._notices[name]
        if reason or before is None:
            tlog(future.task_run, logging.WARNING, "TaskRun %s is %s (%s)%s", name, state_name,
                 reason, f": {message}" if message else "")
        else:
            tlog(future.task_run, logging.INFO, "TaskRun %s is Running (no longer %s)", name,
                 before[0])

    def _settle(self, name: str, future: KubernetesTaskFuture[Any],
                build: Callable[[], State[Any]]) -> None:
        with self._lock:
            self._notices.pop(name, None)
            if self._futures.pop(name, None) is None:
                return  # already being settled (a repeated event)
        # Reading the result may take a while (a big object): not on the watch thread.
        self._executor().submit(lambda: self._finish(future, safely(build, name)))

    def _finish(self, future: KubernetesTaskFuture[Any], state: State[Any]) -> None:
        if future._resolve(state):
            level = logging.INFO if state.type is StateType.COMPLETED else logging.ERROR
            tlog(future.task_run, level, "Finished in state %s", state)

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
        if self.options.api is None and self._api is not None:
            self._api.close()
            self._api = None
