"""Run names: <task>-<n> counters, flow-run slugs, task_run_name / flow_run_name templates and
callables."""

from __future__ import annotations

import re

import pytest

from flowpod import flow, runtime, task


@task
def work(x: int = 0) -> str:
    return runtime.task_run.name


def test_task_run_names_count_per_task_within_a_flow_run() -> None:
    @task
    def other() -> str:
        return runtime.task_run.name

    @flow
    def f() -> list[str]:
        names = [work(), work(), other(), work.submit().result()]
        names += work.map([1, 2]).result()
        return names

    assert f() == ["work-0", "work-1", "other-0", "work-2", "work-3", "work-4"]
    assert f()[0] == "work-0"  # counters are per flow run


def test_flow_run_names_are_two_word_slugs() -> None:
    @flow
    def f() -> str:
        return runtime.flow_run.name

    names = {f() for _ in range(5)}
    assert all(re.fullmatch(r"[a-z]+-[a-z]+", name) for name in names)
    assert len(names) > 1


def test_task_run_name_template_with_defaults() -> None:
    @task(task_run_name="fetch-{url}-{page}")
    def fetch(url: str, page: int = 1) -> str:
        return runtime.task_run.name

    @flow
    def f() -> list[str]:
        return [fetch("a"), fetch.submit("b", page=2).result()]

    assert f() == ["fetch-a-1", "fetch-b-2"]
    assert fetch("outside") == "fetch-outside-1"


def test_task_run_name_callables() -> None:
    def no_args() -> str:
        return f"from-{runtime.task_run.task_name}-{runtime.task_run.parameters['x']}"

    def with_parameters(parameters: dict) -> str:
        return f"p-{parameters['x']}"

    first = task(task_run_name=no_args)(lambda x: runtime.task_run.name)
    second = task(task_run_name=with_parameters)(lambda x: runtime.task_run.name)
    assert first(3) == "from-<lambda>-3"
    assert second(4) == "p-4"


def test_task_run_name_template_with_unknown_field_fails_the_run() -> None:
    @task(task_run_name="x-{missing}")
    def t() -> None:
        return None

    with pytest.raises(ValueError, match="missing"):
        t()


def test_flow_run_name_template_and_callable() -> None:
    @flow(flow_run_name="report-{day}-{kind}")
    def report(day: str, kind: str = "daily") -> str:
        return runtime.flow_run.name

    assert report("mon") == "report-mon-daily"

    @flow(flow_run_name=lambda: "fixed-name")
    def fixed() -> str:
        return runtime.flow_run.name

    assert fixed() == "fixed-name"


def test_flow_name_default_replaces_underscores() -> None:
    @flow
    def my_nice_flow() -> None:
        return None

    assert my_nice_flow.name == "my-nice-flow"


def test_submitted_name_template_waits_for_upstream_values() -> None:
    @task
    def make() -> str:
        return "computed"

    @task(task_run_name="use-{value}")
    def use(value: str) -> str:
        return runtime.task_run.name

    @flow
    def f() -> str:
        return use.submit(make.submit()).result()

    assert f() == "use-computed"
