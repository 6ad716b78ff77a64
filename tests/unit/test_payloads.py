"""Payload, outcome, result and exception records in the store (flowpod._storage.run_files)."""

from __future__ import annotations

import json
import pickle
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from flowpod import task
from flowpod._contract.keys import exception_key, outcome_key, payload_key, result_key
from flowpod._contract.records import Outcome
from flowpod._kube.payloads import (
    PAYLOAD_VERSION,
    FlowRunInfo,
    TaskPayload,
    dump_payload,
    read_payload,
    write_payload,
)
from flowpod._storage import MemoryResultStore
from flowpod._storage.run_files import (
    read_exception,
    read_outcome,
    read_result,
    write_exception,
    write_outcome,
    write_result,
)
from flowpod.exceptions import ResultNotFound, SerializationError


@task
def double(x: int) -> int:
    return x * 2


class Unpicklable(Exception):
    def __reduce__(self) -> Any:
        raise TypeError("no pickling for you")


def _payload(**changes: Any) -> TaskPayload:
    fields: dict[str, Any] = {
        "task": double,
        "parameters": {"x": 21},
        "run_name": "double-0",
        "task_run_id": str(uuid.uuid4()),
    }
    fields.update(changes)
    return TaskPayload(**fields)


def test_keys_follow_the_contract_layout() -> None:
    assert payload_key("ns", "add-0-x") == "runs/ns/add-0-x/payload"
    assert outcome_key("ns", "add-0-x", 2) == "runs/ns/add-0-x/outcome-2.json"
    assert result_key("ns", "add-0-x", 1) == "runs/ns/add-0-x/result-1"
    assert exception_key("ns", "add-0-x", 3) == "runs/ns/add-0-x/exception-3"


@pytest.mark.parametrize("bad", ["", "a/b", ".."])
def test_bad_names_are_refused_with_a_clear_message(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid|cannot leave"):
        payload_key("ns", bad)


@pytest.mark.parametrize("attempt", [0, -1, True])
def test_attempts_count_from_one(attempt: Any) -> None:
    with pytest.raises(ValueError, match="start at 1"):
        outcome_key("ns", "x", attempt)


def test_payload_round_trip_runs_the_same_task() -> None:
    store = MemoryResultStore()
    info = FlowRunInfo(id=str(uuid.uuid4()), name="brave-fox", flow_name="etl",
                       parameters={"day": 3})
    key = write_payload(store, "ns", "double-0-abc", _payload(flow_run=info, cache_key="k"))
    assert key == "runs/ns/double-0-abc/payload"
    loaded = read_payload(store, "ns", "double-0-abc")
    assert loaded.parameters == {"x": 21}
    assert loaded.flow_run == info
    assert loaded.cache_key == "k"
    assert loaded.task.fn(4) == 8
    assert loaded.task.name == "double"


def test_test_module_functions_are_pickled_by_value() -> None:
    # The pod's image may not have this test module: its functions travel by value, while
    # installed packages (and flowpod itself) stay references.
    import sys

    from flowpod._kube.payloads import _modules_to_pickle_by_value

    assert _modules_to_pickle_by_value(double) == [sys.modules[__name__]]
    from flowpod.cache_policies import INPUTS

    assert _modules_to_pickle_by_value(task(json.dumps)) == []
    assert _modules_to_pickle_by_value(task(INPUTS.compute_key)) == []
    data = dump_payload(_payload())
    loaded = pickle.loads(data)
    # By value: the unpickled function has its own globals, not this module's.
    assert loaded.task.fn.__globals__ is not globals()


def test_missing_payload_is_result_not_found() -> None:
    with pytest.raises(ResultNotFound):
        read_payload(MemoryResultStore(), "ns", "nothing")


def test_unloadable_payload_says_what_to_check() -> None:
    store = MemoryResultStore()
    store.put(payload_key("ns", "x"), b"not a pickle")
    with pytest.raises(SerializationError, match="image must have the packages"):
        read_payload(store, "ns", "x")


def test_payload_of_another_version_is_refused() -> None:
    store = MemoryResultStore()
    write_payload(store, "ns", "x", _payload(version=PAYLOAD_VERSION + 1))
    with pytest.raises(SerializationError, match="same flowpod version"):
        read_payload(store, "ns", "x")


def test_unpicklable_arguments_give_a_clear_error() -> None:
    import threading

    with pytest.raises(SerializationError, match="must be picklable"):
        dump_payload(_payload(parameters={"x": threading.Lock()}))


def test_outcome_json_has_the_contract_keys() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    outcome = Outcome(attempt=2, state="TimedOut", message="too slow",
                      exception="TaskRunTimeoutError('x')", retry_allowed=True, finished_at=moment)
    raw = json.loads(outcome.to_json())
    assert raw == {
        "attempt": 2, "state": "TimedOut", "type": "FAILED", "message": "too slow",
        "exception": "TaskRunTimeoutError('x')", "retryAllowed": True, "resultRef": None,
        "exceptionRef": None, "serializer": None, "finishedAt": "2026-01-02T03:04:05+00:00",
    }
    assert Outcome.from_json(outcome.to_json()) == outcome


def test_outcome_rejects_unknown_states() -> None:
    with pytest.raises(ValueError, match="must be one of"):
        Outcome(attempt=1, state="Running")


def test_outcome_round_trip_through_the_store() -> None:
    store = MemoryResultStore()
    assert read_outcome(store, "ns", "x", 1) is None
    outcome = Outcome(attempt=1, state="Completed", result_ref="runs/ns/x/result-1",
                      serializer="json")
    write_outcome(store, "ns", "x", outcome)
    assert read_outcome(store, "ns", "x", 1) == outcome
    assert read_outcome(store, "ns", "x", 2) is None


def test_malformed_outcome_is_an_error_not_a_crash() -> None:
    store = MemoryResultStore()
    store.put(outcome_key("ns", "x", 1), b'{"attempt": 1}')
    with pytest.raises(SerializationError, match="malformed"):
        read_outcome(store, "ns", "x", 1)
    store.put(outcome_key("ns", "x", 1), b"[1, 2]")
    with pytest.raises(SerializationError, match="not a JSON object"):
        read_outcome(store, "ns", "x", 1)


def test_results_round_trip_with_each_serializer() -> None:
    store = MemoryResultStore()
    key = write_result(store, "ns", "x", 1, {"a": [1, 2]}, "json")
    assert store.get(key) == b'{"a": [1, 2]}'
    assert read_result(store, key, "json") == {"a": [1, 2]}
    key = write_result(store, "ns", "x", 2, {1, 2}, "pickle")
    assert read_result(store, key) == {1, 2}


def test_unserialisable_result_writes_nothing() -> None:
    store = MemoryResultStore()
    with pytest.raises(SerializationError, match="json"):
        write_result(store, "ns", "x", 1, {1, 2}, "json")
    assert not store.exists(result_key("ns", "x", 1))


def test_exceptions_keep_their_type() -> None:
    store = MemoryResultStore()
    ref = write_exception(store, "ns", "x", 1, KeyError("missing"))
    assert ref == exception_key("ns", "x", 1)
    loaded = read_exception(store, ref)
    assert isinstance(loaded, KeyError) and loaded.args == ("missing",)


def test_unpicklable_exception_is_skipped() -> None:
    store = MemoryResultStore()
    assert write_exception(store, "ns", "x", 1, Unpicklable("x")) is None
    assert read_exception(store, exception_key("ns", "x", 1)) is None
