"""Helpers for the example tests: the stub module loaded by path, running an example as a process.

pytest puts this folder on sys.path (tests are not packages), so test modules import this by name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def load_stub_module() -> ModuleType:
    """The examples' offline GitHub stub (``flowpod_examples.stub_api``, shipped with flowpod)."""
    import flowpod_examples.stub_api

    return flowpod_examples.stub_api


stub_api = load_stub_module()


# Loads an example by path, calls one of its module-level flows with JSON keyword arguments and
# prints the flow's return value as JSON on the last line: what `module:flow` users do.
CALL_FLOW = """
import importlib.util, json, sys
path, flow_name, kwargs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
spec = importlib.util.spec_from_file_location("example_under_test", path)
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
result = getattr(module, flow_name)(**kwargs)
print("RESULT=" + json.dumps(result, default=str))
"""


@dataclass
class ExampleRun:
    returncode: int
    output: str  # stdout and stderr interleaved, as a terminal shows them
    seconds: float

    @property
    def result(self) -> Any:
        for line in reversed(self.output.splitlines()):
            if line.startswith("RESULT="):
                return json.loads(line.removeprefix("RESULT="))
        raise AssertionError(f"the flow printed no result:\n{self.output}")


def run_example(
    example: str,
    *,
    api: str | None,
    flow: str | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
    **kwargs: Any,
) -> ExampleRun:
    """Run examples/<example> as its own process: its __main__, or `flow(**kwargs)` if given.

    `api` is the stub's URL (FLOWPOD_EXAMPLE_API), or None to let the example start its own.
    FLOWPOD_HOME comes from the environment, which tests/conftest.py points at a fresh folder.
    """
    path = EXAMPLES / example
    assert path.is_file(), f"no example {path}"
    env = dict(os.environ, PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1")
    env.pop(stub_api.ENV_VAR, None)
    if api is not None:
        env[stub_api.ENV_VAR] = api
    if flow is None:
        cmd = [sys.executable, str(path)]
    else:
        cmd = [sys.executable, "-c", CALL_FLOW, str(path), flow, json.dumps(kwargs)]
    started = time.monotonic()
    done = subprocess.run(
        cmd,
        env=env,
        cwd=cwd or ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )
    return ExampleRun(done.returncode, done.stdout, time.monotonic() - started)
