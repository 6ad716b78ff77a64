"""The embedded engine's overhead: per-task cost, start-up, import time and memory, vs Prefect.

    python bench/local_overhead.py [--tasks 1000] [--repeat 5] [--json]
                                   [--prefect-python PATH] [--no-prefect] [--verbose]

Every figure comes from a fresh subprocess, so one engine's imports, threads and caches never
colour the other's (and import / first-run costs are really "first"):

- direct: a flow calls a trivial task N times; per task = (the N-task run - a steady one-task
  run, the fastest one seen) / (N - 1) minus the cost of calling the bare function, so only
  the engine's share remains. An engine may defer work past the run (Prefect ships events and
  logs to its server in the background and the next run waits for that backlog): a second
  figure also charges the one-task run right after the N-task run, less the steady one;
- submitted: the same with `.submit()` and waiting for every future;
- first flow run: in a fresh process, `from <engine> import flow, task` then define and run a
  one-task flow; the import and the first run are reported separately;
- import: `from <engine> import flow, task` alone in a fresh process (flowpod loads its top-level
  names on first use, so `import flowpod` by itself would measure almost nothing);
- peak RSS: ru_maxrss of the process that ran the N-task flows, and apart from it the peaks of
  any helper processes the engine started (Prefect's temporary API server).
Timings are medians over --repeat runs (the workload process also does one warm-up run first).
Logging is at WARNING for both engines so the figure is the engine's, not the console's.

Prefect is measured when it is importable by --prefect-python (default: this interpreter), with
PREFECT_HOME in a temp dir and its ephemeral server allowed, and the ratios prefect/flowpod are
printed. This is a benchmark, not a test: it prints PASS/MISS against the targets and exits 0.
"""

# ruff: noqa: E402 - the sys.path fix below must run before the other imports.
from __future__ import annotations

import os
import sys

# Python puts this script's folder first on sys.path, and bench/ holds other scripts, one of them
# named like a standard module (operator.py): drop the folder before importing anything else.
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _HERE]

import argparse
import importlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Row:
    """One line of the report: a metric, its unit and the target flowpod must meet."""

    key: str
    label: str
    unit: str
    target: float


INF = float("inf")  # no target: the row is context for the one above
ROWS = [
    Row("direct_us", "direct task overhead", "us/task", 60),
    Row("direct_deferred_us", "  incl. work deferred past the run", "us/task", INF),
    Row("submit_us", "submitted task overhead", "us/task", 200),
    Row("submit_deferred_us", "  incl. work deferred past the run", "us/task", INF),
    Row("first_run_ms", "first flow run (fresh process)", "ms", 20),
    Row("startup_import_ms", "  import before that first run", "ms", 150),
    Row("import_ms", "import time", "ms", 150),
    Row("peak_rss_mb", "peak RSS, N-task flows", "MB", 60),
    Row("helpers_peak_rss_mb", "  + its helper processes", "MB", INF),
]


# -- the worker side: runs inside a fresh subprocess and prints one JSON object -----------------


def _define(engine: Any) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    def noop(x: int) -> int:
        return x

    noop_task = engine.task(noop)

    def direct_flow(n: int) -> None:
        for i in range(n):
            noop_task(i)

    def submit_flow(n: int) -> None:
        futures = [noop_task.submit(i) for i in range(n)]
        for future in futures:
            future.result()

    return noop, engine.flow(direct_flow), engine.flow(submit_flow)


def _progress(message: str) -> None:
    # Goes to the worker's stderr, which the driver shows only with --verbose (or on failure).
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _timed(fn: Callable[..., Any], *args: Any) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def _descendants_peak_rss_mb(root: int) -> float:
    """Sum of VmHWM (peak resident set) over the live descendants of `root`; 0 off Linux."""
    proc = Path("/proc")
    if not proc.is_dir():
        return 0.0
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name in field 2 may hold spaces; the fields after its ")" do not.
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    total_kib, pending = 0, list(children.get(root, []))
    while pending:
        pid = pending.pop()
        pending.extend(children.get(pid, []))
        try:
            status = (proc / str(pid) / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


def _import_api(engine_name: str) -> Any:
    """``from <engine> import flow, task``: what a flow file imports. (flowpod resolves its
    top-level names on first use, so ``import flowpod`` alone would measure almost nothing.)"""
    engine = importlib.import_module(engine_name)
    engine.flow, engine.task  # noqa: B018 - the attribute reads are the import
    return engine


def worker(engine_name: str, kind: str, tasks: int, repeat: int) -> dict[str, float]:
    if kind == "import":
        started = time.perf_counter()
        _import_api(engine_name)
        return {"import_ms": (time.perf_counter() - started) * 1e3}

    if kind == "startup":
        started = time.perf_counter()
        engine = _import_api(engine_name)
        imported = time.perf_counter()
        _, direct_flow, _ = _define(engine)
        direct_flow(1)
        finished = time.perf_counter()
        return {
            "startup_import_ms": (imported - started) * 1e3,
            "first_run_ms": (finished - imported) * 1e3,
        }

    if kind == "workload":
        engine = importlib.import_module(engine_name)
        noop, direct_flow, submit_flow = _define(engine)
        direct_flow(tasks)  # warm-up: first-run costs are the startup row's business
        submit_flow(tasks)

        def bare(n: int) -> None:
            for i in range(n):
                noop(i)

        bare_s = statistics.median(_timed(bare, tasks) for _ in range(repeat)) / tasks
        figures: dict[str, float] = {}
        _progress(f"{engine_name}: warmed up, bare call {bare_s * 1e9:.0f} ns")
        for key, flow_fn in (("direct_us", direct_flow), ("submit_us", submit_flow)):
            ones: list[float] = []
            # An engine may defer part of a run's work (Prefect ships events and logs to its
            # server in the background, and a later run waits for that backlog). So each round
            # is: the N-task run, a one-task run that absorbs whatever the N tasks left behind,
            # and a second one-task run, now in a steady state, as the baseline for both.
            rounds = []
            for i in range(repeat):
                full = _timed(flow_fn, tasks)
                after = _timed(flow_fn, 1)
                again = _timed(flow_fn, 1)
                rounds.append((full, after))
                _progress(
                    f"{engine_name}: {key} round {i + 1}/{repeat}: N tasks {full:.3f} s, "
                    f"then 1 task {after:.3f} s and {again:.3f} s"
                )
                ones.extend((after, again))
            # A one-task run's steady cost is its fastest: slower ones were paying for backlog.
            one = min(ones)
            span = max(tasks - 1, 1)
            in_run = [(full - one) / span - bare_s for full, _ in rounds]
            deferred = [(full + after - 2 * one) / span - bare_s for full, after in rounds]
            figures[key] = statistics.median(in_run) * 1e6
            figures[key.replace("_us", "_deferred_us")] = statistics.median(deferred) * 1e6
        # Linux reports ru_maxrss in KiB, macOS in bytes.
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        figures["peak_rss_mb"] = rss / (1024 * 1024 if sys.platform == "darwin" else 1024)
        # An engine may keep part of itself in helper processes (Prefect's temporary API
        # server): count their peaks too, or the comparison flatters it.
        figures["helpers_peak_rss_mb"] = _descendants_peak_rss_mb(os.getpid())
        figures["bare_call_ns"] = bare_s * 1e9
        return figures

    raise ValueError(f"unknown worker kind {kind!r}: expected import, startup or workload")


# -- the driver side ------------------------------------------------------------------------------


def _worker_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FLOWPOD_HOME=str(home / "flowpod"),
        FLOWPOD_LOGGING_LEVEL="WARNING",
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_LOGGING_LEVEL="WARNING",
        # No Prefect server is configured: let Prefect start its own temporary one, as a new
        # user's first run does, and keep it from phoning home.
        PREFECT_SERVER_EPHEMERAL_ENABLED="true",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    env.pop("PREFECT_API_URL", None)
    return env


def run_worker(
    python: str, engine: str, kind: str, tasks: int, repeat: int, home: Path, verbose: bool
) -> dict[str, float]:
    cmd = [python, str(Path(__file__).resolve()), "--worker", engine, kind]
    cmd += ["--tasks", str(tasks), "--repeat", str(repeat)]
    done = subprocess.run(
        cmd,
        env=_worker_env(home),
        stdout=subprocess.PIPE,
        stderr=None if verbose else subprocess.PIPE,
        text=True,
        timeout=3600,
        cwd=home,
    )
    if done.returncode != 0:
        tail = (done.stderr or "")[-3000:]
        raise RuntimeError(f"{engine} {kind} worker failed (exit {done.returncode}):\n{tail}")
    # The figures are the last line: an engine may print its own lines before it.
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(
    python: str, engine: str, tasks: int, repeat: int, verbose: bool = False
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{engine}-") as tmp:
        home = Path(tmp)

        def run(kind: str, runs: int) -> dict[str, float]:
            try:
                return run_worker(python, engine, kind, tasks, runs, home, verbose)
            except RuntimeError as exc:
                # Prefect's temporary server sometimes answers 503 on a loaded machine: one
                # more try, in a fresh process, before calling the engine's figure missing.
                print(f"{exc}\n{engine} {kind}: retrying once", file=sys.stderr, flush=True)
                return run_worker(python, engine, kind, tasks, runs, home, verbose)

        figures: dict[str, float] = {}
        figures.update(run("workload", repeat))
        startups = [run("startup", 1) for _ in range(repeat)]
        for key in ("startup_import_ms", "first_run_ms"):
            figures[key] = statistics.median(s[key] for s in startups)
        imports = [run("import", 1) for _ in range(repeat)]
        figures["import_ms"] = statistics.median(i["import_ms"] for i in imports)
        return figures


def importable(python: str, module: str) -> bool:
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def report(results: dict[str, dict[str, float]], tasks: int) -> str:
    flowpod, prefect = results.get("flowpod"), results.get("prefect")
    header = f"{'metric (N = ' + str(tasks) + ' tasks)':36} {'unit':8} {'target':>8}"
    header += f" {'flowpod':>10} {'':5}"
    if prefect:
        header += f" {'prefect':>10} {'prefect/flowpod':>16}"
    lines = [header, "-" * len(header)]
    for row in ROWS:
        target = "" if row.target == INF else "<= " + format(row.target, "g")
        line = f"{row.label:36} {row.unit:8} {target:>8}"
        value = flowpod.get(row.key) if flowpod else None
        if value is None:
            line += f" {'n/a':>10} {'':5}"
        else:
            verdict = "" if not target else "PASS" if value <= row.target else "MISS"
            line += f" {value:>10.1f} {verdict:5}"
        if prefect:
            other = prefect.get(row.key)
            line += f" {other:>10.1f}" if other is not None else f" {'n/a':>10}"
            if other is not None and value:
                line += f" {other / value:>15.1f}x"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per flow (default 1000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per median (default 5)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--prefect-python",
        default=sys.executable,
        help="interpreter that has prefect installed (default: this one)",
    )
    parser.add_argument("--no-prefect", action="store_true", help="measure flowpod only")
    parser.add_argument(
        "--verbose", action="store_true", help="show the workers' progress and engines' stderr"
    )
    parser.add_argument("--worker", nargs=2, metavar=("ENGINE", "KIND"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.repeat < 1:
        parser.error("--tasks and --repeat must be at least 1")

    if args.worker:
        engine, kind = args.worker
        print(json.dumps(worker(engine, kind, args.tasks, args.repeat)))
        return 0

    results: dict[str, dict[str, float]] = {}
    errors: dict[str, str] = {}
    engines = [("flowpod", sys.executable)]
    if not args.no_prefect and importable(args.prefect_python, "prefect"):
        engines.append(("prefect", args.prefect_python))
    for engine, python in engines:
        if not args.json:
            print(f"measuring {engine} with {python} ...", file=sys.stderr, flush=True)
        try:
            results[engine] = measure(python, engine, args.tasks, args.repeat, args.verbose)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            errors[engine] = str(exc)
            print(f"{engine}: {exc}", file=sys.stderr)

    if args.json:
        print(json.dumps({"tasks": args.tasks, "results": results, "errors": errors}, indent=2))
    else:
        print(report(results, args.tasks))
        if len(engines) == 1 and not args.no_prefect:
            print("\n(prefect is not importable here: pass --prefect-python to compare)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
