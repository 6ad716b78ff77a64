"""The progress view of ``submit --wait``: a live block in a terminal (checked through a real
pseudo-terminal), change lines elsewhere, rate-limited for big maps."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from flowpod._cli.progress import RunProgress, counts_text

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def _run_in_pty(args: list[str], cwd: Path, timeout: float = 120) -> tuple[int, str]:
    """Run the CLI (``_cli_pty_main``) with a pseudo-terminal as stdin/stdout/stderr; its exit
    code and everything it wrote, escape codes included."""
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="100", LINES="40",
               PYTHONPATH=os.pathsep.join([str(ROOT / "sdk"), str(ROOT / "operator"),
                                           str(HERE)]))
    for name in ("NO_COLOR", "CI", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, str(HERE / "_cli_pty_main.py"), *args], cwd=cwd,
                            stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        else:
            proc.kill()
            raise AssertionError(f"the CLI did not finish in {timeout} s: {b''.join(chunks)!r}")
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_submit_wait_on_a_terminal_redraws_one_status_block(tmp_path: Path) -> None:
    (tmp_path / "counter_flows.py").write_text(textwrap.dedent("""
        from flowpod import flow

        @flow
        def counter(n: int = 1) -> int:
            return n
    """))
    code, out = _run_in_pty(["submit", "counter_flows.py:counter", "--wait", "--timeout", "60"],
                            tmp_path)
    assert code == 0, out
    assert "created in namespace ns1" in out
    # The block, at several moments: counts while running, names of running and failed runs.
    assert "Task runs" in out and "3 total: 1 running, 1 completed, 1 failed" in out
    assert "3 total: 3 completed" in out
    assert "inc-0" in out and "inc-1 (Error)" in out and "Elapsed" in out
    # Redrawn in place: rich moves the cursor up and erases the old block's lines.
    assert "\x1b[1A" in out and "\x1b[2K" in out
    assert "Running: " not in out  # not the plain lines of a log
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out).replace("\r", "")
    last = [line for line in plain.splitlines() if line.strip()][-1]
    assert last.startswith("FlowRun counter-") and "finished in state Completed" in last


def _flowrun(state: str, reason: str | None = None, **counts: int) -> dict[str, Any]:
    return {"metadata": {"name": "big", "namespace": "ns1"},
            "status": {"state": state, "reason": reason,
                       "taskRuns": {"total": 1000, **counts}}}


def test_without_a_terminal_lines_come_on_changes_and_counts_at_most_every_interval() -> None:
    out = io.StringIO()
    progress = RunProgress("big", "ns1", live=False, interval=3600, stream=out)
    progress(_flowrun("Pending"))
    progress(_flowrun("Pending", "Unschedulable"))
    progress(_flowrun("Pending", "Unschedulable"))  # no change: no line
    for done in range(1000):  # a 1,000-task map finishing one task at a time
        progress(_flowrun("Running", completed=done, running=1000 - done))
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines == [
        "Pending: 0/1000 task runs done",
        "Pending: 0/1000 task runs done",
        "FlowRun big is Pending (Unschedulable)",
        "Running: 0/1000 task runs done (1000 running)",
        "Running: 999/1000 task runs done (1 running)",  # held back, printed at the end
    ]


def test_counts_text_names_each_state() -> None:
    assert counts_text(_flowrun("Running", running=2, completed=5, failed=1)) == (
        "1000 total: 2 running, 5 completed, 1 failed")
