"""The wheel the image installs: built from what the Dockerfile copies, complete, and runnable.

No Docker: the builder stage's COPY instructions are replayed on the build context .dockerignore
leaves (packaging_support), the wheel is built from that tree with this venv's pip, offline (no
build isolation, no index), and its unpacked copy - first on PYTHONPATH, so it is what imports,
not the editable checkout - runs the operator's, the pods' and the CLI's entry points and an
example flow end to end.
"""

from __future__ import annotations

import ast
import configparser
import email.parser
import os
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging_support import REPO, build_context, lay_out_stage, parse_dockerfile

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# Where setuptools finds the packages (pyproject: tool.setuptools.packages.find.where).
PACKAGE_ROOTS = {"flowpod": "sdk", "flowpod_operator": "operator", "flowpod_examples": "examples"}


@dataclass(frozen=True)
class BuiltWheel:
    path: Path
    names: frozenset[str]
    unpacked: Path

    @property
    def dist_info(self) -> str:
        (folder,) = {name.split("/")[0] for name in self.names if ".dist-info/" in name}
        return folder

    def read(self, name: str) -> str:
        with zipfile.ZipFile(self.path) as archive:
            return archive.read(name).decode()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> BuiltWheel:
    dockerfile = parse_dockerfile((REPO / "Dockerfile").read_text())
    builder = dockerfile.builder
    rootfs = tmp_path_factory.mktemp("builder-rootfs")
    run_dirs = lay_out_stage(builder, build_context(REPO), rootfs)
    (wheel_run,) = [run for run in builder.all("RUN") if "pip wheel" in run.args]
    # Where that RUN builds: its working directory, with everything the COPYs before it put there.
    source = rootfs / run_dirs[wheel_run.line].lstrip("/")
    out = tmp_path_factory.mktemp("wheelhouse")
    # The image's build fetches the build backend (pip's build isolation); here it must come
    # from the venv, so the test needs no network.
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--check-build-dependencies", "--no-index", "--disable-pip-version-check",
         "--wheel-dir", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    if built.returncode != 0:
        requires = ", ".join(PYPROJECT["build-system"]["requires"])
        pytest.fail(
            f"building the wheel offline failed (exit {built.returncode}); the venv needs the "
            f"build backend pyproject.toml names ({requires}), e.g. from the dev extras.\n"
            f"{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
        )
    (path,) = out.glob("*.whl")
    unpacked = tmp_path_factory.mktemp("unpacked-wheel")
    with zipfile.ZipFile(path) as archive:
        archive.extractall(unpacked)
        names = frozenset(archive.namelist())
    return BuiltWheel(path, names, unpacked)


def _run(wheel: BuiltWheel, args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """This venv's python with the unpacked wheel first on the path (dependencies from the venv)."""
    env = dict(os.environ, PYTHONPATH=str(wheel.unpacked), PYTHONNOUSERSITE="1",
               PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


# --- contents ------------------------------------------------------------------------------------


def test_wheel_holds_the_entry_modules(wheel: BuiltWheel) -> None:
    assert {
        "flowpod/__init__.py",
        "flowpod/py.typed",
        "flowpod/pod/__main__.py",
        "flowpod_operator/__main__.py",
        "flowpod_examples/repo_stats.py",
        "flowpod_examples/stub_api.py",
    } <= wheel.names


def test_wheel_holds_every_module_of_the_checkout(wheel: BuiltWheel) -> None:
    in_checkout = {
        path.relative_to(REPO / root).as_posix()
        for package, root in PACKAGE_ROOTS.items()
        for path in (REPO / root / package).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert in_checkout, "no modules found in the checkout"
    assert {name for name in wheel.names if name.endswith(".py")} == in_checkout


def test_wheel_holds_only_the_three_packages(wheel: BuiltWheel) -> None:
    top_level = {name.split("/")[0] for name in wheel.names}
    assert top_level == {*PACKAGE_ROOTS, wheel.dist_info}
    assert not [name for name in wheel.names
                if "tests/" in name or "bench/" in name or name.endswith((".pyc", ".pyo"))]


def test_entry_points_declare_the_console_scripts(wheel: BuiltWheel) -> None:
    entry_points = configparser.ConfigParser()
    entry_points.read_string(wheel.read(f"{wheel.dist_info}/entry_points.txt"))
    scripts = dict(entry_points["console_scripts"])
    assert {"flowpod", "flowpod-operator"} <= set(scripts)
    assert scripts == PYPROJECT["project"]["scripts"]


def test_metadata_requires_the_project_dependencies(wheel: BuiltWheel) -> None:
    metadata = email.parser.Parser().parsestr(wheel.read(f"{wheel.dist_info}/METADATA"))
    required = {str(Requirement(item)) for item in metadata.get_all("Requires-Dist", [])
                if Requirement(item).marker is None}
    assert required == {str(Requirement(item)) for item in PYPROJECT["project"]["dependencies"]}


# --- running from the unpacked wheel -------------------------------------------------------------


def test_the_unpacked_wheel_is_what_imports(wheel: BuiltWheel, tmp_path: Path) -> None:
    probe = ("import flowpod, flowpod_operator, flowpod_examples.repo_stats as m; "
             "print(flowpod.__file__); print(flowpod_operator.__file__); print(m.__file__)")
    result = _run(wheel, ["-c", probe], tmp_path)
    assert result.returncode == 0, result.stderr
    files = [Path(line) for line in result.stdout.splitlines()]
    assert len(files) == 3
    assert all(file.is_relative_to(wheel.unpacked) for file in files), files


def test_operator_command_starts(wheel: BuiltWheel, tmp_path: Path) -> None:
    result = _run(wheel, ["-m", "flowpod_operator", "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Run flowpod's Kubernetes operator" in result.stdout
    assert "--namespace" in result.stdout


def test_pod_runner_command_starts(wheel: BuiltWheel, tmp_path: Path) -> None:
    result = _run(wheel, ["-m", "flowpod.pod", "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "{task,flow}" in result.stdout
    # A pod started with a malformed target exits 2 (usage), before reading any store; pods log
    # to stdout, which is what `kubectl logs` shows.
    refused = _run(wheel, ["-m", "flowpod.pod", "task", "no-namespace", "--attempt", "1"],
                   tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "expected <namespace>/<taskrun>, got 'no-namespace'" in refused.stdout


@pytest.mark.parametrize("script", sorted(PYPROJECT["project"]["scripts"]))
def test_console_script_targets_run(wheel: BuiltWheel, tmp_path: Path, script: str) -> None:
    # What the venv's bin/<script> wrapper does: import the target and call it.
    module, _, attribute = PYPROJECT["project"]["scripts"][script].partition(":")
    call = (f"import sys; sys.argv = [{script!r}, '--help']; "
            f"from {module} import {attribute} as main; sys.exit(main())")
    result = _run(wheel, ["-c", call], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: {script}")


def test_example_flow_runs_end_to_end(wheel: BuiltWheel, tmp_path: Path,
                                      flowpod_home: Path) -> None:
    # As scripts/demo runs an example: the flow in-process, its GitHub calls answered by the
    # offline stub it starts itself (conftest removed any FLOWPOD_EXAMPLE_API).
    assert os.environ["FLOWPOD_HOME"] == str(flowpod_home)
    result = _run(wheel, ["-m", "flowpod_examples.repo_stats"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # The figures the stub serves for PrefectHQ/prefect (flowpod_examples.stub_api.KNOWN_REPOS).
    expected = {"PrefectHQ/prefect": {"stars": 12157, "forks": 1251}}
    assert ast.literal_eval(result.stdout.strip().splitlines()[-1]) == expected
    assert "PrefectHQ/prefect: 12157 stars, 1251 forks" in result.stderr
    assert "Finished in state Completed" in result.stderr
