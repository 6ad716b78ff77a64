"""The dashboard as a person sees it: ``flowpod ui`` against the test cluster, pages opened in
Debian's Chromium through Playwright.

One real flow runs on the node with a task that retries twice before it succeeds, one that times
out, one that fails, and one whose second call is a cache hit. The test then reads the pages:
the runs list (which updates live while a second run starts), the flow run's timeline (bars per
attempt, the timeout's message, the cache hit's marker), a task run's attempts, and the logs
after every pod is gone (from the store). Screenshots go to ``test-artifacts/ui/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import REPO_ROOT, Cluster, wait_for
from .operator_fixtures import (  # noqa: F401 - fixtures, used by name
    _free_port,
    operator,
    operator_factory,
    operator_kubeconfig,
    operator_rbac,
)
from .test_flowruns import (
    FLOWPOD,
    flow_runner,  # noqa: F401 - fixture, used by name
    flowpod_cli,
    taskruns_of,
)

pytestmark = [pytest.mark.timeout(420), pytest.mark.usefixtures("operator", "flow_runner")]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"

SHOWCASE_FLOW = '''
import time

from flowpod import flow, get_run_logger, task
from flowpod.cache_policies import INPUTS
from flowpod.runtime import task_run


@task(retries=2, retry_delay_seconds=1)
def flaky(x: int) -> int:
    attempt = task_run.run_count
    if attempt < 3:
        raise RuntimeError(f"flaky attempt {attempt} failed")
    get_run_logger().info("flaky attempt %d succeeded", attempt)
    return x * 10


@task(timeout_seconds=3)
def slow() -> None:
    time.sleep(120)


@task
def broken() -> None:
    raise ValueError("broken on purpose")


@task(cache_policy=INPUTS)
def square(x: int) -> int:
    get_run_logger().info("squaring %d", x)
    return x * x


@flow
def showcase(n: int = 3, note: str = "") -> dict[str, int]:
    first = square.submit(n).result()
    again = square.submit(n)
    retried, timed_out, failed = flaky.submit(n), slow.submit(), broken.submit()
    timed_out.wait()
    failed.wait()
    return {"square": first, "again": again.result(), "flaky": retried.result()}
'''


def _browser() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not CHROMIUM.exists():
        message = "browser tests need Debian's chromium and playwright (pip install playwright)"
        if os.environ.get("FLOWPOD_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return sync_playwright


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    sync_playwright = _browser()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


@pytest.fixture
def dashboard(cluster: Cluster, namespace: str) -> Iterator[str]:
    """``flowpod ui`` as a user starts it: the kubeconfig's cluster, one namespace, the store
    from FLOWPOD_S3_* (in os.environ while the suite runs)."""
    port = _free_port()
    proc = subprocess.Popen(
        [str(FLOWPOD), "--kubeconfig", cluster.kubeconfig, "ui", "--port", str(port),
         "-n", namespace],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"flowpod ui exited {proc.returncode}: {proc.stdout.read()}")
            try:
                return _get(url + "/healthz")[0] == 200
            except OSError:
                return False

        wait_for(healthy, 30, "flowpod ui to answer /healthz")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _submit(namespace: str, path: Path, *params: str, wait: bool = True) -> str:
    args = ["-n", namespace, "submit", f"{path}:showcase", *params]
    if wait:
        args += ["--wait", "--timeout", "240"]
    proc = flowpod_cli(*args, timeout=300)
    name = proc.stdout.split("flowrun.flowpod.dev/")[1].split()[0]
    return name


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_dashboard_shows_retries_timeout_cache_hit_and_failure(
    cluster: Cluster, namespace: str, dashboard: str, chromium: Any, tmp_path: Path
) -> None:
    flow_file = tmp_path / "showcase_flows.py"
    flow_file.write_text(SHOWCASE_FLOW)
    page = chromium.new_page(viewport={"width": 1400, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    # The runs list is open before the run exists: it appears without a reload (SSE).
    page.goto(dashboard + "/")
    # A fresh input: the store outlives test runs, and only the second call may hit the cache.
    n = 1000 + uuid.uuid4().int % 1_000_000
    name = _submit(namespace, flow_file, "-p", f"n={n}", "-p",
                   'note="<script>alert(1)</script>"')
    page.wait_for_function(f"document.body.innerText.includes({json.dumps(name)})",
                           timeout=30_000)
    row = page.locator("tr", has_text=name)
    row.wait_for(timeout=10_000)
    # ...and its state follows the run's to the end, still without a reload.
    row.locator("td:nth-child(4) .state", has_text="Completed").wait_for(timeout=30_000)
    _shot(page, "runs")

    taskruns = {tr["spec"]["taskName"]: tr for tr in taskruns_of(cluster, namespace, name)
                if tr["spec"]["taskName"] != "square"}
    squares = [tr for tr in taskruns_of(cluster, namespace, name)
               if tr["spec"]["taskName"] == "square"]
    assert sorted(tr["status"]["state"] for tr in squares) == ["Cached", "Completed"]
    assert taskruns["slow"]["status"]["state"] == "TimedOut"
    assert taskruns["broken"]["status"]["state"] == "Failed"
    assert taskruns["flaky"]["status"]["attempt"] == 3

    # The flow run: the timeline's bars, the timeout's message, the cache hit's marker, the
    # parameter (user input) shown as text.
    page.goto(f"{dashboard}/runs/{namespace}/{name}")
    page.wait_for_selector("#timeline [data-state]", timeout=15_000)
    text = page.inner_text("body")
    assert "Completed" in text and "TimedOut" in text and "Failed" in text
    assert "<script>alert(1)</script>" in text
    flaky_run = taskruns["flaky"]["spec"]["runName"]
    timeline = page.locator("#timeline")
    bars = timeline.locator(f"[data-row='{taskruns['flaky']['metadata']['name']}'] [data-attempt]")
    assert bars.count() == 3, timeline.inner_html()[:2000]
    assert timeline.locator("[data-marker='cached']").count() == 1
    timeout_message = str(taskruns["slow"]["status"]["message"])
    titles = timeline.locator("[data-state='TimedOut']").evaluate_all(
        "els => els.map(e => e.getAttribute('title') || '')")
    assert any(timeout_message.split(".")[0] in title for title in titles), titles
    _shot(page, "flowrun")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator("#timeline").screenshot(path=str(ARTIFACTS / "timeline.png"))

    # A task run: three attempts, the first two Failed with their messages.
    page.click(f"text={flaky_run}")
    page.wait_for_url(f"**/tasks/{taskruns['flaky']['metadata']['name']}", timeout=10_000)
    text = page.inner_text("body")
    assert "flaky attempt 1 failed" in text and "flaky attempt 2 failed" in text
    assert "AwaitingRetry" in text or "Completed" in text
    _shot(page, "taskrun")

    # Logs after the pods are gone: read from the store, through the page's task filter.
    cluster.kubectl("delete", "pods", "--all", "-n", namespace, "--wait=true", timeout=120)
    page.goto(f"{dashboard}/runs/{namespace}/{name}")
    page.select_option("#log-filter select", "flaky")
    page.click("#log-filter button")
    page.locator("#logs pre", has_text="flaky attempt 3 succeeded").wait_for(timeout=15_000)
    assert "squaring" not in page.inner_text("#logs")
    page.goto(f"{dashboard}/runs/{namespace}/{name}/logs?task={flaky_run}&format=text")
    assert "flaky attempt 3 succeeded" in page.inner_text("body")
    page.goto(f"{dashboard}/runs/{namespace}/{name}/tasks/{taskruns['slow']['metadata']['name']}")
    assert timeout_message.split(".")[0] in page.inner_text("body")

    # Read-only by default: no cancel button, and the write is refused.
    page.goto(f"{dashboard}/runs/{namespace}/{name}")
    assert page.locator("button", has_text="Cancel").count() == 0
    request = urllib.request.Request(f"{dashboard}/runs/{namespace}/{name}/cancel", method="POST",
                                     headers={"X-Flowpod-Action": "cancel"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 403
    assert dialogs == []
    page.close()


def test_ten_browsers_share_one_watch_per_kind(
    namespace: str, dashboard: str, chromium: Any
) -> None:
    def health() -> dict[str, Any]:
        return dict(json.loads(_get(dashboard + "/healthz")[1]))

    # Settled: every kind listed and watched once.
    before = wait_for(lambda: (lambda h: h if h["requests"]["watch"] >= 4 else None)(health()),
                      20, "the dashboard's four watches")
    pages = []
    for _ in range(10):
        page = chromium.new_page()
        page.goto(dashboard + "/")
        pages.append(page)
    wait_for(lambda: health()["clients"] >= 10, 20, "10 live clients")
    after = health()
    print(f"API requests: before {before['requests']}, with 10 browsers {after['requests']}",
          file=sys.stderr)
    assert after["requests"].get("watch", 0) == before["requests"].get("watch", 0)
    assert after["requests"].get("list", 0) == before["requests"].get("list", 0)
    for page in pages:
        page.close()
