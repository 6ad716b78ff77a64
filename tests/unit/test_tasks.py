"""@task: arguments and their validation, with_options, defaults, task keys, direct calls."""

from __future__ import annotations

import datetime
import subprocess
import sys
import textwrap

import pytest

from flowpod import Task, flow, task
from flowpod.cache_policies import INPUTS, NO_CACHE
from flowpod.exceptions import MissingContextError, ReservedArgumentError, SignatureMismatchError
from flowpod.states import State


def double(x: int) -> int:
    """Double a number."""
    return 2 * x


def test_bare_and_called_decorator_give_tasks() -> None:
    assert isinstance(task(double), Task)
    assert isinstance(task()(double), Task)
    assert isinstance(task(name="d")(double), Task)


def test_name_and_description_default_to_the_function() -> None:
    t = task(double)
    assert t.name == "double"
    assert t.description == "Double a number."
    named = task(name="twice", description="other")(double)
    assert (named.name, named.description) == ("twice", "other")


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"retries": "3"}, TypeError, "retries"),
        ({"retries": -1}, ValueError, "retries"),
        ({"retries": True}, TypeError, "retries"),
        ({"retry_delay_seconds": "10"}, TypeError, "retry_delay_seconds"),
        ({"retry_delay_seconds": list(range(51))}, ValueError, "at most 50"),
        ({"retry_jitter_factor": -1}, ValueError, "jitter"),
        ({"retry_jitter_factor": "x"}, TypeError, "jitter"),
        ({"timeout_seconds": "5"}, TypeError, "timeout_seconds"),
        ({"timeout_seconds": 0}, ValueError, "timeout_seconds"),
        ({"tags": "etl"}, TypeError, "tags"),
        ({"tags": [1]}, TypeError, "tags"),
        ({"cache_policy": "inputs"}, TypeError, "cache_policy"),
        ({"cache_key_fn": 3}, TypeError, "cache_key_fn"),
        ({"cache_expiration": 60}, TypeError, "cache_expiration"),
        ({"cache_expiration": datetime.timedelta(0)}, ValueError, "positive timedelta"),
        ({"cache_expiration": datetime.timedelta(seconds=-5)}, ValueError, "cache_expiration"),
        ({"task_run_name": 5}, TypeError, "task_run_name"),
        ({"on_completion": lambda *a: None}, TypeError, "list of hooks"),
        ({"on_failure": [1]}, TypeError, "callables"),
        ({"result_serializer": "yaml"}, ValueError, "result_serializer"),
        ({"log_prints": "yes"}, TypeError, "log_prints"),
        ({"persist_result": 1}, TypeError, "persist_result"),
        ({"retry_condition_fn": 5}, TypeError, "retry_condition_fn"),
        ({"name": ""}, TypeError, "name"),
    ],
)
def test_bad_arguments_fail_at_decoration(options: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        task(**options)
    with pytest.raises(error, match=match):
        Task(double, **options)


def test_unknown_argument_fails() -> None:
    with pytest.raises(TypeError):
        task(retrys=3)  # type: ignore[call-overload]


@pytest.mark.parametrize("reserved", ["return_state", "wait_for"])
def test_reserved_parameter_names(reserved: str) -> None:
    namespace: dict = {}
    exec(f"def f({reserved}=None):\n    return 1", namespace)
    with pytest.raises(ReservedArgumentError, match=reserved):
        task(namespace["f"])


def test_with_options_returns_a_changed_copy() -> None:
    base = task(retries=1, tags={"a"})(double)
    other = base.with_options(name="other", retries=3)
    assert (other.name, other.retries, other.tags) == ("other", 3, {"a"})
    assert (base.name, base.retries) == ("double", 1)
    assert other.fn is base.fn
    with pytest.raises(TypeError, match="unexpected"):
        base.with_options(nope=1)
    with pytest.raises(TypeError, match="retries"):
        base.with_options(retries="x")


def test_cache_settings_imply_persistence() -> None:
    assert task(double).persist_result is None
    assert task(cache_policy=INPUTS)(double).persist_result is True
    assert task(cache_key_fn=lambda c, p: "k")(double).persist_result is True
    assert task(cache_policy=NO_CACHE)(double).persist_result is None
    assert task(persist_result=False, cache_policy=INPUTS)(double).cache_policy is NO_CACHE


def test_task_key_has_the_seed_composition_and_shape() -> None:
    t = task(double)
    assert t.task_key.startswith("double-")
    assert t.task_key == task(double).task_key
    assert task(tags={"x"})(double).task_key != t.task_key
    assert task(name="other")(double).task_key != t.task_key


def test_task_key_is_stable_across_processes(tmp_path) -> None:
    module = tmp_path / "keymod.py"
    module.write_text(textwrap.dedent("""
        from flowpod import task

        @task(tags={"b", "a"})
        def work(x):
            return x
        """))
    code = "import keymod; print(keymod.work.task_key)"
    keys = {
        subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(keys) == 1 and keys.pop().startswith("work-")


def test_called_outside_a_flow_runs_inline() -> None:
    t = task(double)
    assert t(4) == 8
    state = t(4, return_state=True)
    assert isinstance(state, State) and state.is_completed() and state.result() == 8


def test_run_name_outside_a_flow_is_the_task_name() -> None:
    from flowpod import runtime

    @task
    def who() -> str:
        return runtime.task_run.name

    assert who() == "who"


def test_failure_outside_a_flow_raises_and_return_state_captures() -> None:
    @task
    def bad() -> None:
        raise ValueError("bad!")

    with pytest.raises(ValueError, match="bad!"):
        bad()
    state = bad(return_state=True)
    assert state.is_failed()
    assert state.message == "Task run encountered an exception ValueError: bad!"


def test_submit_and_map_outside_a_flow_fail_clearly() -> None:
    t = task(double)
    with pytest.raises(MissingContextError, match="outside a flow run") as info:
        t.submit(1)
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(RuntimeError, match="outside a flow run"):
        t.map([1, 2])


def test_arguments_must_match_the_signature() -> None:
    t = task(double)
    with pytest.raises(SignatureMismatchError, match="double"):
        t(1, 2)
    with pytest.raises(TypeError):
        t(y=3)


def test_keyword_and_default_arguments_are_bound() -> None:
    from flowpod import runtime

    @task
    def params(a: int, b: int = 2, *, c: int = 3) -> dict:
        return runtime.task_run.parameters

    assert params(1) == {"a": 1, "b": 2, "c": 3}
    assert params(c=9, a=1) == {"a": 1, "b": 2, "c": 9}


def test_varargs_and_kwargs_tasks() -> None:
    @task
    def collect(*args: int, **kwargs: int) -> tuple:
        return args, kwargs

    assert collect(1, 2, x=3) == ((1, 2), {"x": 3})


def test_tasks_called_from_tasks_record_their_parent() -> None:
    seen = {}

    @task
    def child() -> None:
        from flowpod.context import TaskRunContext

        ctx = TaskRunContext.get()
        assert ctx is not None
        seen["parent"] = ctx.task_run.parent_task_run_id

    @task
    def parent() -> str:
        from flowpod.context import TaskRunContext

        child()
        ctx = TaskRunContext.get()
        assert ctx is not None
        return ctx.task_run.id

    @flow
    def f() -> str:
        return parent()

    parent_id = f()
    assert seen["parent"] == parent_id


def test_tags_combine_decorator_and_context() -> None:
    from flowpod import runtime, tags

    @task(tags={"deco"})
    def t() -> list[str]:
        return runtime.task_run.tags

    with tags("ctx", "more"):
        assert t() == ["ctx", "deco", "more"]
    assert t() == ["deco"]


def test_tags_is_usable_around_flows() -> None:
    from flowpod import runtime, tags

    @flow
    def f() -> list[str]:
        return runtime.flow_run.tags

    with tags("nightly") as active:
        assert active == {"nightly"}
        assert f() == ["nightly"]


def test_cache_expiration_must_be_timedelta_and_is_kept() -> None:
    t = task(cache_expiration=datetime.timedelta(seconds=5))(double)
    assert t.cache_expiration == datetime.timedelta(seconds=5)


def test_cache_expiration_must_be_positive_in_with_options_too() -> None:
    t = task(cache_expiration=datetime.timedelta(seconds=5))(double)
    with pytest.raises(ValueError, match=r"cache_expiration must be a positive timedelta") as info:
        t.with_options(cache_expiration=datetime.timedelta(0))
    assert "NO_CACHE" in str(info.value)  # the way to turn caching off, for those who meant it
    with pytest.raises(ValueError, match="cache_expiration"):
        t.with_options(cache_expiration=-datetime.timedelta(minutes=1))
    assert t.with_options(cache_expiration=None).cache_expiration is None
    assert t.cache_expiration == datetime.timedelta(seconds=5)


def test_async_task_outside_flow_returns_coroutine() -> None:
    import asyncio

    @task
    async def hello(x: int) -> int:
        return x + 1

    coro = hello(1)
    assert asyncio.iscoroutine(coro)
    assert asyncio.run(coro) == 2


def test_hooks_sync_and_async_receive_task_run_and_state() -> None:
    import asyncio

    events: list[tuple] = []

    def sync_hook(t, run, state) -> None:
        events.append(("sync", t.name, run.name, state.name))

    async def async_hook(t, run, state) -> None:
        await asyncio.sleep(0)
        events.append(("async", t.name, run.name, state.name))

    @task(on_completion=[sync_hook, async_hook], on_running=[sync_hook])
    def good() -> int:
        return 1

    @task(on_failure=[async_hook])
    async def bad() -> None:
        raise ValueError("x")

    @flow
    def f() -> None:
        good()

    f()
    asyncio.run(bad(return_state=True))
    assert events == [
        ("sync", "good", "good-0", "Running"),
        ("sync", "good", "good-0", "Completed"),
        ("async", "good", "good-0", "Completed"),
        ("async", "bad", "bad", "Failed"),
    ]


def test_sync_task_with_async_hook_inside_an_async_flow() -> None:
    import asyncio

    events = []

    async def hook(t, run, state) -> None:
        events.append(state.name)

    @task(on_completion=[hook])
    def sync_task() -> int:
        return 2

    @flow
    async def f() -> int:
        return sync_task()

    assert asyncio.run(f()) == 2
    assert events == ["Completed"]


def test_keyboard_interrupt_crashes_the_task_and_propagates() -> None:
    runs = []

    @task
    def interrupted() -> None:
        from flowpod.context import TaskRunContext

        runs.append(TaskRunContext.get().task_run)  # type: ignore[union-attr]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert runs[0].state.is_crashed()
