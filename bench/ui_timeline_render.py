"""The dashboard's timeline in a real browser: how fast 1,000 task runs render, and no freezing.

    python bench/ui_timeline_render.py [--rows 1000] [--runs 5] [--json]

The browser half of issue 14's performance goal (the server half is measured with the server).
No cluster: a static page made by ``tests/unit/_timeline_page.py`` (the package's own
timeline.js and timeline.css, the timeline JSON embedded as flowrun.html embeds it) is served on
127.0.0.1 and opened in Debian's headless Chromium through Playwright. The dataset is a map of
--rows task runs over three task names: one in seven a cache hit (a marker), every other one
with three attempts (failed, timed out, then completed or failed) and two backoff waits: the
issue's "up to 3 attempts" taken as the worst case (``--mixed``: most runs take one attempt).

For each of --runs fresh pages:

- ``all rows``: the page drawn ungrouped (``data-group="rows"``: every row, the worst case);
  navigation start to the first frame painted after the render (``flowpodTimeline.renderedAt``,
  a ``performance.now()`` taken in a timeout after the frame's requestAnimationFrame);
- ``render()``: the script's own time to build and lay out the rows (``lastRenderMs``);
- ``grouped``: the same page as a person gets it (large runs open grouped by task);
- the longest main-thread task seen by a ``longtask`` PerformanceObserver during load, and the
  time from a click to its next painted frame for "zoom in" and for the grouping toggle: the page
  stays responsive if these stay well under 100 ms.

Prints min/median/max and PASS/MISS against the goal: all rows painted in under 1,000 ms
(median). A benchmark, not a test: it exits 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests" / "unit")]

import _browser  # noqa: E402 - bench/_browser.py, found through the path set just above
import _timeline_page as page_kit  # noqa: E402 - tests/unit/_timeline_page.py, likewise

TARGET_MS = 1000.0
# A click, then the time until the frame that shows its effect has painted.
CLICK_TO_PAINT = """
(selector) => new Promise((done) => {
  const t = performance.now();
  document.querySelector(selector).click();
  requestAnimationFrame(() => setTimeout(() => done(performance.now() - t), 0));
})
"""
FIGURES = {
    "rows_painted_ms": "all rows: navigation to painted",
    "rows_render_ms": "all rows: render() time",
    "grouped_painted_ms": "grouped: navigation to painted",
    "longest_task_ms": "longest main-thread task (load)",
    "zoom_click_ms": "zoom in: click to painted",
    "group_click_ms": "group toggle: click to painted",
}


def _one_run(browser: Any, base: str) -> dict[str, float]:
    figures: dict[str, float] = {}
    for mode, name in (("rows", "rows.html"), ("auto", "index.html")):
        context = browser.new_context(viewport=_browser.VIEWPORT)
        context.add_init_script(_browser.LONGTASKS)
        page = context.new_page()
        page.goto(base + name)
        page.wait_for_function("window.flowpodTimeline && window.flowpodTimeline.renderedAt > 0")
        state = page.evaluate(
            "({at: flowpodTimeline.renderedAt, ms: flowpodTimeline.lastRenderMs,"
            " bars: document.querySelectorAll('.tl-track .tl-bar').length})"
        )
        state["longest"] = page.evaluate(_browser.LONGEST_TASK)
        if mode == "rows":
            figures["rows_painted_ms"] = state["at"]
            figures["rows_render_ms"] = state["ms"]
            figures["longest_task_ms"] = state["longest"]
            figures["bars"] = state["bars"]
            figures["zoom_click_ms"] = page.evaluate(CLICK_TO_PAINT, "[aria-label='zoom in']")
            figures["group_click_ms"] = page.evaluate(CLICK_TO_PAINT, ".tl-group-toggle input")
        else:
            figures["grouped_painted_ms"] = state["at"]
        context.close()
    return figures


def measure(rows: int, runs: int, *, retry_all: bool = True) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    data = page_kit.timeline(page_kit.sample_rows(rows, retry_all=retry_all), end_s=75)
    with tempfile.TemporaryDirectory(prefix="flowpod-bench-ui-") as tmp:
        site = Path(tmp)
        page_kit.write_page(site, data)
        index = (site / "index.html").read_text(encoding="utf-8")
        (site / "rows.html").write_text(
            index.replace('<div id="timeline"', '<div id="timeline" data-group="rows"'),
            encoding="utf-8",
        )
        with page_kit.serve(site) as base, sync_playwright() as p:
            samples = _browser.sample(p, lambda browser: _one_run(browser, base), runs)
    attempts = sum(len(r["attempts"]) for r in data["rows"])
    summary = {key: _browser.stats(s[key] for s in samples) for key in FIGURES}
    return {"rows": rows, "attempts": attempts, "bars": samples[0]["bars"], "runs": runs,
            "target_ms": TARGET_MS, "figures": summary,
            "pass": summary["rows_painted_ms"]["median"] < TARGET_MS}


def report(result: dict[str, Any]) -> str:
    lines = [f"timeline of {result['rows']} task runs, {result['attempts']} attempts "
             f"({result['bars']} bars drawn), {result['runs']} runs; Chromium headless",
             f"{'':36} {'min':>8} {'median':>8} {'max':>8}"]
    for key, title in FIGURES.items():
        f = result["figures"][key]
        verdict = ""
        if key == "rows_painted_ms":
            verdict = "  PASS" if result["pass"] else "  MISS"
            verdict += f" (target < {TARGET_MS:.0f} ms)"
        lines.append(f"{title:36} {f['min']:8.1f} {f['median']:8.1f} {f['max']:8.1f}{verdict}")
    lines.append("(ms; a long task is main-thread work over 50 ms, 0 when there was none)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="task runs in the flow run")
    parser.add_argument("--runs", type=int, default=5, help="fresh pages measured")
    parser.add_argument("--mixed", action="store_true",
                        help="a mixed map (most runs one attempt) instead of three attempts each")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.runs < 1:
        parser.error("--rows and --runs must be at least 1")
    why = _browser.missing()
    if why:
        print(f"ui_timeline_render.py needs a browser: {why}", file=sys.stderr)
        return 2
    result = measure(args.rows, args.runs, retry_all=not args.mixed)
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
