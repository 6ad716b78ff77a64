"""The public API is declared once (a sorted ``__all__`` per public module) and is importable."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest

import flowpod

PUBLIC_MODULES = [
    "flowpod",
    "flowpod.tasks",
    "flowpod.flows",
    "flowpod.states",
    "flowpod.futures",
    "flowpod.task_runners",
    "flowpod.cache_policies",
    "flowpod.context",
    "flowpod.logging",
    "flowpod.exceptions",
    "flowpod.runtime",
    "flowpod.runtime.task_run",
    "flowpod.runtime.flow_run",
    "flowpod.utilities.annotations",
]


def test_top_level_all_is_sorted_and_exactly_the_public_names() -> None:
    names = flowpod.__all__
    assert names == sorted(names)
    # The names load on first use: resolve every one, then nothing else may be public.
    for name in names:
        assert getattr(flowpod, name) is not None
    public = {
        name
        for name, value in vars(flowpod).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(names) - {"__version__"}


def test_importing_a_private_package_does_not_load_the_engine() -> None:
    # What the operator imports: the run contract and storage, nothing of tasks, flows, engine.
    code = (
        "import sys, flowpod._contract.resources, flowpod._contract.lifecycle, flowpod._storage;"
        "print(','.join(sorted(m for m in sys.modules if m.startswith("
        "('flowpod._engine', 'flowpod.tasks', 'flowpod.flows', 'flowpod.task_runners')))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_top_level_exposes_the_prefect_compatible_names() -> None:
    expected = {"task", "flow", "Task", "Flow", "State", "tags", "get_run_logger", "unmapped",
                "quote", "allow_failure"}
    assert expected <= set(flowpod.__all__)
    assert isinstance(flowpod.__version__, str)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_module_lists_importable_names(module_name: str) -> None:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    assert names is not None, f"{module_name} has no __all__"
    assert list(names) == sorted(names), f"{module_name}.__all__ is not sorted"
    for name in names:
        assert hasattr(module, name), f"{module_name}.{name} in __all__ but missing"


def test_tasks_module_reexports() -> None:
    from flowpod.tasks import exponential_backoff, task_input_hash

    assert exponential_backoff(2)(3) == [2, 4, 8]
    assert callable(task_input_hash)


def test_import_is_lean() -> None:
    code = (
        "import sys, flowpod, flowpod.tasks, flowpod.flows, flowpod.runtime;"
        "heavy = [m for m in ('pydantic', 'cloudpickle', 'kubernetes', 'kopf', 'boto3', "
        "'asyncio') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_importing_does_not_touch_the_root_logger() -> None:
    code = (
        "import logging, flowpod;"
        "from flowpod import flow;"
        "f = flow(lambda: 1, name='x'); f();"
        "print(len(logging.getLogger().handlers))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"
