"""Tasks as instance methods, classmethods and staticmethods."""

from __future__ import annotations

from flowpod import flow, runtime, task


class Counter:
    base = 100

    def __init__(self, start: int) -> None:
        self.start = start

    @task
    def add(self, n: int) -> int:
        return self.start + n

    @classmethod
    @task
    def from_class(cls, n: int) -> int:
        return cls.base + n

    @staticmethod
    @task
    def static(n: int) -> int:
        return -n

    @task
    def run_name(self) -> str:
        return runtime.task_run.name


def test_instance_method_outside_and_inside_flow() -> None:
    c = Counter(5)
    assert c.add(1) == 6

    @flow
    def f() -> tuple[int, int]:
        return c.add(2), c.add.submit(3).result()

    assert f() == (7, 8)


def test_classmethod_and_staticmethod() -> None:
    assert Counter.from_class(1) == 101
    assert Counter(0).from_class(2) == 102
    assert Counter.static(3) == -3

    @flow
    def f() -> tuple[int, int]:
        return Counter.from_class.submit(5).result(), Counter.static(4)

    assert f() == (105, -4)


def test_method_task_names_and_map() -> None:
    c = Counter(10)

    @flow
    def f() -> tuple[str, list[int]]:
        return c.run_name(), c.add.map([1, 2, 3]).result()

    name, results = f()
    assert name == "run_name-0"
    assert results == [11, 12, 13]


def test_unbound_access_returns_the_task() -> None:
    from flowpod import Task

    assert isinstance(Counter.__dict__["add"], Task)
    assert Counter.add is Counter.__dict__["add"]


def test_flow_as_instance_method() -> None:
    from flowpod import flow

    class Pipeline:
        def __init__(self, factor: int) -> None:
            self.factor = factor

        @flow
        def run(self, x: int) -> int:
            return Counter(self.factor).add(x)

    assert Pipeline(3).run(4) == 7
    assert Pipeline.run.name == "run"
