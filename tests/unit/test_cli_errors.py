"""The command line's failures: one ``Error:`` line and exit 2 (usage) or 1 (failure), tracebacks
only under ``--debug``; plus ``flowpod profile``, ``--version`` and help lines that are not cut."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowpod._cli import local
from flowpod._cli.main import main
from flowpod._common.settings import profile_path

FLOWS = textwrap.dedent(
    """
    from flowpod import flow

    @flow
    def double(n: int = 1) -> int:
        return 2 * n

    @flow
    def broken() -> None:
        raise ValueError("flow broke on purpose")
    """
)


@pytest.fixture(autouse=True)
def _restore_import_state() -> Iterator[None]:
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        if name.startswith(("cli_error_flows", "bad_import")):
            del sys.modules[name]


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    path = tmp_path / "cli_error_flows.py"
    path.write_text(FLOWS)
    return path


def _invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: ")
    return lines[0]


# --- bad settings: exit 2, one line naming the variable, the value and what is accepted ---------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("FLOWPOD_TASK_DEFAULT_RETRIES", "abc",
         "Error: FLOWPOD_TASK_DEFAULT_RETRIES='abc' is not a whole number >= 0 "
         "(settings: environment); use e.g. FLOWPOD_TASK_DEFAULT_RETRIES=3"),
        ("FLOWPOD_LOGGING_LEVEL", "LOUD",
         "Error: FLOWPOD_LOGGING_LEVEL='LOUD' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL "
         "(settings: environment); use e.g. FLOWPOD_LOGGING_LEVEL=INFO"),
        ("FLOWPOD_S3_ENDPOINT", "localhost:9000",
         "Error: FLOWPOD_S3_ENDPOINT='localhost:9000' is not a URL (settings: environment); "
         "use http(s)://host:port, e.g. FLOWPOD_S3_ENDPOINT=http://localhost:9000"),
        ("FLOWPOD_TASK_DEFAULT_RETRY_DELAY_SECONDS", "soon",
         "Error: FLOWPOD_TASK_DEFAULT_RETRY_DELAY_SECONDS='soon' is not a number of seconds"),
    ],
)
def test_run_with_a_bad_setting_is_one_usage_line(
    flows: Path, name: str, value: str, expected: str
) -> None:
    code, out, err = _invoke("run", f"{flows}:double", env={name: value})
    assert code == 2 and out == ""
    assert _one_error_line(err).startswith(expected)


def test_a_bad_profile_value_names_the_profile_file(flows: Path) -> None:
    profile_path().write_text('[profiles.default]\nFLOWPOD_S3_ENDPOINT = "minio:9000"\n')
    code, _, err = _invoke("run", f"{flows}:double")
    line = _one_error_line(err)
    assert code == 2 and "FLOWPOD_S3_ENDPOINT='minio:9000' is not a URL" in line
    assert f"profile 'default' in {profile_path()}" in line


def test_bad_setting_in_a_real_process(flows: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flowpod", "run", f"{flows}:double"],
        env={**_clean_env(), "FLOWPOD_S3_ENDPOINT": "localhost:9000"},
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert _one_error_line(done.stderr).startswith(
        "Error: FLOWPOD_S3_ENDPOINT='localhost:9000' is not a URL (settings")


# --- flowpod run: parameters, failures, the flow file ----------------------------------------


def test_a_mistyped_param_is_only_a_usage_line(flows: Path) -> None:
    code, out, err = _invoke("run", f"{flows}:double", "--param", "n=abc")
    assert code == 2 and out == ""
    line = _one_error_line(err)  # no ERROR log line of a run before it: no run started
    assert "parameter 'n' got 'abc'" in line and "(--param)" in line


def test_an_unknown_param_is_a_usage_line(flows: Path) -> None:
    code, _, err = _invoke("run", f"{flows}:double", "--param", "m=3")
    assert code == 2 and "unexpected keyword argument 'm'" in _one_error_line(err)


def test_target_errors_are_one_line(tmp_path: Path) -> None:
    code, _, err = _invoke("run", f"{tmp_path}/absent.py:flow")
    assert code == 2
    assert _one_error_line(err) == f"Error: no such file: {tmp_path}/absent.py (TARGET)"


def test_a_failed_flow_run_exits_1_with_an_error_line(flows: Path) -> None:
    code, _, err = _invoke("run", f"{flows}:broken")
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "Error: flow run failed: ValueError: flow broke on purpose (flow code); "
        "see the flow run's log above")


def test_a_flow_file_that_fails_to_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad_import.py"
    bad.write_text("x = 1\nraise RuntimeError('cannot even import')\n")
    code, _, err = _invoke("run", f"{bad}:f")
    assert code == 1 and "Traceback" not in err
    assert _one_error_line(err).startswith(
        f"Error: importing {bad} failed: RuntimeError: cannot even import ({bad}:2)")
    code, _, err = _invoke("--debug", "run", f"{bad}:f")
    assert code == 1 and "Traceback" in err and "cannot even import" in err


# --- unexpected exceptions and --debug ------------------------------------------------------


@pytest.fixture
def exploding(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode() -> None:
        raise RuntimeError("something unforeseen")

    monkeypatch.setattr(local, "flowpod_version", explode)


@pytest.mark.usefixtures("exploding")
def test_an_unexpected_exception_is_one_line_without_debug() -> None:
    code, _, err = _invoke("version")
    assert code == 1 and "Traceback" not in err
    assert _one_error_line(err) == (
        "Error: unexpected RuntimeError: something unforeseen (flowpod); "
        "run again with --debug for the traceback")


@pytest.mark.usefixtures("exploding")
def test_debug_prints_the_traceback_of_an_unexpected_exception() -> None:
    code, _, err = _invoke("--debug", "version")
    assert code == 1
    assert "Traceback (most recent call last)" in err and "something unforeseen" in err
    assert err.strip().splitlines()[-1].startswith("Error: unexpected RuntimeError")


# --- config for the S3 settings --------------------------------------------------------------


def test_config_set_view_unset_the_s3_settings() -> None:
    code, out, _ = _invoke("config", "set", "FLOWPOD_S3_BUCKET=results",
                           "s3_endpoint=http://localhost:9000")
    assert code == 0 and "Set FLOWPOD_S3_BUCKET='results'" in out
    code, out, _ = _invoke("config", "view")
    assert "FLOWPOD_S3_BUCKET='results' (from profile)" in out
    assert "FLOWPOD_S3_ENDPOINT='http://localhost:9000' (from profile)" in out
    code, out, _ = _invoke("config", "unset", "FLOWPOD_S3_ENDPOINT")
    assert code == 0
    code, out, _ = _invoke("config", "view")
    assert "FLOWPOD_S3_ENDPOINT='' (from default)" in out


def test_config_set_refuses_a_bad_s3_value_in_one_line() -> None:
    code, _, err = _invoke("config", "set", "FLOWPOD_S3_ENDPOINT=localhost:9000")
    assert code == 2 and not profile_path().exists()
    assert "FLOWPOD_S3_ENDPOINT='localhost:9000' is not a URL" in _one_error_line(err)


def test_config_usage_errors_are_one_line() -> None:
    code, _, err = _invoke("config", "set", "NOPE=1")
    assert code == 2 and "unknown setting 'NOPE'" in _one_error_line(err)
    code, _, err = _invoke("config", "set", "FLOWPOD_TASK_DEFAULT_RETRIES")
    assert code == 2 and "is not KEY=VALUE" in _one_error_line(err)


# --- flowpod profile ---------------------------------------------------------------------------


def test_profile_ls_before_any_file_shows_the_default_active() -> None:
    code, out, _ = _invoke("profile", "ls")
    assert code == 0 and out == "* default\n"


def test_profile_create_use_ls_delete() -> None:
    _invoke("config", "set", "FLOWPOD_TASK_DEFAULT_RETRIES=2")
    code, out, _ = _invoke("profile", "create", "ci", "--from", "default")
    assert code == 0 and "Created profile 'ci'" in out
    code, out, _ = _invoke("profile", "ls")
    assert out == "  ci\n* default\n"
    code, out, _ = _invoke("profile", "use", "ci")
    assert code == 0 and "Now using profile 'ci'" in out
    code, out, _ = _invoke("profile", "ls")
    assert out == "* ci\n  default\n"
    _invoke("config", "set", "FLOWPOD_S3_BUCKET=ci-results")
    document = tomllib.loads(profile_path().read_text())
    assert document["active"] == "ci"
    assert document["profiles"]["ci"] == {"FLOWPOD_TASK_DEFAULT_RETRIES": "2",
                                          "FLOWPOD_S3_BUCKET": "ci-results"}
    assert document["profiles"]["default"] == {"FLOWPOD_TASK_DEFAULT_RETRIES": "2"}
    code, out, _ = _invoke("profile", "delete", "default")
    assert code == 0 and "Deleted profile 'default'" in out
    assert "default" not in tomllib.loads(profile_path().read_text())["profiles"]


def test_deleting_the_active_profile_is_refused() -> None:
    _invoke("profile", "create", "work")
    code, _, err = _invoke("profile", "delete", "default")
    assert code == 2
    assert _one_error_line(err) == (
        "Error: profile 'default' is the active profile (profile); "
        "switch to another first: flowpod profile use OTHER")
    code, _, err = _invoke("profile", "delete", "work", env={"FLOWPOD_PROFILE": "work"})
    assert code == 2 and "'work' is the active profile" in err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["profile", "use", "nope"], "no profile named 'nope'"),
        (["profile", "delete", "nope"], "no profile named 'nope'"),
        (["profile", "create", "bad name"], "not a valid profile name"),
        (["profile", "create", "x", "--from", "nope"], "no profile named 'nope'"),
    ],
)
def test_profile_usage_errors(args: list[str], fragment: str) -> None:
    code, _, err = _invoke(*args)
    assert code == 2 and fragment in _one_error_line(err)


def test_profile_create_refuses_an_existing_name() -> None:
    _invoke("profile", "create", "ci")
    code, _, err = _invoke("profile", "create", "ci")
    assert code == 2 and "profile 'ci' already exists" in _one_error_line(err)


def test_flowpod_profile_variable_selects_the_profile() -> None:
    _invoke("profile", "create", "ci")
    code, out, err = _invoke("profile", "ls", env={"FLOWPOD_PROFILE": "ci"})
    assert out == "* ci\n  default\n" and "FLOWPOD_PROFILE=ci" in err


# --- --version, help lines, completion ---------------------------------------------------------


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_flag(flag: str) -> None:
    code, out, _ = _invoke(flag)
    assert code == 0 and out.startswith("flowpod ") and len(out.splitlines()) == 1


def test_help_lines_are_whole_sentences() -> None:
    code, out, _ = _invoke("--help")
    commands = out.split("Commands:")[1].strip().splitlines()
    assert {line.split()[0] for line in commands} >= {
        "run", "submit", "get", "logs", "cancel", "config", "profile", "crds", "version"}
    assert all(not line.rstrip().endswith("...") for line in commands), commands
    for group in ("config", "profile"):
        code, out, _ = _invoke(group, "--help")
        assert "..." not in out.split("Commands:")[1]


def test_bash_completion_script_and_completions() -> None:
    env = {**_clean_env(), "_FLOWPOD_COMPLETE": "bash_source"}
    script = subprocess.run([sys.executable, "-m", "flowpod"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert script.returncode == 0 and "_FLOWPOD_COMPLETE=bash_complete" in script.stdout
    env.update(_FLOWPOD_COMPLETE="bash_complete", COMP_WORDS="flowpod pro", COMP_CWORD="1")
    done = subprocess.run([sys.executable, "-m", "flowpod"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert "plain,profile" in done.stdout.split()


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("FLOWPOD_")} | {
        "FLOWPOD_HOME": str(profile_path().parent)}




@pytest.mark.parametrize("argv, fragment", [
    (["submit", "flows.py:f", "--timeout", "-5"], "'--timeout': -5.0 is not in the range x>0"),
    (["nosuch"], "No such command 'nosuch'"),
    (["--bogus"], "No such option '--bogus'"),
    (["get"], "Missing argument"),
])
def test_click_usage_errors_are_one_line_with_exit_2(argv: list[str], fragment: str) -> None:
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], lines
    assert "--help'" in lines[0]
