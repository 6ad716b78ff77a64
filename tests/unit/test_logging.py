"""Log format and messages, log_prints, get_run_logger, FLOWPOD_LOGGING_LEVEL, handler placement."""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import pytest
from _engine_support import capture_logs

from flowpod import flow, get_run_logger, task
from flowpod.exceptions import MissingContextError
from flowpod.logging import get_logger

LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \| (INFO   |ERROR  |WARNING|DEBUG  ) \| .+ - .+$")


@task
def get_url(url: str) -> str:
    return url.upper()


def test_seed_messages_and_format() -> None:
    @flow(name="stats")
    def stats() -> list[str]:
        first = get_url("a")
        second = get_url.submit("b").result()
        return [first, second]

    with capture_logs() as logs:
        assert stats() == ["A", "B"]
    lines = logs.lines
    assert all(LINE.match(line) for line in lines), lines
    text = logs.text()
    assert "| INFO    | Flow run '" in text
    assert "- Created task run 'get_url-0' for task 'get_url'" in text
    assert "- Executing 'get_url-0' immediately..." in text
    assert "| INFO    | Task run 'get_url-0' - Finished in state Completed()" in text
    assert "- Submitted task run 'get_url-1' for execution." in text
    assert "| INFO    | Task run 'get_url-1' - Finished in state Completed()" in text
    created = r"\| flowpod\.engine - Created flow run '[a-z]+-[a-z]+' for flow 'stats'"
    assert re.search(created, text)
    assert re.search(r"Flow run '[a-z]+-[a-z]+' - Finished in state Completed\(\)", text)


def test_aggregated_final_state_message() -> None:
    @flow
    def f():
        return [get_url.submit("x"), get_url.submit("y")]

    with capture_logs() as logs:
        f()
    assert "Finished in state Completed('All states completed.')" in logs.messages


def test_a_flow_returning_nothing_finishes_as_the_seed_shows() -> None:
    @flow
    def quiet() -> None:
        get_url("a")
        get_url.submit("b").wait()

    with capture_logs() as logs:
        quiet()
    assert re.search(
        r"Flow run '[a-z]+-[a-z]+' - Finished in state Completed\('All states completed\.'\)",
        logs.text(),
    )


def test_an_unused_failed_task_drops_the_all_completed_message() -> None:
    @task
    def broken() -> None:
        raise ValueError("unused")

    @flow
    def tolerant() -> None:
        broken.submit().wait()

    with capture_logs() as logs:
        state = tolerant(return_state=True)
    assert state.is_completed()
    assert state.message is None
    assert re.search(r"Flow run '[a-z]+-[a-z]+' - Finished in state Completed\(\)", logs.text())


def test_failed_task_logs_error_level() -> None:
    @task
    def bad() -> None:
        raise ValueError("bad!")

    with capture_logs() as logs:
        bad(return_state=True)
    finished = [r for r in logs.records if r.getMessage().startswith("Finished in state")]
    assert finished[0].levelno == logging.ERROR
    assert finished[0].getMessage() == (
        "Finished in state Failed('Task run encountered an exception ValueError: bad!')"
    )


def test_get_run_logger_in_tasks_and_flows() -> None:
    @task
    def t() -> None:
        get_run_logger().info("from task")

    @flow
    def f() -> None:
        get_run_logger().warning("from flow")
        t()

    with capture_logs() as logs:
        f()
    text = logs.text()
    assert re.search(r"\| WARNING \| Flow run '[a-z-]+' - from flow", text)
    assert "| INFO    | Task run 't-0' - from task" in text


def test_get_run_logger_outside_a_run_is_a_clear_error() -> None:
    with pytest.raises(MissingContextError, match="outside a flow or task run"):
        get_run_logger()
    assert get_logger("mine").name == "flowpod.mine"


def test_log_prints_on_task_and_inherited_from_flow(capsys: pytest.CaptureFixture[str]) -> None:
    @task
    def inherits() -> None:
        print("inherited print")

    @task(log_prints=False)
    def opts_out() -> None:
        print("plain print")

    @flow(log_prints=True)
    def f() -> None:
        print("flow print")
        inherits()
        opts_out()

    with capture_logs() as logs:
        f()
    text = logs.text()
    assert re.search(r"\| INFO    \| Flow run '[a-z-]+' - flow print", text)
    assert "| INFO    | Task run 'inherits-0' - inherited print" in text
    assert "plain print" not in text
    out = capsys.readouterr().out
    assert "plain print" in out and "inherited print" not in out


def test_log_prints_off_by_default_and_other_files_untouched(capsys) -> None:
    @task(log_prints=True)
    def t() -> None:
        print("to stderr", file=sys.stderr)
        print("logged")

    @task
    def quiet() -> None:
        print("stdout only")

    with capture_logs() as logs:
        t()
        quiet()
    assert "logged" in logs.messages
    captured = capsys.readouterr()
    assert "to stderr" in captured.err and "stdout only" in captured.out


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, check=True, timeout=60)


CODE = """
from flowpod import flow, task, get_run_logger
@task
def t():
    get_run_logger().debug("debug line")
    return 1
@flow
def f():
    return t()
f()
"""


def test_console_output_and_logging_level_setting() -> None:
    default = _run(CODE)
    assert "Finished in state Completed()" in default.stderr
    assert "debug line" not in default.stderr
    debug = _run(CODE, FLOWPOD_LOGGING_LEVEL="DEBUG")
    assert "| DEBUG   | Task run 't-0' - debug line" in debug.stderr
    quiet = _run(CODE, FLOWPOD_LOGGING_LEVEL="WARNING")
    assert quiet.stderr == ""


def test_hook_errors_are_logged_and_other_hooks_run() -> None:
    ran = []

    def broken(task, run, state) -> None:
        raise RuntimeError("hook bug")

    def fine(task, run, state) -> None:
        ran.append(state.name)

    @task(on_completion=[broken, fine])
    def t() -> int:
        return 1

    with capture_logs() as logs:
        assert t() == 1
    assert ran == ["Completed"]
    assert "An error was encountered while running hook 'broken'" in logs.messages


def test_disable_run_logger() -> None:
    from flowpod.logging import disable_run_logger

    @task
    def t() -> None:
        with disable_run_logger():
            get_run_logger().error("hidden")
        get_run_logger().info("shown")

    with capture_logs() as logs:
        t()
    assert "hidden" not in logs.messages and "shown" in logs.messages
