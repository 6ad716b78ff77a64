"""KubernetesTaskRunner against a fake of its own API seam (TaskRunApi).

The fake keeps TaskRuns in memory with resource versions and a replayable event log (so list +
watch behave like the API server's, including an expired watch), and plays the operator: it runs
each attempt in-process with the real pod program (``flowpod.pod._task.run_task``), honours the
cache, retries with the shared retry maths, and publishes the status transitions.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _engine_support import capture_logs

from flowpod import flow, task
from flowpod._contract.resources import TaskRunResource as TaskRunObject
from flowpod._contract.retrying import decide_retry
from flowpod._kube.payloads import read_payload
from flowpod._kube.taskrun_api import AlreadyExists
from flowpod._storage import CacheStore, LocalResultStore, ResultStore
from flowpod.cache_policies import INPUTS, CachePolicy
from flowpod.exceptions import ConfigurationError, UnhashableInputError, UpstreamTaskError
from flowpod.futures import as_completed
from flowpod.kubernetes import (
    RUNNER_LABEL,
    KubernetesTaskFuture,
    KubernetesTaskRunner,
    TaskRunApi,
    WatchExpired,
    taskrun_object_name,
)
from flowpod.pod._task import run_task

NS = "fake-ns"


class FakeApi(TaskRunApi):
    """In-memory TaskRuns + a fake operator running attempts with the real pod program."""

    def __init__(self, store: ResultStore, operate: bool = True) -> None:
        super().__init__()
        self.store = store
        self.operate = operate
        self.objects: dict[str, dict[str, Any]] = {}
        self.log: list[tuple[int, str, dict[str, Any]]] = []
        self.version = 0
        self.cond = threading.Condition()
        self.attempts: dict[str, int] = {}
        self.expire_next_watch = 0
        self.fail_next_watch = 0
        self.fail_create: Exception | None = None
        self.lists = 0
        self.creates = 0

    # -- the seam ----------------------------------------------------------------------------

    def default_namespace(self) -> str:
        return NS

    def create(self, namespace: str, manifest: Any) -> dict[str, Any]:
        if self.fail_create is not None:
            raise self.fail_create
        TaskRunObject.from_object(manifest)  # the manifest must be a valid TaskRun
        obj = copy.deepcopy(dict(manifest))
        name = obj["metadata"]["name"]
        with self.cond:
            if name in self.objects:
                raise AlreadyExists(name)
            self.creates += 1
            self.objects[name] = obj
            self._publish("ADDED", obj)
        if self.operate:
            threading.Thread(target=self._operate, args=(name,), daemon=True).start()
        return obj

    def get_taskrun(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self.cond:
            found = self.objects.get(name)
            return copy.deepcopy(found) if found is not None else None

    def list(self, namespace: str, label_selector: str) -> tuple[list[dict[str, Any]], str]:
        key, _, value = label_selector.partition("=")
        with self.cond:
            self.lists += 1
            items = [copy.deepcopy(o) for o in self.objects.values()
                     if o["metadata"].get("labels", {}).get(key) == value]
            return items, str(self.version)

    def watch(self, namespace: str, label_selector: str, resource_version: str,
              timeout_seconds: int) -> Iterator[tuple[str, dict[str, Any]]]:
        if self.expire_next_watch:
            self.expire_next_watch -= 1
            raise WatchExpired("too old resource version")
        if self.fail_next_watch:
            self.fail_next_watch -= 1
            raise ConnectionError("apiserver went away")
        key, _, value = label_selector.partition("=")
        seen = int(resource_version)
        deadline = time.monotonic() + 0.5  # short server-side timeout: exercise re-watching
        while True:
            with self.cond:
                fresh = [e for e in self.log if e[0] > seen]
                if not fresh:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    self.cond.wait(left)
                    continue
            for version, kind, obj in fresh:
                seen = version
                if obj["metadata"].get("labels", {}).get(key) == value:
                    yield kind, copy.deepcopy(obj)

    # -- fake cluster behaviour --------------------------------------------------------------

    def _publish(self, kind: str, obj: dict[str, Any]) -> None:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.log.append((self.version, kind, copy.deepcopy(obj)))
        self.cond.notify_all()

    def set_status(self, name: str, **fields: Any) -> None:
        with self.cond:
            obj = self.objects[name]
            obj.setdefault("status", {}).update(fields)
            self._publish("MODIFIED", obj)

    def delete(self, name: str) -> None:
        with self.cond:
            obj = self.objects.pop(name)
            self._publish("DELETED", obj)

    def _operate(self, name: str) -> None:
        spec = self.objects[name]["spec"]
        key = spec.get("cacheKey")
        if key and not spec.get("refreshCache"):
            record = CacheStore(self.store).read_record(key)
            if record is not None and not record.is_expired(datetime.now(UTC)):
                self.set_status(name, state="Cached", resultRef=record.result_key, attempt=0)
                return
        attempt = 1
        while True:
            self.attempts[name] = attempt
            self.set_status(name, state="Running" if attempt == 1 else "Retrying",
                            attempt=attempt)
            outcome = run_task(self.store, NS, name, attempt)
            if outcome.completed:
                self.set_status(name, state="Completed", resultRef=outcome.result_ref)
                return
            verdict = decide_retry(attempt, spec.get("retries", 0),
                                   spec.get("retryDelaySeconds", []), None,
                                   condition_allows=outcome.retry_allowed)
            if not verdict.retry:
                self.set_status(name, state=outcome.state, message=outcome.message)
                return
            self.set_status(name, state="AwaitingRetry")
            attempt += 1


@pytest.fixture
def store(tmp_path: Path) -> LocalResultStore:
    return LocalResultStore(tmp_path / "store")


@pytest.fixture
def api(store: LocalResultStore) -> FakeApi:
    return FakeApi(store)


@pytest.fixture
def runner(store: LocalResultStore, api: FakeApi) -> KubernetesTaskRunner:
    return KubernetesTaskRunner(namespace=NS, store=store, api=api)


@task
def add(x: int, y: int) -> int:
    return x + y


@task(retries=2, retry_delay_seconds=[1, 5], retry_jitter_factor=0.5, timeout_seconds=30)
def boom() -> int:
    raise KeyError("missing")


calls: list[int] = []


def counting_key(ctx: Any, params: dict[str, Any]) -> str:
    return f"fixed-{params['x']}"


@task(cache_key_fn=counting_key)
def cached_square(x: int) -> int:
    return x * x


def test_submit_runs_the_task_on_the_cluster(runner: KubernetesTaskRunner, api: FakeApi,
                                             store: LocalResultStore) -> None:
    @flow(task_runner=runner)
    def pipeline() -> tuple[int, str]:
        future = add.submit(1, 2)
        return future.result(timeout=30), future.state.name

    assert pipeline() == (3, "Completed")
    [obj] = api.objects.values()
    spec, meta = obj["spec"], obj["metadata"]
    assert spec["taskName"] == "add" and spec["runName"] == "add-0"
    assert spec["payload"] == f"runs/{NS}/{meta['name']}/payload"
    assert "cacheKey" not in spec
    assert meta["labels"][RUNNER_LABEL] and meta["labels"]["flowpod.dev/task"] == "add"
    payload = read_payload(store, NS, meta["name"])
    assert payload.parameters == {"x": 1, "y": 2}
    assert payload.flow_run is not None and payload.flow_run.flow_name == "pipeline"


def test_retry_settings_are_resolved_into_the_spec(runner: KubernetesTaskRunner,
                                                   api: FakeApi) -> None:
    api.operate = False

    @flow(task_runner=runner)
    def pipeline() -> None:
        future = boom.submit()
        name = _wait(lambda: next(iter(api.objects), None), "TaskRun creation")
        spec = api.objects[name]["spec"]
        assert spec["retries"] == 2
        assert spec["retryDelaySeconds"] == [1.0, 5.0]
        assert spec["retryJitterFactor"] == 0.5
        assert spec["timeoutSeconds"] == 30
        api.set_status(name, state="Crashed", message="pod vanished", attempt=1)
        future.wait(30)

    pipeline()


def test_map_creates_concurrent_taskruns(runner: KubernetesTaskRunner, api: FakeApi) -> None:
    @flow(task_runner=runner)
    def pipeline() -> list[int]:
        return add.map(range(8), 100).result(timeout=60)

    assert pipeline() == [100 + i for i in range(8)]
    assert len(api.objects) == 8
    assert sorted(o["spec"]["runName"] for o in api.objects.values()) == sorted(
        f"add-{i}" for i in range(8))


def test_failing_task_fails_the_flow_with_its_own_exception(runner: KubernetesTaskRunner,
                                                            api: FakeApi) -> None:
    @flow(task_runner=runner)
    def pipeline() -> int:
        return boom.with_options(retry_delay_seconds=0).submit().result(timeout=60)

    with pytest.raises(KeyError, match="missing"):
        pipeline()
    [name] = api.objects
    assert api.attempts[name] == 3  # retries=2: three attempts before the final Failed


@task
def fails_below_zero(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x


def test_a_map_on_the_cluster_ends_with_the_summary_line(runner: KubernetesTaskRunner) -> None:
    from _engine_support import capture_logs

    @flow(task_runner=runner)
    def pipeline() -> None:
        fails_below_zero.map([*range(9), -1, -2]).wait(timeout=60)

    with capture_logs() as logs:
        state = pipeline(return_state=True)
    summaries = [m for m in logs.messages if m.startswith("11 task runs")]
    assert summaries == ["11 task runs: 9 Completed, 2 Failed (see above)"]
    # Failed runs on the cluster count for the flow's final state as they do locally.
    assert state.name == "Completed" and state.message != "All states completed."


def test_retry_condition_stops_retries(runner: KubernetesTaskRunner, api: FakeApi) -> None:
    stubborn = boom.with_options(retry_delay_seconds=0,
                                 retry_condition_fn=lambda t, r, s: False)

    box: list[Any] = []

    @flow(task_runner=runner)
    def pipeline() -> None:
        future = stubborn.submit()
        future.wait(30)
        box.append(future.state)

    pipeline()
    [state] = box
    assert state.name == "Failed" and isinstance(state.data, KeyError)
    assert list(api.attempts.values()) == [1]


def test_cache_hit_runs_no_attempt(runner: KubernetesTaskRunner, api: FakeApi) -> None:
    @flow(task_runner=runner)
    def pipeline() -> Any:
        future = cached_square.submit(7)
        return future.result(timeout=30), future.state

    value, state = pipeline()
    assert (value, state.name) == (49, "Completed")
    value, state = pipeline()
    assert (value, state.name) == (49, "Cached")
    assert state.state_details.cache_key == "fixed-7"
    assert [o["spec"]["cacheKey"] for o in api.objects.values()] == ["fixed-7", "fixed-7"]
    assert len(api.attempts) == 1  # only the first run had a pod


class _RefusingInputs(CachePolicy):
    """Hashes like INPUTS, but with hashing refused for the input 'handle' (the way a lock or
    a socket refuses it; a real lock could not travel in the payload at all)."""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        if "handle" in inputs:
            raise UnhashableInputError(
                f"Task {task_ctx.task.name!r} cannot compute its cache key: the input 'handle' "
                "cannot be hashed. Either pass cache_key_fn= a function that leaves it out, or "
                "turn caching off for this task with cache_policy=NO_CACHE."
            )
        return INPUTS.compute_key(task_ctx, inputs, flow_parameters)


@task(cache_policy=_RefusingInputs())
def with_handle(handle: str, x: int) -> int:
    return x + 1


def test_an_unhashable_input_submits_the_run_uncached(runner: KubernetesTaskRunner,
                                                      api: FakeApi) -> None:
    from _engine_support import capture_logs

    @flow(task_runner=runner)
    def pipeline() -> Any:
        future = with_handle.submit("h", 1)
        return future.result(timeout=30), future.state.name

    with capture_logs() as logs:
        assert pipeline() == (2, "Completed")
        assert pipeline() == (2, "Completed")  # no cache record: the second run runs again
    errors = [line for r, line in zip(logs.records, logs.lines, strict=True)
              if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert all("Task run 'with_handle-0'" in e and "the input 'handle'" in e for e in errors)
    assert all("cache_key_fn=" in e and "NO_CACHE" in e for e in errors)
    assert ["cacheKey" in o["spec"] for o in api.objects.values()] == [False, False]
    assert len(api.attempts) == 2  # both runs had a pod


def test_a_cache_hit_reads_the_value_with_the_records_serializer(
        runner: KubernetesTaskRunner, store: LocalResultStore) -> None:
    as_json = cached_square.with_options(result_serializer="json",
                                         cache_key_fn=lambda ctx, params: "json-3")

    @flow(task_runner=runner)
    def pipeline() -> Any:
        future = as_json.submit(3)
        return future.result(timeout=30), future.state

    assert pipeline()[0] == 9
    record = CacheStore(store).read_record("json-3")
    assert record is not None and record.serializer == "json"
    value, state = pipeline()
    assert (value, state.name) == (9, "Cached")


def test_futures_as_arguments_are_resolved_first(runner: KubernetesTaskRunner) -> None:
    @flow(task_runner=runner)
    def pipeline() -> int:
        first = add.submit(1, 1)
        return add.submit(first, 10).result(timeout=30)

    assert pipeline() == 12


def test_failed_upstream_makes_the_run_not_ready(runner: KubernetesTaskRunner,
                                                 api: FakeApi) -> None:
    box: list[Any] = []

    @flow(task_runner=runner)
    def pipeline() -> None:
        bad = boom.with_options(retries=0).submit()
        future = add.submit(bad, 1)
        future.wait(30)
        box.append(future.state)

    pipeline()
    [state] = box
    assert state.name == "NotReady" and isinstance(state.data, UpstreamTaskError)
    assert len(api.objects) == 1  # no TaskRun for the run that could not start


def test_the_watch_recovers_from_expiry_and_errors(runner: KubernetesTaskRunner,
                                                   api: FakeApi) -> None:
    api.operate = False  # the TaskRun finishes only once both broken watches were recovered
    api.expire_next_watch = 1
    api.fail_next_watch = 1

    @flow(task_runner=runner)
    def pipeline() -> int:
        future = add.submit(2, 3)
        name = _wait(lambda: next(iter(api.objects), None), "TaskRun creation")
        # The first list, then one re-list after each broken watch
        # (list 1 is the configuration check before the first TaskRun)
        _wait(lambda: api.lists >= 4, "a re-list after each broken watch")
        threading.Thread(target=api._operate, args=(name,), daemon=True).start()
        return future.result(timeout=30)

    assert pipeline() == 5


def test_one_watch_serves_all_futures(runner: KubernetesTaskRunner, api: FakeApi) -> None:
    @flow(task_runner=runner)
    def pipeline() -> list[int]:
        futures = [add.submit(i, i) for i in range(5)]
        return sorted(f.result(timeout=30) for f in as_completed(futures, timeout=30))

    before = {t.name for t in threading.enumerate()}
    assert pipeline() == [0, 2, 4, 6, 8]
    watchers = [t for t in threading.enumerate()
                if t.name.startswith("flowpod-k8s-watch") and t.name not in before]
    assert len(watchers) <= 1


def test_deleted_taskrun_is_crashed(runner: KubernetesTaskRunner, api: FakeApi) -> None:
    api.operate = False

    box: list[Any] = []

    @flow(task_runner=runner)
    def pipeline() -> None:
        future = add.submit(1, 2)
        name = _wait(lambda: next(iter(api.objects), None), "TaskRun creation")
        api.set_status(name, state="Running", attempt=1)
        _wait(lambda: future.state.name == "Running", "the Running state to be seen")
        api.delete(name)
        future.wait(30)
        box.append(future.state)

    pipeline()
    [state] = box
    assert state.name == "Crashed" and "was deleted" in state.message


def test_timed_out_without_outcome_raises_a_timeout(runner: KubernetesTaskRunner,
                                                    api: FakeApi) -> None:
    api.operate = False

    @flow(task_runner=runner)
    def pipeline() -> Any:
        future = add.submit(1, 2)
        name = _wait(lambda: next(iter(api.objects), None), "TaskRun creation")
        api.set_status(name, state="TimedOut", attempt=1,
                       message="Pod was active on the node longer than the specified deadline")
        return future.result(timeout=30, raise_on_failure=False)

    exc = pipeline()
    assert isinstance(exc, TimeoutError) and "deadline" in str(exc)


def test_create_errors_fail_the_run_with_the_reason(runner: KubernetesTaskRunner,
                                                    api: FakeApi) -> None:
    api.fail_create = PermissionError("taskruns.flowpod.dev is forbidden")
    state = _state_of_one_submit(runner)
    assert state.name == "Failed"
    assert state.message.startswith("Could not submit the task run to Kubernetes: PermissionError")


def test_without_storage_the_error_says_how_to_configure(api: FakeApi,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWPOD_S3_BUCKET", raising=False)
    runner = KubernetesTaskRunner(namespace=NS, api=api)
    state = _state_of_one_submit(runner)
    assert state.name == "Failed" and "FLOWPOD_S3_BUCKET" in state.message


def _state_of_one_submit(runner: KubernetesTaskRunner) -> Any:
    """The state of ``add.submit(1, 2)`` in a flow on ``runner``, once it is done."""
    box: list[Any] = []

    @flow(task_runner=runner)
    def pipeline() -> None:
        future = add.submit(1, 2)
        future.wait(30)
        box.append(future.state)

    pipeline()
    [state] = box
    return state


def test_pod_settings_reach_the_spec(store: LocalResultStore, api: FakeApi) -> None:
    runner = KubernetesTaskRunner(
        namespace=NS, image="registry.local/etl:1", store=store, api=api,
        env={"MODE": "fast"}, resources={"limits": {"memory": "1Gi"}},
        service_account_name="etl-runner", node_selector={"pool": "cpu"},
        storage={"bucket": "results", "endpoint": "http://minio:9000",
                 "credentialsSecret": {"name": "s3-creds"}},
    )

    @flow(task_runner=runner)
    def pipeline() -> int:
        return add.submit(1, 2).result(timeout=30)

    assert pipeline() == 3
    [obj] = api.objects.values()
    spec = obj["spec"]
    assert spec["image"] == "registry.local/etl:1"
    assert spec["env"] == [{"name": "MODE", "value": "fast"}]
    assert spec["resources"] == {"limits": {"memory": "1Gi"}}
    assert spec["serviceAccountName"] == "etl-runner"
    assert spec["nodeSelector"] == {"pool": "cpu"}
    assert spec["storage"]["bucket"] == "results"
    assert spec["storage"]["credentialsSecret"]["name"] == "s3-creds"


def test_done_callbacks_run_once(runner: KubernetesTaskRunner) -> None:
    seen: list[str] = []
    done = threading.Event()

    @flow(task_runner=runner)
    def pipeline() -> None:
        future = add.submit(1, 2)
        future.add_done_callback(lambda f: (seen.append(f.state.name), done.set()))
        future.wait(30)
        future.add_done_callback(lambda f: seen.append("late"))

    pipeline()
    assert done.wait(5)
    assert seen == ["Completed", "late"]


def test_runner_copies_start_fresh(runner: KubernetesTaskRunner) -> None:
    import pickle

    twin = runner.duplicate()
    assert isinstance(twin, KubernetesTaskRunner) and twin.runner_id != runner.runner_id
    clone = pickle.loads(pickle.dumps(runner))
    assert clone.namespace == NS and clone.runner_id != runner.runner_id


def test_bad_namespace_is_refused() -> None:
    with pytest.raises(ValueError, match="not a valid Kubernetes namespace"):
        KubernetesTaskRunner(namespace="Team_A")


def test_object_names_are_valid_and_short() -> None:
    import random
    import re

    rng = random.Random(1)
    for run_name in ["add-0", "Fetch URL #3", "x" * 200, "---"]:
        name = taskrun_object_name(run_name, rng)
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
        assert len(name) <= 47


def test_future_type(runner: KubernetesTaskRunner) -> None:
    box: list[Any] = []

    @flow(task_runner=runner)
    def pipeline() -> None:
        future = add.submit(1, 2)
        future.wait(30)
        box.append(future)

    pipeline()
    [future] = box
    assert isinstance(future, KubernetesTaskFuture)


def _wait(predicate: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_runner_can_be_used_again_after_exit(runner: KubernetesTaskRunner) -> None:
    # Outside a flow (no flow run context) and twice in a row: each use gets a working watch.
    for x in (1, 2):
        with runner:
            future = runner.submit(add, {"x": x, "y": 1})
            assert future.result(timeout=30) == x + 1


def test_kubeconfig_set_after_the_client_was_imported_is_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kubernetes.config  # noqa: F401 - imported while KUBECONFIG is unset

    from flowpod._kube.taskrun_api import TaskRunApi

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.9:6443'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u, namespace: late}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    api = TaskRunApi()
    assert api._api().configuration.host == "https://127.0.0.9:6443"
    assert api.default_namespace() == "late"


# -- issue 12: pending deadline, OOM memory raise ------------------------------------------------


def test_pending_timeout_and_oom_raise_reach_every_spec(store: LocalResultStore,
                                                        api: FakeApi) -> None:
    runner = KubernetesTaskRunner(namespace=NS, store=store, api=api,
                                  pending_timeout_seconds=90, oom_memory_factor=1.5,
                                  oom_max_memory="4Gi")

    @flow(task_runner=runner)
    def pipeline() -> list[int]:
        return add.map(range(2), 1).result(timeout=30)

    assert pipeline() == [1, 2]
    for obj in api.objects.values():
        assert obj["spec"]["pendingTimeoutSeconds"] == 90
        assert obj["spec"]["oomMemoryRaise"] == {"factor": 1.5, "max": "4Gi"}
    assert runner.pending_timeout_seconds == 90


def test_without_the_new_options_the_spec_leaves_them_to_the_operator(
    runner: KubernetesTaskRunner, api: FakeApi
) -> None:
    assert _state_of_one_submit(runner).name == "Completed"
    [obj] = api.objects.values()
    assert "pendingTimeoutSeconds" not in obj["spec"] and "oomMemoryRaise" not in obj["spec"]


@pytest.mark.parametrize(("options", "message"), [
    ({"oom_memory_factor": 2.0}, "oom_memory_factor=2.0 needs oom_max_memory too"),
    ({"oom_max_memory": "4Gi"}, "oom_max_memory='4Gi' needs oom_memory_factor too"),
    ({"oom_memory_factor": 1.0, "oom_max_memory": "4Gi"}, "must be a number > 1"),
    ({"oom_memory_factor": 2, "oom_max_memory": "lots"}, "memory quantity such as '4Gi'"),
    ({"pending_timeout_seconds": 0}, "pending_timeout_seconds must be a number of seconds > 0"),
    ({"pending_timeout_seconds": "5m"}, "pending_timeout_seconds must be a number"),
])
def test_bad_issue12_options_are_refused_at_construction(options: dict[str, Any],
                                                         message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        KubernetesTaskRunner(namespace=NS, **options)


# -- issue 12: no run waits in silence -----------------------------------------------------------


def test_a_reason_is_logged_once_per_change_as_a_warning(runner: KubernetesTaskRunner,
                                                        api: FakeApi) -> None:
    api.operate = False
    secret = 'Pod add-0-x-1 cannot start: CreateContainerConfigError: secret "flowpod-s3" not found'

    @flow(task_runner=runner)
    def pipeline() -> int:
        future = add.submit(1, 2)
        name = _wait(lambda: next(iter(api.objects), None), "TaskRun creation")
        for _ in range(3):  # the same reason, event after event: one line
            api.set_status(name, state="Pending", reason="CreateContainerConfigError",
                           message=secret)
        api.set_status(name, state="Pending", reason="Unschedulable",
                       message="0/3 nodes are available: 3 Insufficient memory")
        api.set_status(name, state="Pending", reason="Unschedulable",
                       message="0/3 nodes are available: 3 Insufficient memory")
        api.set_status(name, state="Running", reason=None, message=None, attempt=1)
        api.set_status(name, state="Running", attempt=1)
        threading.Thread(target=api._operate, args=(name,), daemon=True).start()
        return future.result(timeout=30)

    with capture_logs() as logs:
        assert pipeline() == 3
    warnings = [r.getMessage() for r in logs.records if r.levelno == logging.WARNING]
    name = next(iter(api.objects))
    assert warnings == [
        f"TaskRun {name} is Pending (CreateContainerConfigError): {secret}",
        f"TaskRun {name} is Pending (Unschedulable): 0/3 nodes are available: "
        "3 Insufficient memory",
    ]
    [record] = [r for r in logs.records if "CreateContainerConfigError" in r.getMessage()]
    assert record.name == "flowpod.task_runs"
    assert getattr(record, "task_run_name", None) == "add-0"
    assert f"TaskRun {name} is Running (no longer Unschedulable)" in logs.messages


class FailingStore(LocalResultStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls = 0

    def exists(self, key: str) -> bool:
        self.calls += 1
        raise ConnectionError("Could not connect to the endpoint URL: http://s3.invalid:9000")


def _configuration_errors(logs: Any, text: str) -> list[str]:
    return [line for line, r in zip(logs.lines, logs.records, strict=True)
            if r.levelno >= logging.ERROR and text in line and r.name == "flowpod.task_runs"]


def test_a_dead_store_fails_a_map_of_200_with_one_error(tmp_path: Path, api: FakeApi) -> None:
    from _engine_support import capture_logs

    store = FailingStore(tmp_path / "store")
    runner = KubernetesTaskRunner(namespace=NS, store=store, api=api)

    @flow(task_runner=runner)
    def pipeline() -> list[int]:
        return add.map(range(200), 1).result(timeout=30)

    started = time.monotonic()
    with capture_logs() as logs, pytest.raises(ConfigurationError) as caught:
        pipeline()
    assert time.monotonic() - started < 10
    assert "KubernetesTaskRunner cannot use the result store" in str(caught.value)
    assert "s3.invalid" in str(caught.value)
    assert store.calls == 1 and api.objects == {}
    assert len(_configuration_errors(logs, "cannot use the result store")) == 1


def test_an_unreachable_cluster_fails_every_run_with_one_error(store: LocalResultStore,
                                                               api: FakeApi) -> None:
    from _engine_support import capture_logs

    class Forbidden(Exception):
        status, reason = 403, "Forbidden"

    calls: list[str] = []

    def refuse(namespace: str, label_selector: str) -> Any:
        calls.append(namespace)
        raise Forbidden()

    api.list = refuse  # type: ignore[method-assign]
    runner = KubernetesTaskRunner(namespace=NS, store=store, api=api)

    @flow(task_runner=runner)
    def pipeline() -> list[Any]:
        futures = add.map(range(200), 1)
        futures.wait(30)
        later = add.submit(1, 2)  # after the verdict: fails alike, without a new check
        later.wait(30)
        return [(f.state.is_failed(), type(f.state.data), f.state.message)
                for f in [*futures, later]]

    with capture_logs() as logs:
        states = pipeline()
    assert len(states) == 201 and all(failed for failed, _, _ in states)
    assert {kind for _, kind, _ in states} == {ConfigurationError}
    assert "may not list taskruns in namespace 'fake-ns' (403 Forbidden)" in states[-1][2]
    assert calls == [NS] and api.objects == {}
    assert len(_configuration_errors(logs, "cannot use the cluster")) == 1


# -- a flow pod resuming a lost one ---------------------------------------------------------------


@task
def triple(x: int) -> int:
    return 3 * x


def _as_flow_pod(monkeypatch: pytest.MonkeyPatch, attempt: int, series: int) -> None:
    """This process plays attempt ``attempt`` of FlowRun 'fr' (uid u-1), continuing ``series``,
    as the pod program sets it up; the flow's submissions are counted from 0 again."""
    import itertools

    import flowpod._kube.taskruns as taskruns

    monkeypatch.setenv(taskruns.FLOWRUN_NAME_VAR, "fr")
    monkeypatch.setenv(taskruns.FLOWRUN_UID_VAR, "u-1")
    monkeypatch.setenv(taskruns.FLOWRUN_ATTEMPT_VAR, str(attempt))
    monkeypatch.setenv(taskruns.FLOWRUN_SERIES_VAR, str(series))
    monkeypatch.setattr(taskruns, "_submissions", itertools.count())


def _tripling(runner: KubernetesTaskRunner, n: int) -> Any:
    @flow(task_runner=runner)
    def tripling() -> list[int]:
        return triple.map(range(n)).result(timeout=60)

    return tripling


def test_a_resumed_flow_pod_adopts_the_taskruns_the_lost_one_created(
        store: LocalResultStore, api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    _as_flow_pod(monkeypatch, attempt=1, series=1)
    assert _tripling(KubernetesTaskRunner(namespace=NS, store=store, api=api), 3)() == [0, 3, 6]
    first = dict(api.attempts)
    assert api.creates == 3
    assert all(o["metadata"]["labels"]["flowpod.dev/flowrun"] == "fr"
               for o in api.objects.values())

    # The pod was lost after three submissions; attempt 2 runs the whole flow (six).
    _as_flow_pod(monkeypatch, attempt=2, series=1)
    with capture_logs(logging.INFO) as logs:
        assert _tripling(KubernetesTaskRunner(namespace=NS, store=store, api=api), 6)() == [
            0, 3, 6, 9, 12, 15]
    assert api.creates == 6, "only the three submissions the lost pod never made are created"
    assert {name: api.attempts[name] for name in first} == first, "no finished task ran again"
    adopted = [r.getMessage() for r in logs.records if "Adopted TaskRun" in r.getMessage()]
    assert len(adopted) == 3 and all("(Completed)" in line for line in adopted)


def test_a_retry_after_the_flow_failed_runs_its_tasks_afresh(
        store: LocalResultStore, api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    _as_flow_pod(monkeypatch, attempt=1, series=1)
    _tripling(KubernetesTaskRunner(namespace=NS, store=store, api=api), 3)()
    _as_flow_pod(monkeypatch, attempt=2, series=2)  # a new series: the flow itself failed
    assert _tripling(KubernetesTaskRunner(namespace=NS, store=store, api=api), 3)() == [0, 3, 6]
    assert api.creates == 6


def test_a_resumed_flow_that_submits_in_another_order_runs_the_stranger_afresh(
        store: LocalResultStore, api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    _as_flow_pod(monkeypatch, attempt=1, series=1)
    _tripling(KubernetesTaskRunner(namespace=NS, store=store, api=api), 1)()
    [lost] = api.objects
    _as_flow_pod(monkeypatch, attempt=2, series=1)
    runner = KubernetesTaskRunner(namespace=NS, store=store, api=api)

    @task(name="triple")
    def impostor(x: int) -> int:
        return x + 100

    @flow(task_runner=runner)
    def other_order() -> int:
        # Submission 0 is now another task of the same name: it gets the lost TaskRun's name,
        # but that TaskRun ran other code.
        return impostor.submit(2).result(timeout=60)

    with capture_logs(logging.INFO) as logs:
        assert other_order() == 102
    assert api.creates == 2 and lost in api.objects
    [line] = [r.getMessage() for r in logs.records if "runs afresh" in r.getMessage()]
    assert lost in line and "'triple'" in line


def test_flow_pod_taskrun_names_are_stable_per_series_and_place() -> None:
    from flowpod._kube.taskruns import FlowPodRun

    pod = FlowPodRun("fr", "u-1", attempt=3, series=1)
    name = pod.taskrun_name("Load_Rows-17", 4)
    assert re.fullmatch(r"load-rows-17-[a-z0-9]{6}", name)
    assert name == FlowPodRun("fr", "u-1", attempt=2, series=1).taskrun_name("Load_Rows-17", 4)
    others = {FlowPodRun("fr", "u-1", 3, 3).taskrun_name("Load_Rows-17", 4),
              FlowPodRun("fr", "u-2", 3, 1).taskrun_name("Load_Rows-17", 4),
              pod.taskrun_name("Load_Rows-17", 5)}
    assert name not in others and len(others) == 3
    assert pod.resuming and not FlowPodRun("fr", "u-1", 3, 3).resuming


def test_a_taskrun_of_another_task_under_the_followed_name_never_settles_the_future(
        store: LocalResultStore) -> None:
    from flowpod._kube.futures import KubernetesTaskFuture
    from flowpod.context.runs import TaskRun as TaskRunRecord

    runner = KubernetesTaskRunner(namespace=NS, store=store, api=FakeApi(store, operate=False))
    future: KubernetesTaskFuture[Any] = KubernetesTaskFuture(
        TaskRunRecord("triple-0", "triple", "key-of-this-task", {}, []))
    with runner._lock:  # followed as _follow does, without starting the watch thread
        runner._futures["triple-0-abcdef"] = future
    future.taskrun_name, future.task_key = "triple-0-abcdef", "key-of-this-task"

    def event(task_key: str, state: str) -> dict[str, Any]:
        return {"metadata": {"name": "triple-0-abcdef"}, "spec": {"taskKey": task_key},
                "status": {"state": state, "message": "done", "attempt": 1}}

    # The lost flow pod's TaskRun of the same name ran another task: its end is not ours.
    runner._on_object("MODIFIED", event("key-of-another-task", "Failed"))
    assert not future.done()
    runner._on_object("MODIFIED", event("key-of-this-task", "Running"))
    assert not future.done() and future.task_run.state_name == "Running"
