"""The dashboard's flow-run page for a map of 1,000 task runs: server time per request.

    python bench/ui_page.py [--tasks 1000] [--repeat 20] [--json]

Builds the dashboard as ``flowpod ui`` does (``create_app`` over a ``WatchHub``), with the
hub's API seam answered by an in-process fake that lists one FlowRun and its ``--tasks``
TaskRuns with realistic histories (the operator's transitions and timestamps): most completed
first time, some retried after a timeout or a failure (AwaitingRetry backoff, then Retrying),
some cache hits (no pod), some failed for good after every retry, some still running or waiting
for a retry. The API server, the network and the browser are left out: what is timed is the
server's own work for ``GET /runs/<ns>/<name>`` (views, the timeline JSON, Jinja2 rendering,
Starlette) through Starlette's TestClient, plus the timeline JSON route.

Prints min / median / max over ``--repeat`` requests (after one warm-up) and PASS or MISS
against the budget: the page served in under 1,000 ms of server time (issue 14).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "sdk"), str(ROOT / "operator")]

from flowpod._ui.app import create_app  # noqa: E402
from flowpod._ui.hub import WatchHub  # noqa: E402

NS, RUN = "bench", "map-1000-x7k2qp"
BUDGET_MS = 1000.0
T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


def _iso(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _entry(state: str, at: float, attempt: int, message: str | None = None,
           reason: str | None = None) -> dict[str, Any]:
    kind = {"Pending": "PENDING", "Running": "RUNNING", "Retrying": "RUNNING",
            "AwaitingRetry": "SCHEDULED", "Completed": "COMPLETED", "Cached": "COMPLETED",
            "Failed": "FAILED", "TimedOut": "FAILED"}[state]
    return {"state": state, "type": kind, "timestamp": _iso(at), "attempt": attempt,
            "message": message, "reason": reason}


def _history(rng: random.Random, start: float, shape: str) -> tuple[list[dict[str, Any]], str]:
    """A TaskRun's history as the operator writes it, and its state now."""
    if shape == "cached":
        return [_entry("Cached", start, 0, "Cached result found under cache key 'add-3'; "
                                           "no pod was started")], "Cached"
    history: list[dict[str, Any]] = []
    at, attempts = start, {"ok": 1, "retried": rng.randint(2, 3), "failed": 3,
                           "running": 1, "waiting": 1}[shape]
    for attempt in range(1, attempts + 1):
        history.append(_entry("Pending" if attempt == 1 else "Retrying", at, attempt,
                              None if attempt == 1 else f"Retry {attempt - 1}/2: starting "
                                                        f"attempt {attempt}"))
        at += rng.uniform(0.8, 3.0)
        history.append(_entry("Running", at, attempt))
        if shape == "running":
            return history, "Running"
        at += rng.uniform(0.5, 20.0)
        last = attempt == attempts
        if shape in ("ok", "retried") and last:
            history.append(_entry("Completed", at, attempt, "Task run completed"))
            return history, "Completed"
        timed_out = rng.random() < 0.5
        state, reason = ("TimedOut", "DeadlineExceeded") if timed_out else ("Failed", "Error")
        message = (f"Attempt {attempt} timed out after 20s" if timed_out
                   else f"Task run failed with exception: ValueError('row {attempt} is bad')")
        history.append(_entry(state, at, attempt, message, reason))
        if shape == "failed" and last:
            return history, state
        history.append(_entry("AwaitingRetry", at, attempt, f"{message} - retry {attempt}/2 "
                                                            "in 10s", reason))
        if shape == "waiting":
            return history, "AwaitingRetry"
        at += 10.0
    raise AssertionError(shape)


def build_objects(tasks: int, seed: int = 14) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rng = random.Random(seed)
    shapes = rng.choices(["ok", "retried", "cached", "failed", "running", "waiting"],
                         weights=[70, 12, 8, 4, 4, 2], k=tasks)
    taskruns, counts = [], {"total": tasks}
    for index, shape in enumerate(shapes):
        name = f"add-{index}-{index * 7919 % 1000000:06x}"
        start = 2.0 + index * 0.05
        history, state = _history(rng, start, shape)
        key = state[0].lower() + state[1:]
        counts[key] = counts.get(key, 0) + 1
        attempt = max(int(e["attempt"]) for e in history)
        status: dict[str, Any] = {
            "state": state, "history": history, "attempt": attempt,
            "pod": f"{name}-{attempt}" if attempt else None, "startTime": _iso(start),
            "message": history[-1]["message"], "reason": history[-1]["reason"]}
        if state in ("Completed", "Cached", "Failed", "TimedOut"):
            status["endTime"] = history[-1]["timestamp"]
        taskruns.append({
            "apiVersion": "flowpod.dev/v1alpha1", "kind": "TaskRun",
            "metadata": {"name": name, "namespace": NS, "resourceVersion": str(1000 + index),
                         "creationTimestamp": _iso(start),
                         "labels": {"flowpod.dev/flowrun": RUN, "flowpod.dev/task": "add"}},
            "spec": {"taskName": "add", "taskKey": "flows.map:add", "runName": f"add-{index}",
                     "flowRun": RUN, "payload": f"runs/{NS}/{name}/payload", "retries": 2,
                     "retryDelaySeconds": [10], "timeoutSeconds": 20,
                     "cacheKey": "add-3" if shape == "cached" else None},
            "status": status})
    flowrun = {
        "apiVersion": "flowpod.dev/v1alpha1", "kind": "FlowRun",
        "metadata": {"name": RUN, "namespace": NS, "resourceVersion": "999",
                     "creationTimestamp": _iso(0)},
        "spec": {"flowName": "map-1000", "entrypoint": "flows.map:flow",
                 "parameters": {"n": tasks, "label": "nightly"}},
        "status": {"state": "Running", "attempt": 1, "pod": f"{RUN}-flow-1",
                   "startTime": _iso(0), "taskRuns": counts,
                   "history": [_entry("Pending", 0, 1), _entry("Running", 1, 1)]}}
    return flowrun, taskruns


class _Api:
    """The hub's API seam: lists the objects, then watches that wait until closed."""

    def __init__(self, flowrun: dict[str, Any], taskruns: list[dict[str, Any]]) -> None:
        self.items = {"flowruns": [flowrun], "taskruns": taskruns, "pods": [], "events": []}
        self.closed = threading.Event()

    def _list(self, plural: str) -> dict[str, Any]:
        return {"items": list(self.items[plural]), "metadata": {"resourceVersion": "5000"}}

    def _wait(self) -> Iterator[tuple[str, dict[str, Any]]]:
        self.closed.wait()
        return iter(())

    def list_with_version(self, namespace: str | None, plural: str,
                          label_selector: str = "") -> dict[str, Any]:
        return self._list(plural)

    def list_core(self, namespace: str | None, plural: str,
                  label_selector: str = "") -> dict[str, Any]:
        return self._list(plural)

    def watch_objects(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        return self._wait()

    def watch_core(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        return self._wait()

    def pod_log(self, *args: Any, **kwargs: Any) -> str | None:
        return None

    def patch_flowrun_spec(self, *args: Any) -> dict[str, Any]:
        raise AssertionError("the benchmark never writes")

    def default_namespace(self) -> str:
        return NS


def _figures(samples: list[float]) -> dict[str, float]:
    return {"min_ms": round(min(samples), 2), "median_ms": round(statistics.median(samples), 2),
            "max_ms": round(max(samples), 2)}


def run(tasks: int, repeat: int) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette's note about httpx vs httpx2
        from starlette.testclient import TestClient

    flowrun, taskruns = build_objects(tasks)
    api = _Api(flowrun, taskruns)
    hub = WatchHub(api, batch_seconds=0.5)  # type: ignore[arg-type]
    app = create_app(hub, lambda storage: None)
    report: dict[str, Any] = {"tasks": tasks, "repeat": repeat, "budget_ms": BUDGET_MS}
    try:
        with TestClient(app) as client:
            if not hub.wait_synced(30):
                raise SystemExit("the hub did not list the objects")
            page_url, api_url = f"/runs/{NS}/{RUN}", f"/api/runs/{NS}/{RUN}/timeline"
            for url, key in ((page_url, "page"), (api_url, "timeline")):
                first = client.get(url)  # warm-up: templates compiled, caches filled
                if first.status_code != 200:
                    raise SystemExit(f"GET {url}: {first.status_code}")
                samples = []
                for _ in range(repeat):
                    began = time.perf_counter()
                    response = client.get(url)
                    samples.append((time.perf_counter() - began) * 1000)
                    assert response.status_code == 200
                report[key] = {**_figures(samples), "bytes": len(response.content)}
            report["requests"] = hub.stats()
    finally:
        api.closed.set()
    report["pass"] = report["page"]["median_ms"] < BUDGET_MS and \
        report["page"]["max_ms"] < BUDGET_MS
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.tasks < 1 or args.repeat < 1:
        parser.error("--tasks and --repeat must be at least 1")
    report = run(args.tasks, args.repeat)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    page, timeline = report["page"], report["timeline"]
    print(f"flow-run page, {args.tasks} task runs, {args.repeat} requests after a warm-up")
    print(f"  GET /runs/ns/name        min {page['min_ms']:8.1f} ms  median "
          f"{page['median_ms']:8.1f} ms  max {page['max_ms']:8.1f} ms  ({page['bytes']:,} B)")
    print(f"  GET /api/.../timeline    min {timeline['min_ms']:8.1f} ms  median "
          f"{timeline['median_ms']:8.1f} ms  max {timeline['max_ms']:8.1f} ms  "
          f"({timeline['bytes']:,} B)")
    print(f"  API requests by the hub: {report['requests']}")
    verdict = "PASS" if report["pass"] else "MISS"
    print(f"{verdict}: the page in under {BUDGET_MS:.0f} ms of server time "
          f"(median and max)")


if __name__ == "__main__":
    main()
