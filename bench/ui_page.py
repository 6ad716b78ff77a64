"""The dashboard's flow-run page for a map of 1,000 task runs: server time, and in a browser.

    python bench/ui_page.py [--tasks 1000] [--repeat 20] [--json] [--browser]

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

``--browser`` adds the other half of the goal, "the browser renders it without freezing": the
same app (a fresh fake hub) is served by uvicorn in a thread on 127.0.0.1 (a free port) and
``GET /runs/<ns>/<name>`` - the whole page: status, timeline, the task table of every task run,
events, parameters, with its scripts and styles - is opened in Debian's headless Chromium
through Playwright, ``--repeat`` times after a warm-up, each in a fresh browser context (no
cache: a first visit). For each load, from navigation start (``performance.now()`` 0):

- ``response_ms``: the first byte of the page (server time plus the loopback);
- ``dom_content_loaded_ms``: ``domContentLoadedEventEnd`` (HTML parsed, deferred scripts run);
- ``load_ms``: ``loadEventEnd`` (styles and scripts loaded);
- ``timeline_painted_ms``: ``flowpodTimeline.renderedAt``, taken by timeline.js in a timeout
  after the requestAnimationFrame that follows its render: the page is usable;
- ``timeline_render_ms``: ``flowpodTimeline.lastRenderMs``, the script's own render time;
- ``longest_task_ms``: the longest main-thread task during the load, from a ``longtask``
  PerformanceObserver installed (``page.add_init_script``, ``buffered``) before any page script;
  0 when no task took over 50 ms (the browser reports none shorter).

PASS or MISS (medians): the page usable - timeline painted - in under 1,000 ms, and the longest
main-thread block under 200 ms. Why 200 ms for "without freezing": while the main thread runs
one task, the page cannot answer a click, a key or a scroll that needs script; 200 ms is the
bound Chrome's web-vitals give for a "good" Interaction to Next Paint (input to the next frame),
so a person acting during the load waits at most that long, and is not left with a page that
looks frozen (RAIL's 100 ms is the aim for input handled after the load; 50 ms is what counts as
a long task at all). ``--browser`` exits 2 when Chromium or Playwright is missing.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "sdk"), str(ROOT / "operator"), str(ROOT / "bench")]

import _browser  # noqa: E402 - bench/_browser.py

from flowpod._ui.app import create_app  # noqa: E402
from flowpod._ui.hub import WatchHub  # noqa: E402

NS, RUN = "bench", "map-1000-x7k2qp"
BUDGET_MS = 1000.0
BLOCK_BUDGET_MS = 200.0  # the longest main-thread task during the load (see the docstring)
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
    return _browser.stats(samples, suffix="_ms")


def _dashboard(tasks: int) -> tuple[Any, WatchHub, _Api]:
    """The app as ``flowpod ui`` builds it, over a fresh fake API (a hub starts only once)."""
    flowrun, taskruns = build_objects(tasks)
    api = _Api(flowrun, taskruns)
    hub = WatchHub(api, batch_seconds=0.5)  # type: ignore[arg-type]
    return create_app(hub, lambda storage: None), hub, api


def run(tasks: int, repeat: int) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette's note about httpx vs httpx2
        from starlette.testclient import TestClient

    app, hub, api = _dashboard(tasks)
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


@contextmanager
def _served(app: Any) -> Iterator[str]:
    """Serves ``app`` with uvicorn in a thread on 127.0.0.1 (a free port); yields its base URL.

    As ``flowpod ui`` serves it (access log off, 2 s for open event streams on shutdown)."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, access_log=False,
                            log_level="warning", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="bench-uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise SystemExit("uvicorn did not start")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


# Once the load event has ended and the timeline has painted; all in ms from navigation start.
_PAGE_FIGURES = """
(() => {
  const nav = performance.getEntriesByType("navigation")[0];
  return {
    response_ms: nav.responseStart,
    dom_content_loaded_ms: nav.domContentLoadedEventEnd,
    load_ms: nav.loadEventEnd,
    timeline_painted_ms: window.flowpodTimeline.renderedAt,
    timeline_render_ms: window.flowpodTimeline.lastRenderMs,
    bytes: nav.transferSize,
    table_rows: document.querySelectorAll("table.tasks tbody tr").length,
    timeline_rows: document.querySelectorAll("#timeline .tl-row").length,
    timeline_grouped: window.flowpodTimeline.grouped,
  };
})()
"""
_LOADED = ("window.flowpodTimeline && window.flowpodTimeline.renderedAt > 0"
           " && performance.getEntriesByType('navigation')[0].loadEventEnd > 0")
BROWSER_FIGURES = {
    "response_ms": "first byte of the page",
    "dom_content_loaded_ms": "DOMContentLoaded",
    "load_ms": "load event",
    "timeline_painted_ms": "timeline painted (usable)",
    "timeline_render_ms": "timeline render() itself",
    "longest_task_ms": "longest main-thread block",
}


def _load_once(browser: Any, url: str) -> dict[str, float]:
    context = browser.new_context(viewport=_browser.VIEWPORT)
    try:
        context.add_init_script(_browser.LONGTASKS)
        page = context.new_page()
        response = page.goto(url, wait_until="load")
        if response is None or response.status != 200:
            raise SystemExit(f"GET {url}: {response.status if response else 'no response'}")
        page.wait_for_function(_LOADED, timeout=60_000)
        figures: dict[str, float] = page.evaluate(_PAGE_FIGURES)
        figures["longest_task_ms"] = page.evaluate(_browser.LONGEST_TASK)
        return figures
    finally:
        context.close()


def run_browser(tasks: int, repeat: int) -> dict[str, Any]:
    """The whole flow-run page loaded in headless Chromium, ``repeat`` fresh contexts."""
    from playwright.sync_api import sync_playwright

    app, hub, api = _dashboard(tasks)
    try:
        with _served(app) as base, sync_playwright() as p:
            if not hub.wait_synced(30):
                raise SystemExit("the hub did not list the objects")
            url = f"{base}/runs/{NS}/{RUN}"
            samples = _browser.sample(p, lambda browser: _load_once(browser, url), repeat)
    finally:
        api.closed.set()
    figures = {key: _browser.stats((s[key] for s in samples), suffix="_ms")
               for key in BROWSER_FIGURES}
    last = samples[-1]
    usable = figures["timeline_painted_ms"]["median_ms"] < BUDGET_MS
    smooth = figures["longest_task_ms"]["median_ms"] < BLOCK_BUDGET_MS
    return {"url": f"/runs/{NS}/{RUN}", "repeat": repeat, "browser": "chromium headless",
            "bytes": last["bytes"], "table_rows": last["table_rows"],
            "timeline_rows": last["timeline_rows"], "timeline_grouped": last["timeline_grouped"],
            "budget_ms": BUDGET_MS, "block_budget_ms": BLOCK_BUDGET_MS, "figures": figures,
            "samples": [{key: round(s[key], 2) for key in BROWSER_FIGURES} for s in samples],
            "usable_pass": usable, "smooth_pass": smooth, "pass": usable and smooth}


def _print_browser(result: dict[str, Any]) -> None:
    print(f"the whole page in Chromium (headless), {result['repeat']} fresh pages after a "
          f"warm-up: {result['table_rows']:,} task table rows; timeline "
          f"{'grouped by task' if result['timeline_grouped'] else 'ungrouped'} "
          f"({result['timeline_rows']:,} rows drawn); {result['bytes']:,} B transferred")
    print(f"  {'from navigation start':30} {'min':>8} {'median':>8} {'max':>8}")
    for key, title in BROWSER_FIGURES.items():
        f = result["figures"][key]
        print(f"  {title:30} {f['min_ms']:8.1f} {f['median_ms']:8.1f} {f['max_ms']:8.1f}")
    print("  (ms; a long task is main-thread work over 50 ms, 0 when there was none)")
    for ok, what in ((result["usable_pass"],
                      f"page usable (timeline painted) in under {BUDGET_MS:.0f} ms (median)"),
                     (result["smooth_pass"],
                      f"longest main-thread block under {BLOCK_BUDGET_MS:.0f} ms (median)")):
        print(f"{'PASS' if ok else 'MISS'}: {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--browser", action="store_true",
                        help="also load the whole page in headless Chromium (Playwright)")
    args = parser.parse_args()
    if args.tasks < 1 or args.repeat < 1:
        parser.error("--tasks and --repeat must be at least 1")
    if args.browser and (why := _browser.missing()):
        print(f"ui_page.py --browser needs a browser: {why}", file=sys.stderr)
        raise SystemExit(2)
    report = run(args.tasks, args.repeat)
    if args.browser:
        report["browser"] = run_browser(args.tasks, args.repeat)
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
    if args.browser:
        print()
        _print_browser(report["browser"])


if __name__ == "__main__":
    main()
