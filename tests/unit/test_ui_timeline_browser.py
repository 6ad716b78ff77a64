"""The dashboard's timeline (static/timeline.js) in headless Chromium, as a person reads it.

No cluster and no server code: a static page with the package's timeline.js/css and an embedded
timeline JSON (tests/unit/_timeline_page.py), served on 127.0.0.1 so ``data-src`` can be fetched.
Each test asserts what is on screen: bars and their states, tooltips, the wait and cache-hit
marks, grouping, zoom, live reload; screenshots go to test-artifacts/ui/.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _timeline_page import ROOT, row, sample_rows, serve, timeline, write_page

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "ui"
EVIL = "<script>alert(1)</script>"

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (Debian's chromium package)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect


def small_run() -> dict[str, Any]:
    """A finished run: a task retried twice (a failure, a timeout), a cache hit, a pending task,
    a running one, and a task whose name is a script tag."""
    return timeline([
        row("extract-1", "extract", "Completed", [
            {"n": 1, "start": 0, "end": 3, "state": "Failed", "reason": "Error",
             "message": "ValueError: boom"},
            {"n": 2, "start": 5, "end": 7, "state": "TimedOut", "reason": "DeadlineExceeded",
             "message": "attempt 2 timed out after 2s"},
            {"n": 3, "start": 11, "end": 14, "state": "Completed"},
        ], waits=[{"start": 3, "end": 5}, {"start": 7, "end": 11}]),
        row("load-0", "load", "Cached", [],
            markers=[{"at": 2, "kind": "cached", "label": "cache hit"}]),
        row(EVIL, EVIL, "Failed", [
            {"n": 1, "start": 4, "end": 9, "state": "Failed", "message": EVIL}]),
        row("report", "report", "Pending", []),
    ], end_s=20)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    """open_page(data) -> a page showing it; every page fails the test on a dialog or error."""
    pages: list[Any] = []
    problems: list[str] = []

    def on_dialog(dialog: Any) -> None:  # an alert() would mean data ran as code
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    with serve(tmp_path) as base:
        def _open(data: dict[str, Any], **page_options: Any) -> Any:
            write_page(tmp_path, data, **page_options)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("dialog", on_dialog)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto(base + "index.html")
            page.wait_for_function("window.flowpodTimeline && window.flowpodTimeline.renders > 0")
            pages.append(page)
            return page

        yield _open
        for page in pages:
            page.close()
    assert problems == []


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_bars_show_each_attempt_state_waits_timeout_and_cache_hit(open_page: Any) -> None:
    page = open_page(small_run())
    extract = page.locator(".tl-row", has=page.get_by_role("link", name="extract-1", exact=True))
    bars = extract.locator(".tl-bar")
    expect(bars).to_have_count(3)
    assert [bars.nth(i).get_attribute("data-state") for i in range(3)] == [
        "Failed", "TimedOut", "Completed"]
    timed_out = bars.nth(1)
    assert "attempt 2: TimedOut" in (timed_out.get_attribute("aria-label") or "")
    assert "attempt 2 timed out after 2s" in (timed_out.get_attribute("title") or "")
    expect(extract.locator(".tl-wait")).to_have_count(2)
    # The second wait (7s to 11s) lies between the timed-out bar and the last one.
    wait, last = extract.locator(".tl-wait").nth(1).bounding_box(), bars.nth(2).bounding_box()
    assert timed_out.bounding_box()["x"] < wait["x"] < last["x"]

    cached = page.locator(".tl-row", has=page.get_by_role("link", name="load-0", exact=True))
    expect(cached.locator(".tl-bar")).to_have_count(0)
    expect(cached.locator(".tl-marker.tl-m-cached")).to_have_count(1)
    assert "cache hit" in (cached.locator(".tl-marker").get_attribute("title") or "")
    expect(page.locator(".tl-track .tl-bar")).to_have_count(4)
    expect(page.locator(".tl-legend")).to_contain_text("TimedOut")
    expect(page.locator(".tl-axis")).to_contain_text("0s")
    expect(page.locator(".tl-axis")).to_contain_text("start")
    expect(page.locator(".tl-axis")).to_contain_text("end")
    screenshot(page, "timeline-small.png")


def test_a_script_task_name_stays_text(open_page: Any) -> None:
    page = open_page(small_run())
    label = page.get_by_role("link", name=EVIL, exact=True)
    expect(label).to_have_text(EVIL)
    bar = page.locator(".tl-row", has=label).locator(".tl-bar")
    assert EVIL in (bar.get_attribute("title") or "")
    expect(page.locator("#timeline script")).to_have_count(0)
    assert page.evaluate("document.querySelectorAll('script').length") == 2  # the page's own


def test_a_bar_and_a_label_lead_to_the_task_run_page(open_page: Any) -> None:
    page = open_page(small_run())
    assert page.get_by_role("link", name="extract-1", exact=True).get_attribute("href") == (
        "/tasks/extract-1-x1.html")
    page.locator(".tl-bar[data-state='TimedOut']").click()
    expect(page).to_have_url(re.compile(r"/tasks/extract-1-x1\.html$"))


def test_zoom_widens_bars_and_scrolls_and_fit_restores(open_page: Any) -> None:
    page = open_page(small_run())
    bar = page.locator(".tl-bar[data-state='TimedOut']")
    before = bar.bounding_box()["width"]
    page.get_by_role("button", name="zoom in").click()
    page.get_by_role("button", name="zoom in").click()
    page.wait_for_function(
        f"document.querySelector(\".tl-bar[data-state='TimedOut']\")"
        f".getBoundingClientRect().width > {before * 2}")
    assert page.evaluate(
        "(() => { const s = document.querySelector('.tl-scroll');"
        " return s.scrollWidth > s.clientWidth; })()")
    screenshot(page, "timeline-zoomed.png")
    page.get_by_role("button", name="fit the whole run").click()
    page.wait_for_function(
        f"Math.abs(document.querySelector(\".tl-bar[data-state='TimedOut']\")"
        f".getBoundingClientRect().width - {before}) < 1")
    # ctrl+wheel zooms too (plain wheel is left to scrolling).
    page.locator(".tl-scroll").hover()
    page.keyboard.down("Control")
    page.mouse.wheel(0, -100)
    page.keyboard.up("Control")
    page.wait_for_function(
        f"document.querySelector(\".tl-bar[data-state='TimedOut']\")"
        f".getBoundingClientRect().width > {before * 1.2}")


def test_a_thousand_runs_are_grouped_by_task_and_a_group_expands(open_page: Any) -> None:
    page = open_page(timeline(sample_rows(1000), end_s=75))
    groups = page.locator(".tl-group")
    expect(groups).to_have_count(3)
    load = page.get_by_role("button", name="load ×700")
    expect(load).to_contain_text("Completed")
    expect(load).to_contain_text("Failed")
    expect(page.locator(".tl-track .tl-bar")).to_have_count(0)
    screenshot(page, "timeline-1000-grouped.png")

    load.click()
    expect(load).to_have_attribute("aria-expanded", "true")
    expect(page.locator(".tl-nested")).to_have_count(700)
    expect(page.get_by_role("link", name="load-0", exact=True)).to_be_visible()
    screenshot(page, "timeline-1000-expanded.png")

    page.get_by_label("group by task").uncheck()
    expect(page.locator(".tl-row")).to_have_count(1000)
    page.get_by_label("group by task").check()
    expect(page.locator(".tl-group")).to_have_count(3)
    expect(page.locator(".tl-nested")).to_have_count(700)  # still expanded


def test_a_running_attempt_grows_until_now(open_page: Any) -> None:
    # The run started 30 s before the browser's now; its only attempt is still running.
    now_ms = int(time.time() * 1000)
    data = timeline([row("train", "train", "Running", [
        {"n": 1, "start": 0, "end": None, "state": "Running"}])], end_s=None, now_ms=now_ms)
    data["start"] = data["rows"][0]["attempts"][0]["start"] = now_ms - 30_000
    page = open_page(data)
    bar = page.locator(".tl-bar[data-state='Running']")
    expect(bar).to_have_attribute("aria-label", re.compile("attempt 1: Running.*running for"))
    expect(page.locator(".tl-axis .tl-now")).to_have_count(1)
    screenshot(page, "timeline-running.png")
    title = bar.get_attribute("title") or ""
    page.wait_for_function(
        "t => document.querySelector(\".tl-bar[data-state='Running']\").title !== t", arg=title)


def test_a_change_event_refetches_and_keeps_zoom_and_grouping(
        open_page: Any, tmp_path: Path) -> None:
    page = open_page(small_run())
    page.get_by_role("button", name="zoom in").click()
    page.get_by_label("group by task").check()
    expect(page.locator(".tl-group")).to_have_count(4)
    zoom = page.evaluate("getComputedStyle(document.getElementById('timeline'))"
                         ".getPropertyValue('--tl-zoom')")

    changed = small_run()
    changed["rows"].append(row("publish", "publish", "Completed", [
        {"n": 1, "start": 15, "end": 18, "state": "Completed"}]))
    (tmp_path / "timeline.json").write_text(json.dumps(changed), encoding="utf-8")
    page.evaluate("document.dispatchEvent(new CustomEvent('flowpod:change'))")

    expect(page.get_by_role("button", name="publish ×1")).to_be_visible()
    expect(page.locator(".tl-group")).to_have_count(5)
    assert page.evaluate("getComputedStyle(document.getElementById('timeline'))"
                         ".getPropertyValue('--tl-zoom')") == zoom
    assert float(zoom) > 1
    assert page.evaluate("window.flowpodTimeline.renders") == 2


def test_a_failed_refresh_says_so_and_keeps_the_timeline(
        open_page: Any, tmp_path: Path) -> None:
    page = open_page(small_run())
    (tmp_path / "timeline.json").unlink()
    page.evaluate("window.flowpodTimeline.reload()")
    expect(page.get_by_role("status")).to_contain_text("could not refresh the timeline")
    expect(page.locator(".tl-track .tl-bar")).to_have_count(4)

