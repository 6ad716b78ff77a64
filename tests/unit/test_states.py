"""States: constructors, display, result(), and the pure aggregation rules."""

from __future__ import annotations

import datetime

import pytest

from flowpod.exceptions import CrashedRun, FailedRun, UnfinishedRun
from flowpod.states import (
    AwaitingRetry,
    Cached,
    Cancelled,
    Completed,
    Crashed,
    Failed,
    NotReady,
    Pending,
    Retrying,
    Running,
    Scheduled,
    State,
    StateType,
    TimedOut,
    exception_to_failed_state,
    get_state_exception,
    is_state_iterable,
    return_value_to_state,
)


@pytest.mark.parametrize(
    ("state", "kind", "name"),
    [
        (Scheduled(), StateType.SCHEDULED, "Scheduled"),
        (AwaitingRetry(), StateType.SCHEDULED, "AwaitingRetry"),
        (Pending(), StateType.PENDING, "Pending"),
        (NotReady(), StateType.PENDING, "NotReady"),
        (Running(), StateType.RUNNING, "Running"),
        (Retrying(), StateType.RUNNING, "Retrying"),
        (Completed(), StateType.COMPLETED, "Completed"),
        (Cached(), StateType.COMPLETED, "Cached"),
        (Failed(), StateType.FAILED, "Failed"),
        (TimedOut(), StateType.FAILED, "TimedOut"),
        (Crashed(), StateType.CRASHED, "Crashed"),
        (Cancelled(), StateType.CANCELLED, "Cancelled"),
    ],
)
def test_constructors_set_type_and_name(state: State, kind: StateType, name: str) -> None:
    assert state.type is kind
    assert state.name == name


def test_str_matches_the_reference_forms() -> None:
    assert str(Completed()) == "Completed()"
    assert str(Cached()) == "Cached(type=COMPLETED)"
    state = exception_to_failed_state(ValueError("bad!"), "Task run encountered an exception")
    assert str(state) == "Failed('Task run encountered an exception ValueError: bad!')"
    assert str(Completed(message="All states completed.")) == "Completed('All states completed.')"
    assert str(TimedOut(message="x")) == "TimedOut('x', type=FAILED)"


def test_result_of_completed_and_failed_states() -> None:
    assert Completed(data=42).result() == 42
    exc = ValueError("nope")
    failed = Failed(data=exc)
    with pytest.raises(ValueError, match="nope"):
        failed.result()
    assert failed.result(raise_on_failure=False) is exc


def test_result_without_stored_exception_raises_typed_errors() -> None:
    with pytest.raises(FailedRun, match="went wrong"):
        Failed(message="went wrong").result()
    with pytest.raises(CrashedRun):
        Crashed(message="pod died").result()
    with pytest.raises(UnfinishedRun, match="RUNNING"):
        Running().result()


def test_awaiting_retry_carries_its_scheduled_time() -> None:
    when = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    state = AwaitingRetry(scheduled_time=when)
    assert state.state_details.scheduled_time == when
    assert state.is_scheduled()


def test_timestamp_is_timezone_aware() -> None:
    assert Completed().timestamp.tzinfo is not None


def test_return_value_to_state_aggregates_iterables_of_states() -> None:
    ok = return_value_to_state([Completed(), Cached()])
    assert ok.is_completed() and ok.message == "All states completed."
    bad = return_value_to_state([Completed(), Failed(data=ValueError("x"))])
    assert bad.is_failed() and bad.message == "1/2 states failed."
    with pytest.raises(ValueError, match="x"):
        bad.result()
    assert return_value_to_state([Completed(), Running()]).is_pending()
    assert return_value_to_state([Cancelled(), Failed()]).is_cancelled()


def test_return_value_to_state_plain_values_and_states() -> None:
    assert return_value_to_state(5).result() == 5
    assert return_value_to_state([1, 2]).result() == [1, 2]
    assert return_value_to_state([]).result() == []
    inner = Failed(data=KeyError("k"))
    assert return_value_to_state(inner).is_failed()


def test_is_state_iterable_and_get_state_exception() -> None:
    assert is_state_iterable((Completed(),))
    assert not is_state_iterable([Completed(), 1])
    assert not is_state_iterable([])
    exc = RuntimeError("inner")
    outer = Failed(data=[Completed(), Failed(data=exc)])
    assert get_state_exception(outer) is exc


def test_predicates() -> None:
    assert Completed().is_final() and Failed().is_final() and Crashed().is_final()
    assert not Running().is_final() and not Pending().is_final()
    assert Running().is_running() and Pending().is_pending()


def test_a_task_returning_a_state_takes_it_as_its_own() -> None:
    from flowpod import task

    @task
    def decides(ok: bool) -> State:
        if ok:
            return Completed(message="fine", data=5)
        return Failed(message="refused")

    assert decides(True) == 5
    state = decides(False, return_state=True)
    assert state.is_failed() and state.message == "refused"
    with pytest.raises(FailedRun, match="refused"):
        decides(False)
