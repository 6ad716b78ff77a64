"""@flow: arguments, final-state rules, hooks, parameter validation, subflows, async flows."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from pydantic import BaseModel

from flowpod import Flow, flow, runtime, task
from flowpod.exceptions import ParameterTypeError, ReservedArgumentError
from flowpod.states import State
from flowpod.task_runners import ThreadPoolTaskRunner


@task
def ok(x: int = 1) -> int:
    return x


@task
def boom() -> None:
    raise ValueError("boom")


def test_decorator_forms_and_defaults() -> None:
    def my_etl_flow() -> None:
        """Move data."""

    f = flow(my_etl_flow)
    assert isinstance(f, Flow) and f.name == "my-etl-flow" and f.description == "Move data."
    g = flow(name="custom", version="1", description="d")(my_etl_flow)
    assert (g.name, g.version, g.description) == ("custom", "1", "d")
    assert isinstance(f.task_runner, ThreadPoolTaskRunner)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"retries": "2"}, TypeError, "retries"),
        ({"retry_delay_seconds": "5"}, TypeError, "retry_delay_seconds"),
        ({"timeout_seconds": -1}, ValueError, "timeout_seconds"),
        ({"task_runner": "threads"}, TypeError, "task_runner"),
        ({"validate_parameters": "yes"}, TypeError, "validate_parameters"),
        ({"on_failure": print}, TypeError, "list of hooks"),
        ({"name": "a/b"}, ValueError, "cannot contain"),
        ({"flow_run_name": 3}, TypeError, "flow_run_name"),
        ({"log_prints": 1}, TypeError, "log_prints"),
    ],
)
def test_bad_arguments_fail_at_decoration(options: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        flow(**options)


def test_reserved_parameter_names() -> None:
    def f(wait_for=None):
        return None

    with pytest.raises(ReservedArgumentError):
        flow(f)


def test_with_options() -> None:
    @flow(retries=1)
    def f() -> str:
        return runtime.flow_run.flow_name

    g = f.with_options(name="renamed", retries=3)
    assert (g.name, g.retries, f.retries) == ("renamed", 3, 1)
    assert g() == "renamed"
    assert g.task_runner is not f.task_runner
    with pytest.raises(TypeError):
        f.with_options(nonsense=True)


def test_raising_flow_fails_and_the_call_reraises() -> None:
    @flow
    def f() -> None:
        raise KeyError("gone")

    with pytest.raises(KeyError, match="gone"):
        f()
    state = f(return_state=True)
    assert isinstance(state, State) and state.is_failed()
    assert state.message == "Flow run encountered an exception: KeyError: 'gone'"


def test_failed_task_result_unused_does_not_fail_the_flow() -> None:
    @flow
    def f() -> str:
        boom(return_state=True)
        return "done"

    assert f() == "done"


def test_failed_direct_task_call_fails_the_flow() -> None:
    @flow
    def f() -> None:
        boom()

    with pytest.raises(ValueError, match="boom"):
        f()


def test_returned_states_are_aggregated() -> None:
    @flow
    def f():
        return [ok(return_state=True), boom(return_state=True)]

    state = f(return_state=True)
    assert state.is_failed() and state.message == "1/2 states failed."
    with pytest.raises(ValueError):
        state.result()

    @flow
    def g():
        return ok(return_state=True), ok(return_state=True)

    state = g(return_state=True)
    assert state.is_completed() and state.message == "All states completed."


def test_returning_a_single_state_makes_it_the_flow_state() -> None:
    @flow
    def f():
        return boom(return_state=True)

    assert f(return_state=True).is_failed()


def test_hooks() -> None:
    events: list[tuple[str, str]] = []

    def hook(kind):
        def record(flow_obj, flow_run, state) -> None:
            assert isinstance(flow_obj, Flow) and flow_run.id == state_run_ids[-1]
            events.append((kind, state.name))

        record.__name__ = kind
        return record

    state_run_ids: list = []

    def remember(flow_obj, flow_run, state) -> None:
        state_run_ids.append(flow_run.id)

    @flow(on_running=[remember, hook("running")], on_completion=[hook("completion")],
          on_failure=[hook("failure")])
    def good() -> int:
        return 1

    @flow(on_running=[remember], on_failure=[hook("failure")], on_completion=[hook("completion")])
    def bad() -> None:
        raise RuntimeError("x")

    good()
    bad(return_state=True)
    assert events == [("running", "Running"), ("completion", "Completed"), ("failure", "Failed")]


def test_crashed_hook_on_keyboard_interrupt() -> None:
    seen = []

    @flow(on_crashed=[lambda f, r, s: seen.append(s.name)])
    def f() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        f()
    assert seen == ["Crashed"]


class Point(BaseModel):
    x: int
    y: int


def test_parameters_are_coerced_from_type_hints() -> None:
    @flow
    def f(n: int, ratio: float, point: Point, items: list[int]) -> tuple:
        return n, ratio, point, items

    n, ratio, point, items = f("3", "0.5", {"x": 1, "y": "2"}, ["4"])
    assert (n, ratio, items) == (3, 0.5, [4])
    assert isinstance(point, Point) and point.y == 2


def test_bad_parameter_names_the_parameter() -> None:
    @flow
    def f(count: int) -> int:
        return count

    with pytest.raises(ParameterTypeError, match="'count'") as info:
        f("many")
    assert isinstance(info.value, TypeError)
    state = f("many", return_state=True)
    assert state.is_failed() and "Validation of flow parameters failed" in state.message


def test_validation_can_be_turned_off() -> None:
    @flow(validate_parameters=False)
    def f(count: int) -> object:
        return count

    assert f("many") == "many"


def test_plain_instances_skip_pydantic() -> None:
    code = (
        "import sys\n"
        "from flowpod import flow\n"
        "@flow\n"
        "def f(a: int, b: str, c: float = 1.0) -> int:\n"
        "    return a\n"
        "f(1, 'x')\n"
        "print('pydantic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_subflows_record_their_parent() -> None:
    @flow
    def child() -> str | None:
        return runtime.flow_run.parent_flow_run_id

    @flow
    def parent() -> tuple:
        return runtime.flow_run.id, child()

    parent_id, recorded = parent()
    assert parent_id == recorded


def test_async_flow_returns_a_coroutine() -> None:
    @task
    async def inc(x: int) -> int:
        return x + 1

    @flow
    async def f(x: int) -> int:
        return await inc(x) + ok(1)

    coro = f(1)
    assert asyncio.iscoroutine(coro)
    assert asyncio.run(coro) == 3


def test_async_flow_failure_and_retries() -> None:
    attempts = []

    @flow(retries=1)
    async def f() -> int:
        attempts.append(runtime.flow_run.run_count)
        if len(attempts) == 1:
            raise RuntimeError("first")
        return len(attempts)

    assert asyncio.run(f()) == 2
    assert attempts == [1, 2]


def test_flow_log_prints() -> None:
    from _engine_support import capture_logs

    @flow(log_prints=True)
    def f() -> None:
        print("hello", "world")

    with capture_logs() as logs:
        f()
    assert "hello world" in logs.messages


def test_flow_history() -> None:
    @flow(retries=1)
    def f() -> None:
        raise RuntimeError("x")

    state = f(return_state=True)
    assert state.is_failed()

    runs = []

    @flow
    def g() -> None:
        from flowpod.context import FlowRunContext

        runs.append(FlowRunContext.get().flow_run)  # type: ignore[union-attr]

    g()
    assert [s.name for s in runs[0].history] == ["Pending", "Running", "Completed"]


def test_subflow_wait_for() -> None:
    from flowpod.exceptions import UpstreamTaskError

    order = []

    @task
    def first() -> None:
        order.append("task")

    @flow
    def child() -> None:
        order.append("child")

    @flow
    def parent() -> None:
        child(wait_for=[first.submit()])
        with pytest.raises(UpstreamTaskError):
            child(wait_for=[boom.submit()])

    parent()
    assert order == ["task", "child"]


def test_on_cancellation_hook_for_a_cancelled_final_state() -> None:
    from flowpod.states import Cancelled

    seen = []

    @flow(on_cancellation=[lambda f, r, s: seen.append(s.name)])
    def f():
        return Cancelled(message="stopped by the user")

    state = f(return_state=True)
    assert state.is_cancelled() and seen == ["Cancelled"]
