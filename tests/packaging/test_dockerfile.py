"""The Dockerfile and .dockerignore agree with what the code and the cluster expect of the image.

Read without Docker (packaging_support parses both the way Docker does); test_wheel.py builds the
wheel from the tree the builder stage copies.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging_support import (
    REPO,
    Dockerfile,
    IgnoreRules,
    build_context,
    lay_out_stage,
    parse_dockerfile,
)

from flowpod_operator.settings import OperatorConfig

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VENV = "/opt/flowpod"


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile((REPO / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def context() -> set[str]:
    return build_context(REPO)


def test_final_user_is_the_uid_the_operator_runs_pods_as(dockerfile: Dockerfile) -> None:
    users = dockerfile.final.all("USER")
    assert users, "the final stage must not run as root"
    # The last USER wins; numeric, so the kubelet can check runAsNonRoot without /etc/passwd.
    uid, _, gid = users[-1].args.partition(":")
    assert uid.isdigit() and gid.isdigit(), users[-1]
    assert int(uid) == OperatorConfig().run_as_user
    assert int(uid) != 0


def test_extra_requirements_are_installed_into_the_venv(dockerfile: Dockerfile) -> None:
    uses = re.compile(r"\$\{?EXTRA_REQUIREMENTS\b")
    found = []
    for stage in dockerfile.stages:
        declared = False
        for instruction in stage.instructions:
            # An ARG is visible only after its declaration, and only in its own stage.
            name = instruction.args.split("=")[0]
            if instruction.keyword == "ARG" and name == "EXTRA_REQUIREMENTS":
                assert instruction.args in ('EXTRA_REQUIREMENTS=""', "EXTRA_REQUIREMENTS="), (
                    "EXTRA_REQUIREMENTS should default to nothing"
                )
                declared = True
            elif declared and instruction.keyword == "RUN" and uses.search(instruction.args):
                found.append(instruction.args)
    assert found, "no RUN uses EXTRA_REQUIREMENTS after its ARG in the same stage"
    for run in found:
        assert f"{VENV}/bin/python -m pip install" in run, run
        # Unquoted so the specs split on spaces; `set -f` first, so `pkg[extra]` is not a glob.
        use = uses.search(run)
        assert use is not None and "set -f" in run[: use.start()], run


def test_the_image_installs_the_operator_and_dashboard_extras(dockerfile: Dockerfile) -> None:
    # The chart runs `flowpod-operator` and, with ui.enabled, `flowpod ui` from this one image.
    extras = PYPROJECT["project"]["optional-dependencies"]
    runs = [run.args for run in dockerfile.builder.all("RUN")]
    # The dependency layer: its script, run on pyproject.toml, lists the base dependencies and
    # both extras' (so the slow downloads are cached before the source is copied).
    (layer,) = [args for args in runs if "tomllib" in args]
    words = shlex.split(layer)
    script = words[words.index("-c") + 1]
    listed = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    assert sorted(listed) == sorted(
        PYPROJECT["project"]["dependencies"] + extras["operator"] + extras["ui"])
    # The wheel's install names the same extras, so pip check sees them resolved together.
    installs = re.findall(r'pip install "\$\{wheel\}\[([^\]]*)\]"', " ".join(runs))
    assert installs and {frozenset(i.split(",")) for i in installs} == {
        frozenset({"operator", "ui"})}, installs


def test_no_entrypoint_and_the_default_command_is_a_console_script(
    dockerfile: Dockerfile,
) -> None:
    # The Helm chart and the operator set the container's `command`; an ENTRYPOINT would be
    # prepended to none of them but would change what `docker run IMAGE cmd` does.
    assert not [i for stage in dockerfile.stages for i in stage.all("ENTRYPOINT")]
    (cmd,) = dockerfile.final.all("CMD")
    assert cmd.args.startswith("["), "exec form, so the operator gets the signals, not a shell"
    assert cmd.words() == ["flowpod-operator"]
    assert "flowpod-operator" in PYPROJECT["project"]["scripts"]


def test_final_stage_gets_the_venv_and_puts_it_first_on_path(dockerfile: Dockerfile) -> None:
    builder, final = dockerfile.builder, dockerfile.final
    assert any(f"python -m venv {VENV}" in run.args for run in builder.all("RUN"))
    copies = [copy.words() for copy in final.all("COPY")]
    assert copies == [[f"--from={builder.name}", VENV, VENV]], "only the venv is copied"
    env = " ".join(item.args for item in final.all("ENV"))
    # The operator's pods run `python -m flowpod.pod ...`: `python` must be the venv's.
    assert re.search(rf"\bPATH={VENV}/bin:", env), env
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env


def test_the_venv_is_compiled_after_the_last_install(dockerfile: Dockerfile) -> None:
    # Task pods run read-only with PYTHONDONTWRITEBYTECODE: a module without its .pyc would be
    # compiled again in every pod, so the builder compiles the venv after the last pip install.
    runs = [run.args for run in dockerfile.builder.all("RUN")]
    installs = [i for i, args in enumerate(runs) if "pip install" in args]
    compiles = [i for i, args in enumerate(runs)
                if re.search(rf"-m compileall\b.*\s{VENV}(/lib)?\b", args)]
    assert installs and compiles, runs
    last_install = runs[installs[-1]]
    assert compiles[-1] > installs[-1] or (
        compiles[-1] == installs[-1]
        and last_install.rindex("compileall") > last_install.rindex("pip install")
    ), "compile after the last pip install, or its modules go without bytecode"
    env = " ".join(item.args for stage in dockerfile.stages for item in stage.all("ENV"))
    assert "PIP_NO_COMPILE" not in env


def test_both_stages_use_one_pinned_python(dockerfile: Dockerfile) -> None:
    # The venv's bin/python links to the base image's interpreter: same image in both stages.
    assert dockerfile.builder.base == dockerfile.final.base
    image, _, tag = dockerfile.final.base.partition(":")
    assert image == "python"
    match = re.match(r"(\d+\.\d+)-slim", tag)
    assert match, f"pin a slim tag with the Python version, not {tag!r}"
    assert match.group(1) in SpecifierSet(PYPROJECT["project"]["requires-python"])


def test_no_compiler_is_installed_in_the_final_stage(dockerfile: Dockerfile) -> None:
    runs = " ".join(run.args for run in dockerfile.final.all("RUN"))
    assert not re.search(r"\b(apt-get|apt|apk)\b.*\b(gcc|build-essential|g\+\+|clang)\b", runs)


def test_build_context_keeps_the_wheel_sources_and_drops_the_rest(context: set[str]) -> None:
    assert {
        "pyproject.toml",
        PYPROJECT["project"]["readme"],
        "sdk/flowpod/__init__.py",
        "operator/flowpod_operator/__main__.py",
        "examples/flowpod_examples/repo_stats.py",
    } <= context
    for folder in (".git", ".venv", "tests", "bench", "build", "dist"):
        assert not [path for path in context if path.startswith(folder + "/")], folder
    assert not [path for path in context
                if "/__pycache__/" in f"/{path}" or ".egg-info/" in path
                or path.endswith((".pyc", ".pyo"))]


def test_every_builder_copy_source_is_in_the_context(
    dockerfile: Dockerfile, context: set[str], tmp_path: Path
) -> None:
    # Docker fails a COPY whose source the context lacks; lay_out_stage does the same.
    lay_out_stage(dockerfile.builder, context, tmp_path)
    assert (tmp_path / "src" / "pyproject.toml").is_file()


@pytest.mark.parametrize(
    ("rules", "path", "excluded"),
    [
        ("*.pyc", "a.pyc", True),
        ("*.pyc", "sdk/a.pyc", False),  # unlike .gitignore: from the context's root only
        ("**/*.pyc", "sdk/flowpod/a.pyc", True),
        ("**/__pycache__", "__pycache__/x.pyc", True),
        ("**/__pycache__", "sdk/flowpod/__pycache__/x.pyc", True),
        ("tests", "tests/unit/test_x.py", True),  # a folder's pattern covers its contents
        ("tests", "sdk/tests/x.py", False),
        ("/build", "build/lib/x.py", True),
        ("docs\n!docs/keep.md", "docs/keep.md", False),  # the last matching pattern decides
        ("!docs/keep.md\ndocs", "docs/keep.md", True),
        ("# tests", "tests/x.py", False),
    ],
)
def test_dockerignore_matching_follows_docker(rules: str, path: str, excluded: bool) -> None:
    assert IgnoreRules.parse(rules).excludes(path) is excluded
