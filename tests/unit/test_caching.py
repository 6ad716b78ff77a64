"""Cache policies, cache_key_fn, persistence in the result store, expiry, refresh, concurrency."""

from __future__ import annotations

import datetime
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from _engine_support import capture_logs

from flowpod import flow, task
from flowpod._common.hashing import hash_objects
from flowpod.cache_policies import (
    DEFAULT,
    FLOW_PARAMETERS,
    INPUTS,
    NO_CACHE,
    RUN_ID,
    TASK_SOURCE,
    CacheKeyFnPolicy,
    CachePolicy,
    CompoundCachePolicy,
    Inputs,
)
from flowpod.context import TaskRunContext
from flowpod.exceptions import SerializationError, UnhashableInputError
from flowpod.tasks import task_input_hash


class _Ctx:
    def __init__(self, fn=None) -> None:
        self.task = task(fn or (lambda x=1: x), name="probe")
        self.task_run = None


def test_inputs_key_includes_defaults_and_excludes() -> None:
    ctx = _Ctx()
    a = INPUTS.compute_key(ctx, {"x": 1, "y": 2}, {})
    assert a == INPUTS.compute_key(ctx, {"x": 1, "y": 2}, {})
    assert a != INPUTS.compute_key(ctx, {"x": 1, "y": 3}, {})
    without_y = INPUTS - "y"
    assert isinstance(without_y, Inputs) and without_y.exclude == ["y"]
    assert without_y.compute_key(ctx, {"x": 1, "y": 2}, {}) == without_y.compute_key(
        ctx, {"x": 1, "y": 99}, {}
    )
    assert Inputs(exclude=["y"]).compute_key(ctx, {"x": 1, "y": 5}, {}) == without_y.compute_key(
        ctx, {"x": 1, "y": 7}, {}
    )


def test_compound_policies_flatten_and_no_cache_is_neutral() -> None:
    combined = (INPUTS + TASK_SOURCE) + RUN_ID
    assert isinstance(combined, CompoundCachePolicy)
    assert len(combined.policies) == 3
    assert INPUTS + NO_CACHE == INPUTS
    assert NO_CACHE + INPUTS == INPUTS
    assert NO_CACHE.compute_key(_Ctx(), {"x": 1}, {}) is None
    subtracted = DEFAULT - "x"
    assert isinstance(subtracted, CompoundCachePolicy)
    assert any(isinstance(p, Inputs) and "x" in p.exclude for p in subtracted.policies)
    with pytest.raises(TypeError):
        INPUTS - 3  # type: ignore[operator]


def test_compound_key_is_none_when_all_parts_are() -> None:
    assert (NO_CACHE + FLOW_PARAMETERS).compute_key(_Ctx(), {}, {}) is None
    assert CompoundCachePolicy([FLOW_PARAMETERS]).compute_key(_Ctx(), {}, {}) is None
    assert CompoundCachePolicy([FLOW_PARAMETERS]).compute_key(_Ctx(), {}, {"a": 1}) is not None


def test_task_source_depends_on_the_code() -> None:
    def one(x):
        return x

    def two(x):
        return x + 1

    assert TASK_SOURCE.compute_key(_Ctx(one), {}, {}) != TASK_SOURCE.compute_key(_Ctx(two), {}, {})


def test_custom_policy_subclass() -> None:
    class Constant(CachePolicy):
        def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs):
            return "constant"

    calls = []

    @task(cache_policy=Constant())
    def f(x: int) -> int:
        calls.append(x)
        return x

    assert f(1) == 1 and f(2) == 1
    assert calls == [1]
    assert isinstance(CachePolicy.from_cache_key_fn(lambda c, p: "k"), CacheKeyFnPolicy)


def test_hit_restores_without_running_and_state_is_cached() -> None:
    calls = []
    completions = []

    @task(cache_policy=INPUTS, on_completion=[lambda t, r, s: completions.append(s.name)])
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    first = square(3, return_state=True)
    second = square(3, return_state=True)
    assert (first.name, second.name) == ("Completed", "Cached")
    assert second.is_completed() and second.result() == 9
    assert str(second) == "Cached(type=COMPLETED)"
    assert calls == [3]
    assert square(4) == 16 and calls == [3, 4]
    assert completions == ["Completed", "Cached", "Completed"]


def test_defaults_count_as_inputs() -> None:
    calls = []

    @task(cache_policy=INPUTS)
    def f(x: int, y: int = 2) -> int:
        calls.append(1)
        return x + y

    assert f(1) == f(1, 2) == f(x=1, y=2)
    assert len(calls) == 1


def test_cache_key_fn_wins_and_task_input_hash() -> None:
    calls = []

    @task(cache_key_fn=lambda ctx, params: "fixed", cache_policy=NO_CACHE)
    def fixed(x: int) -> int:
        calls.append(x)
        return x

    assert fixed(1) == 1 and fixed(2) == 1

    hashed_calls = []

    @task(cache_key_fn=task_input_hash)
    def hashed(x: object) -> object:
        hashed_calls.append(x)
        return x

    hashed(5)
    hashed(5)
    assert hashed_calls == [5]
    lock = threading.Lock()
    hashed(lock)
    hashed(lock)  # unhashable arguments: task_input_hash gives None, so no caching
    assert hashed_calls == [5, lock, lock]


def test_cache_key_fn_sees_the_task_run_context() -> None:
    seen = []

    def key(ctx, params) -> str:
        seen.append((ctx.task.name, ctx.task_run.name, dict(params)))
        return "k-" + str(params["x"])

    @task(cache_key_fn=key)
    def f(x: int) -> int:
        return x

    f(1)
    assert seen == [("f", "f", {"x": 1})]


def test_plain_task_writes_nothing_and_does_not_cache(flowpod_home: Path) -> None:
    calls = []

    @task
    def plain(x: int) -> int:
        calls.append(x)
        return x

    @flow
    def f() -> None:
        plain(1)
        plain(1)

    f()
    assert calls == [1, 1]
    assert not (flowpod_home / "storage").exists() or not any((flowpod_home / "storage").rglob("*"))


def test_run_id_caches_within_one_flow_run_only() -> None:
    calls = []

    @task(cache_policy=DEFAULT)
    def f(x: int) -> int:
        calls.append(x)
        return x

    @flow
    def twice() -> None:
        f(1)
        f(1)

    twice()
    twice()
    assert calls == [1, 1]


def test_flow_parameters_policy() -> None:
    calls = []

    @task(cache_policy=FLOW_PARAMETERS)
    def f() -> int:
        calls.append(1)
        return len(calls)

    @flow
    def g(n: int) -> int:
        return f()

    assert g(1) == 1 and g(1) == 1 and g(2) == 2


def test_expiration(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    @task(cache_policy=INPUTS, cache_expiration=datetime.timedelta(seconds=0.2))
    def f(x: int) -> int:
        calls.append(x)
        return x

    f(1)
    f(1)
    assert calls == [1]
    time.sleep(0.25)  # the behaviour under test is the passage of time itself
    f(1)
    assert calls == [1, 1]


def test_refresh_cache_recomputes_and_overwrites() -> None:
    counter = []

    @task(cache_policy=INPUTS)
    def f(x: int) -> int:
        counter.append(1)
        return len(counter)

    assert f(1) == 1
    refresh = f.with_options(refresh_cache=True)
    assert refresh(1) == 2
    assert f(1) == 2  # the refreshed value replaced the old one


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_unhashable_input_runs_the_task_uncached_with_one_error_line(tmp_path: Path) -> None:
    calls: list[int] = []

    @task(cache_policy=INPUTS, result_storage=str(tmp_path))
    def locked(lock: object, n: int) -> int:
        calls.append(n)
        return n * 2

    with capture_logs() as logs:
        assert locked(threading.Lock(), 1) == 2
    errors = [r for r in logs.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    [line] = [line for line in logs.lines if "cannot be hashed" in line]
    assert "Task run 'locked'" in line  # the task run's own logger
    assert "Task 'locked'" in line and "the input 'lock'" in line
    assert "cache_key_fn=" in line and "cache_policy=NO_CACHE" in line
    assert "not cached" in line
    assert _files_under(tmp_path) == []  # no cache write
    state = locked(threading.Lock(), 1, return_state=True)
    assert state.is_completed() and state.name == "Completed"
    assert state.state_details.cache_key is None
    assert calls == [1, 1]  # the second call ran again: no cache read either


def test_unhashable_input_under_the_default_policy_in_a_persisting_flow() -> None:
    calls: list[int] = []

    @task
    def locked(lock: object, n: int) -> int:
        calls.append(n)
        return n

    @flow(persist_result=True)
    def pipeline() -> list[str]:
        lock = threading.Lock()
        return [locked(lock, 1, return_state=True).name, locked(lock, 1, return_state=True).name]

    with capture_logs() as logs:
        assert pipeline() == ["Completed", "Completed"]
    assert calls == [1, 1]
    errors = [r.getMessage() for r in logs.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and all("the input 'lock'" in e for e in errors)


def test_a_policy_without_the_unhashable_input_still_caches() -> None:
    calls: list[int] = []

    @task(cache_policy=INPUTS - "lock")
    def g(lock: object, n: int) -> int:
        calls.append(n)
        return n

    assert g(threading.Lock(), 3) == 3
    assert g(threading.Lock(), 3) == 3
    assert calls == [3]


def test_unhashable_input_error_stays_public_for_explicit_hashing() -> None:
    with pytest.raises(UnhashableInputError) as info:
        hash_objects(threading.Lock(), raise_on_failure=True)
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnhashableInputError, match="the input 'lock'"):
        INPUTS.compute_key(_Ctx(), {"lock": threading.Lock()}, {})


def test_a_cache_key_fn_that_raises_still_fails_the_run() -> None:
    def strict_key(ctx: object, params: dict) -> str:
        digest = hash_objects(params, raise_on_failure=True)
        assert digest is not None
        return digest

    @task(cache_key_fn=strict_key)
    def f(lock: object) -> None:
        return None

    state = f(threading.Lock(), return_state=True)
    assert state.is_failed() and "UnhashableInputError" in state.message


def test_unserialisable_result_fails_with_serialization_error() -> None:
    @task(cache_policy=INPUTS)
    def make_lock(x: int) -> object:
        return threading.Lock()

    state = make_lock(1, return_state=True)
    assert state.is_failed()
    assert "SerializationError" in state.message
    with pytest.raises(SerializationError):
        state.result()


def test_json_serializer() -> None:
    @task(cache_policy=INPUTS, result_serializer="json")
    def f(x: int) -> dict:
        return {"x": x}

    assert f(1) == {"x": 1}
    assert f(1, return_state=True).name == "Cached"


def test_result_storage_folder(tmp_path: Path) -> None:
    @task(cache_policy=INPUTS, result_storage=str(tmp_path / "elsewhere"))
    def f(x: int) -> int:
        return x

    f(1)
    assert any((tmp_path / "elsewhere").rglob("*.json"))


def test_concurrent_runs_of_one_key_compute_once_in_threads() -> None:
    calls = []
    inside = threading.Event()

    @task(cache_policy=INPUTS)
    def slow(x: int) -> int:
        calls.append(x)
        inside.set()
        time.sleep(0.2)
        return x * 10

    @flow
    def f() -> list:
        futures = [slow.submit(7) for _ in range(4)]
        return sorted(fut.state.name for fut in futures if fut.wait() is None)

    names = f()
    assert calls == [7]
    assert names == ["Cached", "Cached", "Cached", "Completed"]


def test_async_tasks_share_the_cache_lock() -> None:
    import asyncio

    calls = []

    @task(cache_policy=INPUTS)
    async def slow(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0.1)
        return x

    @flow
    async def f() -> list:
        return list(await asyncio.gather(slow(1), slow(1), slow(1)))

    assert asyncio.run(f()) == [1, 1, 1]
    assert calls == [1]


SCRIPT = """
import sys, time
from pathlib import Path
from flowpod import flow, task
from flowpod.cache_policies import INPUTS

log = Path(sys.argv[1])
gate = Path(sys.argv[2]) if len(sys.argv) > 2 else None

@task(cache_policy=INPUTS)
def expensive(x: int) -> int:
    with log.open("a") as fh:
        fh.write("ran\\n")
    time.sleep(0.3)
    return x * 2

@flow
def main() -> None:
    state = expensive(21, return_state=True)
    print(state.name, state.result())

if gate is not None:
    print("ready", flush=True)
    deadline = time.monotonic() + 10
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
main()
"""


def _script(tmp_path: Path) -> Path:
    path = tmp_path / "cached_flow.py"
    path.write_text(textwrap.dedent(SCRIPT))
    return path


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "FLOWPOD_HOME": str(home), "FLOWPOD_LOGGING_LEVEL": "ERROR"}


def test_hit_survives_a_new_process(tmp_path: Path, flowpod_home: Path) -> None:
    script = _script(tmp_path)
    log = tmp_path / "runs.log"
    outputs = [
        subprocess.run([sys.executable, str(script), str(log)], capture_output=True, text=True,
                       env=_env(flowpod_home), check=True, timeout=60).stdout.split()
        for _ in range(2)
    ]
    assert outputs == [["Completed", "42"], ["Cached", "42"]]
    assert log.read_text().count("ran") == 1


def test_two_processes_compute_one_key_once(tmp_path: Path, flowpod_home: Path) -> None:
    script = _script(tmp_path)
    log = tmp_path / "runs.log"
    gate = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, str(script), str(log), str(gate)],
                         stdout=subprocess.PIPE, text=True, env=_env(flowpod_home))
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    gate.touch()
    results = sorted(proc.communicate(timeout=60)[0].split()[0] for proc in procs)
    assert results == ["Cached", "Completed"]
    assert log.read_text().count("ran") == 1


def test_cache_key_visible_on_the_run() -> None:
    runs = []

    @task(cache_policy=INPUTS)
    def f(x: int) -> int:
        runs.append(TaskRunContext.get().task_run)  # type: ignore[union-attr]
        return x

    f(1)
    assert runs[0].cache_key is not None


def test_result_storage_key_template_is_the_cache_key() -> None:
    calls = []

    @task(result_storage_key="report-{day}")
    def report(day: str, verbose: bool = False) -> str:
        calls.append(day)
        return day.upper()

    assert report("mon") == "MON"
    assert report("mon", verbose=True) == "MON"  # same key: verbose is not in the template
    assert calls == ["mon"]


def test_flow_persist_result_makes_tasks_cache_within_the_run() -> None:
    calls = []

    @task
    def f(x: int) -> int:
        calls.append(x)
        return x

    @flow(persist_result=True)
    def g() -> None:
        f(1)
        f(1)

    g()
    assert calls == [1]


def test_tasks_with_a_used_store_still_pickle(tmp_path: Path) -> None:
    import cloudpickle

    @task(cache_policy=INPUTS, result_storage=tmp_path / "store")
    def f(x: int) -> int:
        return x

    f(1)
    copy = cloudpickle.loads(cloudpickle.dumps(f))
    assert copy(2) == 2


def test_tasks_inherit_result_storage_and_serializer_from_the_flow(tmp_path: Path) -> None:
    @task(cache_policy=INPUTS)
    def f(x: int) -> dict:
        return {"x": x}

    @flow(result_storage=str(tmp_path / "flow-store"), result_serializer="json")
    def g() -> dict:
        return f(1)

    assert g() == {"x": 1}
    values = list((tmp_path / "flow-store").rglob("*.value"))
    assert len(values) == 1
    assert json.loads(values[0].read_bytes()) == {"x": 1}
