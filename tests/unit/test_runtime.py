"""flowpod.runtime.task_run / flow_run: values inside runs and empty values outside."""

from __future__ import annotations

import asyncio

import pytest

from flowpod import flow, runtime, tags, task


def test_empty_values_outside_a_run() -> None:
    assert runtime.task_run.id is None and runtime.task_run.name is None
    assert runtime.task_run.parameters == {} and runtime.task_run.tags == []
    assert runtime.task_run.run_count == 0
    assert runtime.flow_run.id is None and runtime.flow_run.flow_name is None
    assert runtime.flow_run.parameters == {} and runtime.flow_run.run_count == 0


def test_task_run_attributes() -> None:
    @task(tags={"t"})
    def inside(x: int, y: int = 5) -> dict:
        return {
            "id": runtime.task_run.id,
            "name": runtime.task_run.name,
            "task_name": runtime.task_run.task_name,
            "parameters": runtime.task_run.parameters,
            "tags": runtime.task_run.tags,
            "run_count": runtime.task_run.run_count,
            "flow_run_id": runtime.task_run.flow_run_id,
        }

    @flow
    def f() -> tuple[dict, str]:
        return inside(1), runtime.flow_run.id

    values, flow_run_id = f()
    assert values["name"] == "inside-0" and values["task_name"] == "inside"
    assert values["parameters"] == {"x": 1, "y": 5}
    assert values["tags"] == ["t"] and values["run_count"] == 1
    assert values["flow_run_id"] == flow_run_id and values["id"]


def test_flow_run_attributes() -> None:
    @flow(name="my-flow")
    def f(a: int, b: str = "x") -> dict:
        return {
            "name": runtime.flow_run.name,
            "flow_name": runtime.flow_run.flow_name,
            "parameters": runtime.flow_run.parameters,
            "tags": runtime.flow_run.tags,
            "run_count": runtime.flow_run.run_count,
        }

    with tags("nightly"):
        values = f(1)
    assert values["flow_name"] == "my-flow"
    assert values["parameters"] == {"a": 1, "b": "x"}
    assert values["tags"] == ["nightly"] and values["run_count"] == 1


def test_runtime_in_submitted_and_async_tasks() -> None:
    @task
    def sync_name() -> str:
        return runtime.task_run.name

    @task
    async def async_name() -> str:
        await asyncio.sleep(0)
        return runtime.task_run.name

    @flow
    async def f() -> list[str]:
        return [await async_name(), sync_name.submit().result()]

    assert asyncio.run(f()) == ["async_name-0", "sync_name-0"]


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="available"):
        runtime.task_run.nope  # noqa: B018
    assert "run_count" in dir(runtime.flow_run)


def test_getter_functions_mirror_the_attributes() -> None:
    @task
    def inside() -> tuple:
        return runtime.task_run.get_name(), runtime.task_run.get_run_count()

    @flow
    def f() -> tuple:
        return inside(), runtime.flow_run.get_flow_name()

    assert f() == (("inside-0", 1), "f")
    assert runtime.task_run.get_id() is None
