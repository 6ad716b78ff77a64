"""The flowpod command line: run, config set/unset/view, version."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from flowpod._cli.local import format_result
from flowpod._cli.main import main
from flowpod._cli.targets import parse_param, parse_params
from flowpod._common.settings import get_settings, profile_path


@pytest.fixture(autouse=True)
def _restore_import_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`flowpod run` imports the flow file and puts its folder on sys.path, as python does."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    # Forget only the test's own flow files: libraries imported meanwhile must stay imported.
    temp_root = str(tmp_path_factory.getbasetemp())
    for name in set(sys.modules) - modules:
        if str(getattr(sys.modules[name], "__file__", None) or "").startswith(temp_root):
            del sys.modules[name]


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _needs_engine() -> None:
    pytest.importorskip("flowpod.flows", reason="the engine's flowpod.flows is not there yet")


# --- parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n=3", ("n", 3)),
        ("x=2.5", ("x", 2.5)),
        ("flag=true", ("flag", True)),
        ("nothing=null", ("nothing", None)),
        ('names=["a", "b"]', ("names", ["a", "b"])),
        ('cfg={"k": 1}', ("cfg", {"k": 1})),
        ("name=world", ("name", "world")),
        ('quoted="3"', ("quoted", "3")),
        ("url=http://x/?a=b", ("url", "http://x/?a=b")),
        ("empty=", ("empty", "")),
        (" spaced = 1", ("spaced", 1)),
    ],
)
def test_param_values_are_json_when_they_parse(text: str, expected: tuple[str, object]) -> None:
    assert parse_param(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("novalue", "not KEY=VALUE"), ("=3", "not KEY=VALUE"), ("a-b=1", "identifier")],
)
def test_malformed_params(text: str, fragment: str) -> None:
    with pytest.raises(click.BadParameter, match=fragment):
        parse_param(text)


def test_duplicate_params_are_rejected() -> None:
    with pytest.raises(click.BadParameter, match="more than once"):
        parse_params(["a=1", "a=2"])


def test_format_result() -> None:
    assert format_result("plain text") == "plain text"
    assert format_result({"a": [1, None]}) == '{"a": [1, null]}'
    assert format_result({1, 2}) == "{1, 2}"


# --- run: usage errors (exit 2, clear message) ---------------------------------------------------


def test_run_missing_file(tmp_path: Path) -> None:
    code, _, err = _invoke("run", f"{tmp_path}/absent.py:flow")
    assert code == 2
    assert "no such file" in err and "absent.py" in err


def test_run_target_must_be_a_python_file(tmp_path: Path) -> None:
    code, _, err = _invoke("run", "flows.txt:my_flow")
    assert code == 2 and "PATH.py:FLOW_NAME" in err


def test_run_malformed_param(tmp_path: Path) -> None:
    (tmp_path / "f.py").write_text("x = 1\n")
    code, _, err = _invoke("run", f"{tmp_path}/f.py:x", "--param", "oops")
    assert code == 2 and "'oops' is not KEY=VALUE" in err


FLOW_FILE = textwrap.dedent(
    """
    from flowpod import flow, task

    @task
    def add(a: int, b: int) -> int:
        return a + b

    @flow
    def adder(a: int, b: int = 2) -> int:
        return add(a, b)

    @flow
    def echo(message: str, times: int = 1):
        return [message] * times

    @flow
    def quiet() -> None:
        print("side effect only")

    @flow
    def broken(n: int) -> int:
        raise ValueError("flow broke on purpose")

    not_a_flow = 42
    """
)


@pytest.fixture
def flow_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_flows.py"
    path.write_text(FLOW_FILE)
    return path


def test_run_unknown_flow_lists_the_flows(flow_file: Path) -> None:
    _needs_engine()
    code, _, err = _invoke("run", f"{flow_file}:nope")
    assert code == 2
    assert "no flow named 'nope'" in err and "adder" in err and "broken" in err


def test_run_attribute_that_is_not_a_flow(flow_file: Path) -> None:
    _needs_engine()
    code, _, err = _invoke("run", f"{flow_file}:not_a_flow")
    assert code == 2 and "not a flow" in err and "@flow" in err


def test_run_without_flow_name_needs_a_single_flow(flow_file: Path, tmp_path: Path) -> None:
    _needs_engine()
    code, _, err = _invoke("run", str(flow_file))
    assert code == 2 and "defines 4 flows" in err
    single = tmp_path / "single.py"
    single.write_text("from flowpod import flow\n\n@flow\ndef only():\n    return 'only ran'\n")
    code, out, _ = _invoke("run", str(single))
    assert code == 0 and out.strip().splitlines()[-1] == "only ran"


# --- run: success and failure --------------------------------------------------------------------


def test_run_prints_the_result(flow_file: Path) -> None:
    _needs_engine()
    code, out, _ = _invoke("run", f"{flow_file}:adder", "--param", "a=40")
    assert code == 0
    assert out.strip().splitlines()[-1] == "42"
    code, out, _ = _invoke("run", f"{flow_file}:echo", "-p", "message=hi", "-p", "times=2")
    assert code == 0 and out.strip().splitlines()[-1] == '["hi", "hi"]'


def test_run_prints_no_result_line_for_none(flow_file: Path) -> None:
    _needs_engine()
    code, out, _ = _invoke("run", f"{flow_file}:quiet")
    assert code == 0 and "None" not in out


def test_run_failing_flow_exits_1(flow_file: Path) -> None:
    _needs_engine()
    code, _, _ = _invoke("run", f"{flow_file}:broken", "--param", "n=1")
    assert code == 1


def test_run_real_subprocess(flow_file: Path) -> None:
    _needs_engine()
    env = {**os.environ, "FLOWPOD_HOME": str(flow_file.parent / "home")}
    command = [sys.executable, "-m", "flowpod", "run", f"{flow_file}:adder"]
    done = subprocess.run(
        [*command, "--param", "a=1", "--param", "b=2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "3"
    assert "Finished in state Completed" in done.stdout + done.stderr  # the flow's own logs

    failed = subprocess.run(
        [sys.executable, "-m", "flowpod", "run", f"{flow_file}:broken", "--param", "n=1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 1
    assert "flow broke on purpose" in failed.stdout + failed.stderr


def test_run_import_error_in_the_flow_file_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('cannot even import')\n")
    result = CliRunner().invoke(main, ["run", f"{bad}:f"])
    assert result.exit_code == 1


def test_run_resolves_sibling_imports(tmp_path: Path) -> None:
    _needs_engine()
    (tmp_path / "helpers_for_cli_test.py").write_text("GREETING = 'hello from a sibling'\n")
    (tmp_path / "uses_sibling.py").write_text(
        "from flowpod import flow\nfrom helpers_for_cli_test import GREETING\n\n"
        "@flow\ndef greet():\n    return GREETING\n"
    )
    code, out, _ = _invoke("run", f"{tmp_path}/uses_sibling.py:greet")
    assert code == 0 and out.strip().splitlines()[-1] == "hello from a sibling"


# --- config and version ---------------------------------------------------------------------------


def test_config_set_view_unset() -> None:
    code, out, _ = _invoke(
        "config", "set", "FLOWPOD_TASK_DEFAULT_RETRIES=3", "task_default_retry_delay_seconds=1,2"
    )
    assert code == 0 and "FLOWPOD_TASK_DEFAULT_RETRIES='3'" in out
    table = tomllib.loads(profile_path().read_text())["profiles"]["default"]
    assert table["FLOWPOD_TASK_DEFAULT_RETRIES"] == "3"
    assert get_settings().task_default_retry_delay_seconds == [1.0, 2.0]

    code, out, _ = _invoke("config", "view")
    assert code == 0
    assert "FLOWPOD_TASK_DEFAULT_RETRIES='3' (from profile)" in out
    assert "FLOWPOD_LOGGING_LEVEL='INFO' (from default)" in out

    code, out, _ = _invoke("config", "unset", "FLOWPOD_TASK_DEFAULT_RETRIES")
    assert code == 0 and "Unset FLOWPOD_TASK_DEFAULT_RETRIES" in out
    assert get_settings().task_default_retries == 0


def test_config_view_shows_environment_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWPOD_LOGGING_LEVEL", "ERROR")
    code, out, _ = _invoke("config", "view", "--descriptions")
    assert code == 0 and "FLOWPOD_LOGGING_LEVEL='ERROR' (from environment)" in out
    assert "level of flowpod's loggers" in out


def test_config_set_warns_when_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWPOD_TASK_DEFAULT_RETRIES", "9")
    code, _, err = _invoke("config", "set", "FLOWPOD_TASK_DEFAULT_RETRIES=1")
    assert code == 0 and "also set in the environment" in err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["config", "set", "FLOWPOD_TASK_DEFAULT_RETRIES"], "not KEY=VALUE"),
        (["config", "set", "NOPE=1"], "unknown setting"),
        (["config", "set", "FLOWPOD_TASK_DEFAULT_RETRIES=many"], "whole number"),
        (["config", "unset", "NOPE"], "unknown setting"),
        (["config", "set"], "Missing argument"),
    ],
)
def test_config_usage_errors(args: list[str], fragment: str) -> None:
    code, _, err = _invoke(*args)
    assert code == 2 and fragment in err
    assert not profile_path().exists()


def test_config_view_reports_a_broken_profile() -> None:
    profile_path().write_text("[broken")
    code, _, err = _invoke("config", "view")
    assert code == 2 and "not valid TOML" in err and len(err.strip().splitlines()) == 1


def test_version() -> None:
    code, out, _ = _invoke("version")
    assert code == 0 and out.startswith("flowpod ") and "Python 3." in out


def test_python_dash_m_and_light_import() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, runpy; sys.argv = ['flowpod', '--help']; "
            "import flowpod._cli.main; "
            "heavy = [m for m in ('pydantic', 'kubernetes', 'kopf', 'boto3') "
            "if m in sys.modules]; print('HEAVY', heavy)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "HEAVY []" in done.stdout
    helped = subprocess.run(
        [sys.executable, "-m", "flowpod", "--help"], capture_output=True, text=True, check=True
    )
    assert "run" in helped.stdout and "config" in helped.stdout and "version" in helped.stdout


def test_config_view_warns_about_unknown_profile_keys_and_unset_removes_them() -> None:
    profile_path().write_text(
        '[profiles.default]\nFLOWPOD_TASK_DEFAULT_RETRYS = "3"\nFLOWPOD_LOGGING_LEVEL = "ERROR"\n'
    )
    code, out, err = _invoke("config", "view")
    assert code == 0 and "FLOWPOD_LOGGING_LEVEL='ERROR' (from profile)" in out
    assert "unknown keys, ignored: FLOWPOD_TASK_DEFAULT_RETRYS" in err
    code, out, _ = _invoke("config", "unset", "FLOWPOD_TASK_DEFAULT_RETRYS")
    assert code == 0 and "Unset FLOWPOD_TASK_DEFAULT_RETRYS" in out
    table = tomllib.loads(profile_path().read_text())["profiles"]["default"]
    assert table == {"FLOWPOD_LOGGING_LEVEL": "ERROR"}
    code, _, err = _invoke("config", "view")
    assert "unknown keys" not in err
