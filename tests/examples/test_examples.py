"""Every example runs as its own process against the offline API stub and does what its seed shows.

The assertions read the example's output (the flow's log) and the stub's request log: the HTTP
requests that really happened, their statuses and their timing.
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from example_support import EXAMPLES, ROOT, run_example, stub_api

PREFECT = stub_api.repo_data("PrefectHQ/prefect")


def issue_pages(stub: Any, repo: str = "PrefectHQ/prefect") -> list[Any]:
    return stub.requests_to(f"/repos/{repo}/issues")


def assert_ok(run: Any) -> None:
    assert run.returncode == 0, run.output


def test_every_numbered_example_is_covered_here() -> None:
    examples = sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.py"))
    source = Path(__file__).read_text()
    assert examples, "no examples found"
    missing = [name for name in examples if f'"{name}"' not in source]
    assert not missing, f"examples without a test: {missing}"


# -- 01: repository statistics ---------------------------------------------------------------------


def test_repo_info_prints_the_seed_statistics(stub: Any) -> None:
    run = run_example("01_repo_info.py", api=stub.url)
    assert_ok(run)
    out = run.output
    assert "Created task run 'get_url-0' for task 'get_url'" in out
    assert "Executing 'get_url-0' immediately..." in out
    assert "Task run 'get_url-0' - Finished in state Completed()" in out
    assert "PrefectHQ/prefect repository statistics 🤓:" in out
    assert f"Stars 🌠 : {PREFECT.stars}" in out
    assert f"Forks 🍴 : {PREFECT.forks}" in out
    # As the seed shows it: a flow that returns nothing, all of whose task runs completed.
    assert re.search(
        r"Flow run '[a-z]+-[a-z]+' - Finished in state Completed\('All states completed\.'\)$",
        out,
        re.M,
    ), out
    assert [r.status for r in stub.requests_to("/repos/PrefectHQ/prefect")] == [200]
    # The log line format of the seed: time | LEVEL (padded) | Flow run 'name' - message
    assert re.search(r"^\d\d:\d\d:\d\d\.\d{3} \| INFO    \| Flow run '[a-z]+-[a-z]+' - ", out, re.M)


def test_repo_info_flow_is_importable_and_takes_its_parameter(stub: Any) -> None:
    run = run_example(
        "01_repo_info.py", api=stub.url, flow="get_repo_info", repo_name="acme/rockets"
    )
    assert_ok(run)
    expected = stub_api.repo_data("acme/rockets")
    assert "acme/rockets repository statistics 🤓:" in run.output
    assert f"Stars 🌠 : {expected.stars}" in run.output
    assert f"Forks 🍴 : {expected.forks}" in run.output
    assert len(stub.requests_to("/repos/acme/rockets")) == 1


def test_the_demo_example_runs_on_its_own_stub(tmp_path: Path) -> None:
    """What `bash scripts/demo` ends with: the example, no stub configured, from any folder."""
    run = run_example("01_repo_info.py", api=None, cwd=tmp_path)
    assert_ok(run)
    assert f"Stars 🌠 : {PREFECT.stars}" in run.output
    assert f"Forks 🍴 : {PREFECT.forks}" in run.output


def test_the_cli_runs_an_example_flow_by_path(stub: Any) -> None:
    env = dict(os.environ, PYTHONIOENCODING="utf-8", **{stub_api.ENV_VAR: stub.url})
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowpod",
            "run",
            "examples/01_repo_info.py:get_repo_info",
            "--param",
            "repo_name=acme/anvils",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    expected = stub_api.repo_data("acme/anvils")
    assert f"Stars 🌠 : {expected.stars}" in done.stdout + done.stderr


# -- 02 / 03: open issues, sequential and submitted ------------------------------------------------


def expected_average() -> str:
    return f"Average open issues per user 💌 : {PREFECT.open_issues / PREFECT.issue_authors:.2f}"


def test_sequential_issues_fetch_every_page_one_after_another(stub: Any) -> None:
    run = run_example("02_open_issues.py", api=stub.url)
    assert_ok(run)
    assert expected_average() in run.output
    pages = issue_pages(stub)
    assert sorted(int(r.query["page"]) for r in pages) == list(range(1, 7))
    assert all(r.status == 200 for r in pages)
    assert not any(a.overlaps(b) for i, a in enumerate(pages) for b in pages[i + 1 :])
    assert "Executing 'get_url-6' immediately..." in run.output


def test_a_second_run_answers_every_page_from_the_cache(stub: Any) -> None:
    assert_ok(run_example("02_open_issues.py", api=stub.url))
    first = len(stub.requests)
    assert first == 7  # the repository and six pages

    again = run_example("02_open_issues.py", api=stub.url)
    assert_ok(again)
    assert len(stub.requests) == first, "a cached page was fetched again"
    assert again.output.count("Finished in state Cached(type=COMPLETED)") == 7
    assert expected_average() in again.output


def test_submitted_pages_are_requested_concurrently(stub: Any) -> None:
    run = run_example("03_open_issues_submit.py", api=stub.url)
    assert_ok(run)
    assert expected_average() in run.output
    assert "Executing 'get_url-0' immediately..." in run.output
    for n in range(1, 7):
        assert f"Submitted task run 'get_url-{n}' for execution." in run.output
    pages = issue_pages(stub)
    assert sorted(int(r.query["page"]) for r in pages) == list(range(1, 7))
    overlapping = sum(a.overlaps(b) for i, a in enumerate(pages) for b in pages[i + 1 :])
    assert overlapping >= 1, [(r.started, r.finished) for r in pages]
    # Six 0.1 s pages took well under the 0.6 s a sequential fetch needs.
    span = max(r.finished for r in pages) - min(r.started for r in pages)
    assert span < 0.6 * 0.9, span


# -- 04: retries -----------------------------------------------------------------------------------


def brittle(stub: Any) -> list[Any]:
    return stub.requests_to("/brittle/endpoint")


def test_retries_recover_from_real_503_answers_with_backoff(stub: Any) -> None:
    run = run_example("04_retries.py", api=stub.url)
    assert_ok(run)
    attempts = brittle(stub)
    assert [r.status for r in attempts] == [503, 503, 200]
    assert len({r.query["session"] for r in attempts}) == 1
    assert "Retry 1/3 will start" in run.output
    assert "Retry 2/3 will start" in run.output
    assert "Retry 3/3" not in run.output
    assert "The brittle service answered on attempt 3 (2 retries)" in run.output
    assert "Task run 'get_data_task-0' - Finished in state Completed()" in run.output
    # Backoff 0.2 s then 0.4 s, with jitter 0.5: never shorter than 0.6 of the base (Prefect's
    # lower bound for that factor) and, allowing for scheduling, not much longer than 1.5x.
    gaps = [b.started - a.finished for a, b in zip(attempts, attempts[1:], strict=False)]
    for gap, base in zip(gaps, (0.2, 0.4), strict=True):
        assert base * 0.6 <= gap <= base * 1.5 + 0.5, gaps


def test_retry_condition_declines_a_404(stub: Any) -> None:
    run = run_example("04_retries.py", api=stub.url)
    assert_ok(run)
    missing = stub.requests_to("/brittle/missing")
    assert [r.status for r in missing] == [404]
    assert "A 404 is not retried: Failed('Task run encountered an exception HTTPError" in run.output


def test_retries_run_out_when_the_service_keeps_failing(stub: Any) -> None:
    run = run_example("04_retries.py", api=stub.url, flow="get_data_flow", failures=10)
    assert run.returncode != 0, run.output
    assert [r.status for r in brittle(stub)] == [503] * 4
    assert "Retries are exhausted" in run.output


# -- 05: caching -----------------------------------------------------------------------------------


def test_caching_example_fetches_each_page_once_across_runs_and_processes(stub: Any) -> None:
    run = run_example("05_caching.py", api=stub.url)
    assert_ok(run)
    pages = -(PREFECT.contributors // -100)
    assert f"First run: {pages + 1} HTTP request(s)" in run.output
    assert "Second run: 0 HTTP request(s) to the API (every page came from the cache)" in run.output
    assert f"contributors 👷 : {PREFECT.contributors}" in run.output
    contributors = stub.requests_to("/repos/PrefectHQ/prefect/contributors")
    assert sorted(int(r.query["page"]) for r in contributors) == list(range(1, pages + 1))
    assert "Task run 'get_contributors_page-0' - Finished in state Cached(type=COMPLETED)" in (
        run.output
    )

    # A new process finds the records in the store under FLOWPOD_HOME.
    before = len(stub.requests)
    again = run_example("05_caching.py", api=stub.url, flow="contributor_stats")
    assert_ok(again)
    assert len(stub.requests) == before
    assert again.result == run_example_total(run.output)
    assert "Finished in state Completed()" not in task_lines(again.output)


def run_example_total(output: str) -> int:
    found = re.findall(r"Contributions 📝 : (\d+)", output)
    assert found, output
    return int(found[-1])


def task_lines(output: str) -> str:
    return "\n".join(line for line in output.splitlines() if "| Task run '" in line)


def test_refresh_cache_fetches_again(stub: Any) -> None:
    assert_ok(run_example("05_caching.py", api=stub.url, flow="contributor_stats"))
    before = len(stub.requests)
    refreshed = run_example("05_caching.py", api=stub.url, flow="contributor_stats", refresh=True)
    assert_ok(refreshed)
    assert len(stub.requests) - before == before  # the same requests, made again
    lines = task_lines(refreshed.output)
    assert "Task run 'get_repo-0' - Finished in state Completed()" in lines
    assert "Task run 'get_contributors_page-0' - Finished in state Completed()" in lines
    # Not refreshed: same inputs, same source, so its record still answers.
    assert "Task run 'count_contributions-0' - Finished in state Cached(type=COMPLETED)" in lines


# -- 06: timeouts ----------------------------------------------------------------------------------


def test_timed_out_task_is_stopped_and_never_prints_again(stub: Any) -> None:
    run = run_example(
        "06_timeouts.py", api=stub.url, flow="timeouts_flow", sleep_seconds=2, linger_seconds=2.5
    )
    assert_ok(run)
    assert "I will execute" in run.output
    assert "I will not execute" not in run.output
    assert "Finished in state TimedOut(" in run.output
    assert "Task run exceeded timeout of 1" in run.output
    assert run.result == "TimedOut"
    elapsed = re.search(r"ended in state TimedOut after (\d+\.\d) s", run.output)
    assert elapsed and 0.9 <= float(elapsed.group(1)) < 1.8, run.output


def test_timeouts_example_does_not_wait_for_the_sleep(stub: Any) -> None:
    run = run_example("06_timeouts.py", api=stub.url)
    assert_ok(run)
    assert "I will not execute" not in run.output
    assert run.seconds < 4.5, f"took {run.seconds:.1f} s: the 5 s sleep was not stopped"


# -- 07: run names ---------------------------------------------------------------------------------


def test_run_names_from_defaults_templates_callables_and_runtime(stub: Any) -> None:
    days = {f"{datetime.datetime.now(datetime.UTC):%A}"}
    run = run_example("07_run_names.py", api=stub.url)
    days.add(f"{datetime.datetime.now(datetime.UTC):%A}")  # a run across midnight
    assert_ok(run)
    out = run.output
    assert any(f"Task run 'hello-marvin-on-{day}' - my run is" in out for day in days), out
    assert any(f"Task run '{day}-is-a-lovely-day' - my run is" in out for day in days), out
    assert "Task run 'run-names-my-example-task-with-marvin-and-100' - my run is" in out
    assert "Created task run 'say_hello-0' for task 'say_hello'" in out
    assert "my run is 'say_hello-0', tags ['example', 'greeting']" in out
    assert "Created task run 'hello-marvin-on-" in out and "for task 'My Example Task'" in out


def test_run_names_follow_the_flow_parameter(stub: Any) -> None:
    run = run_example("07_run_names.py", api=stub.url, flow="run_names_flow", name="trillian")
    assert_ok(run)
    names = run.result
    assert names[0].startswith("hello-trillian-on-")
    assert names[2] == "run-names-my-example-task-with-trillian-and-100"
    assert names[3] == "say_hello-0"


# -- scripts/demo ----------------------------------------------------------------------------------


def test_demo_rejects_an_unknown_example_before_touching_any_venv() -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo"), "examples/99_nope.py"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no example at 'examples/99_nope.py'" in done.stderr
    assert "01_repo_info.py" in done.stderr


def test_demo_says_clearly_when_python_is_too_old(tmp_path: Path) -> None:
    # A copy of the layout with no .venv, and only interpreters that report Python 3.8.
    (tmp_path / "scripts" / "lib").mkdir(parents=True)
    (tmp_path / "examples").mkdir()
    for script in ("demo", "lib/venv.sh"):
        (tmp_path / "scripts" / script).write_text((ROOT / "scripts" / script).read_text())
    (tmp_path / "examples" / "01_repo_info.py").write_text("")
    (tmp_path / "pyproject.toml").write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python3.13", "python3.12", "python3.11", "python3"):
        fake = bin_dir / name
        fake.write_text("#!/bin/sh\nexit 1\n")
        fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin")
    env.pop("PYTHON", None)
    done = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "demo")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1
    assert "needs Python 3.11 or newer" in done.stderr
    assert not (tmp_path / ".venv").exists()


@pytest.mark.parametrize("script", ["demo", "test", "lib/venv.sh", "cluster"])
def test_scripts_are_valid_bash(script: str) -> None:
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)]).returncode == 0
