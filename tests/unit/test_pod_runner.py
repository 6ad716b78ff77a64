"""The task pod's program, run as a real subprocess against a local store (FLOWPOD_STORE_PATH)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flowpod import runtime, task
from flowpod._contract.records import Outcome
from flowpod._kube.payloads import FlowRunInfo, TaskPayload, write_payload
from flowpod._storage import CacheStore, LocalResultStore
from flowpod._storage.run_files import (
    read_exception,
    read_outcome,
    read_result,
)
from flowpod.exceptions import TaskRunTimeoutError

NS = "team-a"


@dataclass
class PodRun:
    returncode: int
    stdout: str
    stderr: str
    outcome: Outcome | None
    seconds: float


@pytest.fixture
def store(tmp_path: Path) -> LocalResultStore:
    return LocalResultStore(tmp_path / "store")


def run_pod(store: LocalResultStore, name: str, attempt: int = 1, *extra: str,
            target: str | None = None) -> PodRun:
    env = {**os.environ, "FLOWPOD_STORE_PATH": str(store.root)}
    args = [sys.executable, "-m", "flowpod.pod", "task", target or f"{NS}/{name}",
            "--attempt", str(attempt), *extra]
    started = time.monotonic()
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    seconds = time.monotonic() - started
    outcome = read_outcome(store, NS, name, attempt) if target is None else None
    return PodRun(proc.returncode, proc.stdout, proc.stderr, outcome, seconds)


def submit(store: LocalResultStore, fn: Any, parameters: dict[str, Any], run_name: str,
           **fields: Any) -> str:
    name = f"{run_name}-{uuid.uuid4().hex[:6]}"
    payload = TaskPayload(task=fn, parameters=parameters, run_name=run_name,
                          task_run_id=str(uuid.uuid4()), **fields)
    write_payload(store, NS, name, payload)
    return name


# -- tasks (pickled by value into the payload: the pod does not import this module) -----------


@task
def add(x: int, y: int) -> int:
    return x + y


@task
async def async_add(x: int, y: int) -> int:
    await asyncio.sleep(0)
    return x + y


@task
def boom() -> None:
    raise ValueError("boom")


@task(timeout_seconds=0.5)
def slow() -> str:
    time.sleep(20)
    return "never"


@task(result_serializer="json")
def returns_a_set() -> set[int]:
    return {1, 2}


@task
def context_report() -> dict[str, Any]:
    return {
        "task_run": runtime.task_run.name,
        "task_run_id": runtime.task_run.id,
        "run_count": runtime.task_run.run_count,
        "flow_run": runtime.flow_run.name,
        "flow_run_id": runtime.flow_run.id,
        "flow_parameters": runtime.flow_run.parameters,
    }


@task(log_prints=True)
def chatty() -> int:
    print("hello from the pod")
    return 1


def never_retry(task: Any, task_run: Any, state: Any) -> bool:
    return False


def broken_condition(task: Any, task_run: Any, state: Any) -> bool:
    raise RuntimeError("condition broke")


async def async_yes(task: Any, task_run: Any, state: Any) -> bool:
    await asyncio.sleep(0)
    return True


# -- tests ------------------------------------------------------------------------------------


def test_success_writes_result_and_completed_outcome(store: LocalResultStore) -> None:
    name = submit(store, add, {"x": 1, "y": 2}, "add-0")
    run = run_pod(store, name)
    assert run.returncode == 0, run.stderr
    assert "| INFO    | Task run 'add-0' - Finished in state Completed()" in run.stdout
    assert run.outcome is not None and run.outcome.state == "Completed"
    assert run.outcome.result_ref == f"runs/{NS}/{name}/result-1"
    assert read_result(store, run.outcome.result_ref, run.outcome.serializer or "pickle") == 3


def test_async_task_runs_on_its_own_loop(store: LocalResultStore) -> None:
    name = submit(store, async_add, {"x": 2, "y": 5}, "async_add-0")
    run = run_pod(store, name)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.outcome is not None and run.outcome.result_ref is not None
    assert read_result(store, run.outcome.result_ref) == 7


def test_failure_with_retries_left_allows_a_retry(store: LocalResultStore) -> None:
    name = submit(store, boom, {}, "boom-0", retries=2)
    run = run_pod(store, name)
    assert run.returncode == 1
    outcome = run.outcome
    assert outcome is not None
    assert (outcome.state, outcome.retry_allowed) == ("Failed", True)
    assert outcome.exception == "ValueError('boom')"
    assert outcome.message == "Task run encountered an exception ValueError: boom"
    assert outcome.exception_ref is not None
    exc = read_exception(store, outcome.exception_ref)
    assert isinstance(exc, ValueError) and str(exc) == "boom"
    assert "Retry 1/2 will be scheduled" in run.stdout
    assert "Finished in state" not in run.stdout  # not final: the operator retries


def test_last_attempt_failure_is_final(store: LocalResultStore) -> None:
    name = submit(store, boom.with_options(retry_condition_fn=broken_condition), {}, "boom-0",
                  retries=2)
    run = run_pod(store, name, 3)
    assert run.returncode == 1
    assert run.outcome is not None and run.outcome.attempt == 3
    # No retry is left, so the condition is not even asked (it would have logged its error).
    assert "retry_condition_fn" not in run.stdout
    assert "Retries are exhausted" in run.stdout
    assert "Finished in state Failed('Task run encountered an exception ValueError: boom')" \
        in run.stdout


def test_retry_condition_declines(store: LocalResultStore) -> None:
    name = submit(store, boom.with_options(retry_condition_fn=never_retry), {}, "boom-0",
                  retries=3)
    run = run_pod(store, name)
    assert run.outcome is not None
    assert (run.outcome.state, run.outcome.retry_allowed) == ("Failed", False)
    assert "retry_condition_fn declined a retry" in run.stdout


def test_retry_condition_that_raises_means_no_retry(store: LocalResultStore) -> None:
    name = submit(store, boom.with_options(retry_condition_fn=broken_condition), {}, "boom-0",
                  retries=1)
    run = run_pod(store, name)
    assert run.outcome is not None and run.outcome.retry_allowed is False
    assert "An error was encountered while running `retry_condition_fn`" in run.stdout
    assert "RuntimeError: condition broke" in run.stdout


def test_async_retry_condition_is_awaited(store: LocalResultStore) -> None:
    name = submit(store, boom.with_options(retry_condition_fn=async_yes), {}, "boom-0",
                  retries=1)
    run = run_pod(store, name)
    assert run.outcome is not None and run.outcome.retry_allowed is True


def test_timeout_is_reported_as_timed_out(store: LocalResultStore) -> None:
    name = submit(store, slow, {}, "slow-0")
    run = run_pod(store, name)
    assert run.returncode == 1
    assert run.seconds < 15
    outcome = run.outcome
    assert outcome is not None and outcome.state == "TimedOut" and outcome.type == "FAILED"
    assert outcome.message == "Task run exceeded timeout of 0.5 second(s)"
    assert outcome.exception_ref is not None
    assert isinstance(read_exception(store, outcome.exception_ref), TaskRunTimeoutError)


def test_unserialisable_result_fails_without_retry(store: LocalResultStore) -> None:
    name = submit(store, returns_a_set, {}, "returns_a_set-0", result_serializer="json",
                  retries=2)
    run = run_pod(store, name)
    assert run.returncode == 1
    outcome = run.outcome
    assert outcome is not None and outcome.state == "Failed"
    assert outcome.retry_allowed is False
    assert outcome.result_ref is None
    assert outcome.message is not None
    assert outcome.message.startswith("Task run could not persist its result: SerializationError")
    assert "choose result_serializer='pickle'" in outcome.message


def test_cache_key_commits_a_cache_record(store: LocalResultStore) -> None:
    name = submit(store, add, {"x": 20, "y": 22}, "add-0", cache_key="sum-20-22",
                  cache_expiration_seconds=3600)
    run = run_pod(store, name)
    assert run.returncode == 0, run.stdout
    cache = CacheStore(store)
    assert run.outcome is not None and run.outcome.result_ref == cache.value_key("sum-20-22")
    assert cache.lookup("sum-20-22") == (True, 42)
    record = cache.read_record("sum-20-22")
    assert record is not None and record.expires is not None
    assert 3500 < (record.expires - record.created).total_seconds() <= 3600
    # No separate result object: the cache record's value is the result.
    assert not store.exists(f"runs/{NS}/{name}/result-1")


def test_runtime_context_matches_the_submitting_side(store: LocalResultStore) -> None:
    flow_id, run_id = str(uuid.uuid4()), str(uuid.uuid4())
    info = FlowRunInfo(id=flow_id, name="brave-fox", flow_name="etl", parameters={"day": 3})
    name = f"context-{uuid.uuid4().hex[:6]}"
    write_payload(store, NS, name, TaskPayload(task=context_report, parameters={},
                                               run_name="context_report-4", task_run_id=run_id,
                                               flow_run=info, retries=3))
    run = run_pod(store, name, 2)
    assert run.returncode == 0, run.stdout
    assert run.outcome is not None and run.outcome.result_ref is not None
    assert read_result(store, run.outcome.result_ref) == {
        "task_run": "context_report-4", "task_run_id": run_id, "run_count": 2,
        "flow_run": "brave-fox", "flow_run_id": flow_id, "flow_parameters": {"day": 3},
    }


def test_log_prints_go_to_the_pod_log(store: LocalResultStore) -> None:
    name = submit(store, chatty, {}, "chatty-0", log_prints=True)
    run = run_pod(store, name)
    assert "Task run 'chatty-0' - hello from the pod" in run.stdout


def test_missing_payload_fails_without_retry(store: LocalResultStore) -> None:
    run = run_pod(store, "never-written")
    assert run.returncode == 1
    assert run.outcome is not None
    assert (run.outcome.state, run.outcome.retry_allowed) == ("Failed", False)
    assert "ResultNotFound" in (run.outcome.message or "")


def test_bad_target_is_a_usage_error(store: LocalResultStore) -> None:
    run = run_pod(store, "x", target="no-namespace")
    assert run.returncode == 2
    assert "expected <namespace>/<taskrun>" in run.stdout


def test_no_store_configured_is_a_usage_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FLOWPOD_STORE_PATH", "FLOWPOD_S3_BUCKET")}
    proc = subprocess.run([sys.executable, "-m", "flowpod.pod", "task", "ns/x", "--attempt", "1"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert "no result store configured: set FLOWPOD_S3_BUCKET" in proc.stdout


@task
def waits_for_a_signal(marker: str) -> str:
    Path(marker).write_text("started")
    time.sleep(120)
    return "never"


def test_sigterm_ends_the_pod_at_once_and_keeps_its_log(store: LocalResultStore,
                                                        tmp_path: Path) -> None:
    # In a container the pod's program is PID 1, which ignores signals it has no handler for;
    # the handler makes a deleted or cancelled pod stop now rather than at SIGKILL.
    from flowpod._contract.keys import log_key

    marker = tmp_path / "started"
    name = submit(store, waits_for_a_signal, {"marker": str(marker)}, "waits-0")
    env = {**os.environ, "FLOWPOD_STORE_PATH": str(store.root)}
    proc = subprocess.Popen([sys.executable, "-m", "flowpod.pod", "task", f"{NS}/{name}",
                             "--attempt", "1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.02)
        signalled = time.monotonic()
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, output
    assert time.monotonic() - signalled < 10
    uploaded = store.get(log_key(NS, name, 1)).decode()
    assert "received SIGTERM" in uploaded
    assert read_outcome(store, NS, name, 1) is None  # the attempt was not judged by the pod


def test_a_store_outage_ends_the_attempt_without_an_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store being down says nothing about the task: no Failed outcome (which would end the
    # run for good), but a distinct exit code; the operator retries it as a platform failure.
    import argparse
    import io

    import flowpod.pod as pod_program
    from flowpod._storage import S3StoreUnavailable

    class Down(LocalResultStore):
        def get(self, key: str) -> bytes:
            raise S3StoreUnavailable(f"could not read s3://bucket/{key}: connect timeout")

    down = Down(tmp_path / "down")
    monkeypatch.setattr(pod_program, "store_for_pod", lambda: down)
    args = argparse.Namespace(command="task", target="ns/t-1", attempt=1)
    assert pod_program._main(args, io.StringIO()) == pod_program.EXIT_STORE_UNAVAILABLE
    assert not down.exists("runs/ns/t-1/outcome-1.json")


def test_the_outcome_is_also_the_containers_termination_message(
        store: LocalResultStore, tmp_path: Path) -> None:
    name = submit(store, boom, {}, "boom-0")
    log = tmp_path / "termination-log"
    log.write_text("")  # the kubelet creates the file; the pod writes it
    env = {**os.environ, "FLOWPOD_STORE_PATH": str(store.root),
           "FLOWPOD_TERMINATION_LOG": str(log)}
    proc = subprocess.run([sys.executable, "-m", "flowpod.pod", "task", f"{NS}/{name}",
                           "--attempt", "1"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1, proc.stderr
    told = Outcome.from_termination_message(log.read_text())
    stored = read_outcome(store, NS, name, 1)
    assert told is not None and stored is not None
    assert (told.state, told.attempt, told.exception) == ("Failed", 1, "ValueError('boom')")
    assert told.to_dict() == stored.to_dict()


def test_without_the_kubelets_file_no_termination_message_is_written(
        store: LocalResultStore, tmp_path: Path) -> None:
    name = submit(store, add, {"x": 1, "y": 2}, "add-0")
    missing = tmp_path / "absent" / "termination-log"
    env = {**os.environ, "FLOWPOD_STORE_PATH": str(store.root),
           "FLOWPOD_TERMINATION_LOG": str(missing)}
    proc = subprocess.run([sys.executable, "-m", "flowpod.pod", "task", f"{NS}/{name}",
                           "--attempt", "1"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not missing.exists()


def test_a_termination_message_carries_an_outcome_only_whole_and_fitting() -> None:
    small = Outcome(attempt=2, state="Completed", result_ref="runs/ns/a/result-2")
    text = small.to_termination_message()
    assert text is not None and len(text.encode()) <= 4096
    assert Outcome.from_termination_message(text) == small
    huge = Outcome(attempt=1, state="Failed", message="x" * 5000)
    assert huge.to_termination_message() is None  # the store's record is read instead
    for other in (None, "", "exec format error", text[:-3], "flowpod.dev/outcome {"):
        assert Outcome.from_termination_message(other) is None
