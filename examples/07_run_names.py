"""Task run names: the default `<task>-<n>`, a format template, a callable, and one built from
`flowpod.runtime`; plus tags from the decorator and from a `tags(...)` block.

Each task reports its own run name through `flowpod.runtime.task_run`. Expected output (the
weekday is today's):

    ... | INFO    | Flow run '...' - Created task run 'say_hello-0' for task 'say_hello'
    ... | INFO    | Task run 'hello-marvin-on-Thursday' - my run is 'hello-marvin-on-Thursday'
    ... | INFO    | Task run 'Thursday-is-a-lovely-day' - my run is 'Thursday-is-a-lovely-day'
    ... | INFO    | Task run 'run-names-my-example-task-with-marvin-and-100' - ...
    ... | INFO    | Task run 'say_hello-0' - my run is 'say_hello-0', tags ['example', 'greeting']
"""

from __future__ import annotations

import datetime

from flowpod import flow, tags, task
from flowpod.runtime import flow_run, task_run


def report() -> str:
    line = f"my run is {task_run.name!r}, tags {sorted(task_run.tags)}"
    print(line)
    return str(task_run.name)


@task(
    name="My Example Task",
    description="A task whose runs are named from its arguments.",
    task_run_name="hello-{name}-on-{date:%A}",
)
def templated(name: str, date: datetime.datetime) -> str:
    return report()


def lovely_day() -> str:
    return f"{datetime.datetime.now(datetime.UTC):%A}-is-a-lovely-day"


@task(task_run_name=lovely_day)
def from_callable(name: str) -> str:
    return report()


def from_runtime_context() -> str:
    parameters = task_run.parameters
    return (
        f"{flow_run.flow_name}-{task_run.task_name}"
        f"-with-{parameters['name']}-and-{parameters['limit']}"
    )


@task(name="my-example-task", task_run_name=from_runtime_context)
def with_runtime(name: str, limit: int = 100) -> str:
    return report()


@task(tags={"greeting"})
def say_hello() -> str:
    return report()


@flow(name="run-names", log_prints=True)
def run_names_flow(name: str = "marvin") -> list[str]:
    names = [
        templated(name=name, date=datetime.datetime.now(datetime.UTC)),
        from_callable(name=name),
        with_runtime(name=name),
    ]
    with tags("example"):
        names.append(say_hello())
    return names


if __name__ == "__main__":
    run_names_flow()
