"""The benchmark still runs: a tiny flowpod-only workload, JSON output (timings not asserted)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from example_support import ROOT


def test_benchmark_reports_every_row_for_flowpod() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "local_overhead.py")]
        + ["--tasks", "20", "--repeat", "1", "--no-prefect", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["errors"] == {}
    figures = report["results"]["flowpod"]
    for key in ("direct_us", "submit_us", "first_run_ms", "startup_import_ms", "import_ms"):
        assert isinstance(figures[key], float), key
    assert figures["peak_rss_mb"] > 0
    assert figures["import_ms"] > 0 and figures["first_run_ms"] > 0


def test_benchmark_rejects_a_zero_task_count() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "local_overhead.py"), "--tasks", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--tasks and --repeat must be at least 1" in done.stderr


def test_timeline_render_benchmark_reports_its_figures() -> None:
    if not Path("/usr/bin/chromium").exists() or importlib.util.find_spec("playwright") is None:
        pytest.skip("the timeline benchmark needs /usr/bin/chromium and playwright")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ui_timeline_render.py")]
        + ["--rows", "50", "--runs", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["rows"] == 50 and report["bars"] == report["attempts"] > 50
    for figure in report["figures"].values():
        assert figure["min"] <= figure["median"] <= figure["max"]
    assert report["figures"]["rows_painted_ms"]["min"] > 0


def test_dashboard_page_benchmark_reports_its_figures() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ui_page.py"), "--tasks", "50", "--repeat", "2",
         "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    for route in ("page", "timeline"):
        assert {"min_ms", "median_ms", "max_ms", "bytes"} <= set(report[route]), route
        assert report[route]["bytes"] > 0
    assert report["requests"]["list"] == 4 and isinstance(report["pass"], bool)


def test_dashboard_page_benchmark_loads_the_page_in_a_browser() -> None:
    if not Path("/usr/bin/chromium").exists() or importlib.util.find_spec("playwright") is None:
        pytest.skip("ui_page.py --browser needs /usr/bin/chromium and playwright")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ui_page.py"), "--browser", "--tasks", "50",
         "--repeat", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {"page", "timeline", "requests", "pass"} <= set(report)  # the server half still there
    browser = report["browser"]
    assert browser["table_rows"] == 50 and browser["timeline_rows"] > 0
    assert len(browser["samples"]) == 2 and browser["bytes"] > 0
    keys = ("response_ms", "dom_content_loaded_ms", "load_ms", "timeline_painted_ms",
            "timeline_render_ms", "longest_task_ms")
    assert set(browser["figures"]) == set(keys)
    for key in keys:
        figure = browser["figures"][key]
        assert figure["min_ms"] <= figure["median_ms"] <= figure["max_ms"], key
    figures = browser["figures"]
    assert 0 < figures["dom_content_loaded_ms"]["min_ms"] <= figures["load_ms"]["min_ms"]
    assert figures["timeline_painted_ms"]["min_ms"] > 0
    assert figures["longest_task_ms"]["min_ms"] >= 0
    for verdict in ("usable_pass", "smooth_pass", "pass"):
        assert isinstance(browser[verdict], bool), verdict
