"""The dashboard's routes (Starlette's TestClient) over a hub fed by a fake API server: pages,
fragments, the timeline JSON, logs, cancel, health, escaping of user text, and the SSE stream
with 10 clients costing no API request."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")

from _ui_fakes import (  # noqa: E402
    FakeHubApi,
    cached,
    event,
    flowrun,
    retried_then_completed,
    taskrun,
    wait_for,
)
from starlette.testclient import TestClient  # noqa: E402

from flowpod._contract.keys import log_key  # noqa: E402
from flowpod._storage import MemoryResultStore  # noqa: E402
from flowpod._ui.app import create_app  # noqa: E402
from flowpod._ui.hub import WatchHub  # noqa: E402

XSS = "<script>alert(1)</script>"


@pytest.fixture
def api() -> Iterator[FakeHubApi]:
    fake = FakeHubApi()
    fake.add("flowruns", flowrun(parameters={"day": "2026-01-01"}, message="2/3 tasks done"))
    fake.add("taskruns", retried_then_completed("add-1-ab", run_name="add-1"))
    fake.add("taskruns", cached("add-2-cd"))
    fake.add("taskruns", taskrun("mul-0-ef", task="mul"))
    fake.add("events", event("FlowRun", "etl-x", reason="Started", message="flow pod created"))
    fake.add("events", event("TaskRun", "add-1-ab"))
    yield fake
    fake.close()


@pytest.fixture
def store() -> MemoryResultStore:
    return MemoryResultStore()


def client_for(api: FakeHubApi, store: MemoryResultStore | None,
               allow_cancel: bool = False) -> tuple[TestClient, WatchHub]:
    hub = WatchHub(api, batch_seconds=0.05)
    app = create_app(hub, lambda storage: store, allow_cancel=allow_cancel)
    return TestClient(app), hub


@pytest.fixture
def client(api: FakeHubApi, store: MemoryResultStore) -> Iterator[TestClient]:
    test_client, hub = client_for(api, store)
    with test_client:
        assert hub.wait_synced(5)
        yield test_client


def test_runs_page_lists_filters_and_serves_a_fragment(client: TestClient,
                                                       api: FakeHubApi) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "etl-x" in page.text and 'href="/runs/team-a/etl-x"' in page.text
    assert '<link rel="stylesheet" href="/static/app.css">' in page.text
    assert "day=&#34;2026-01-01&#34;" in page.text
    assert "No flow runs match" in client.get("/?state=Failed").text
    fragment = client.get("/?fragment=1")
    assert fragment.text.lstrip().startswith('<div id="live" data-live>')
    assert "<html" not in fragment.text


def test_flowrun_page_has_status_timeline_tasks_and_events(client: TestClient) -> None:
    page = client.get("/runs/team-a/etl-x")
    assert page.status_code == 200
    text = page.text
    assert "2/3 tasks done" in text and "flow pod created" in text
    assert '<div id="timeline" data-src="/api/runs/team-a/etl-x/timeline"></div>' in text
    assert '<script src="/static/timeline.js" defer></script>' in text
    embedded = re.search(r'<script type="application/json" id="timeline-data">(.*?)</script>',
                         text, re.S)
    assert embedded is not None
    data = json.loads(embedded.group(1))
    assert {row["id"] for row in data["rows"]} == {"add-1-ab", "add-2-cd", "mul-0-ef"}
    assert client.get("/api/runs/team-a/etl-x/timeline").json()["rows"] == data["rows"]
    assert "s3cr3t-value" not in text and "TOKEN" not in text  # no env, ever
    assert "Cancel this run" not in text  # read-only by default
    fragment = client.get("/runs/team-a/etl-x?fragment=1").text
    assert 'id="live"' in fragment and 'id="live-tasks"' in fragment
    assert "timeline-data" not in fragment
    assert client.get("/runs/team-a/nope").status_code == 404


def test_taskrun_page_shows_attempts_and_cache(client: TestClient) -> None:
    text = client.get("/runs/team-a/etl-x/tasks/add-1-ab").text
    assert "attempt 1 timed out after 2s" in text and "DeadlineExceeded" in text
    assert "add-1-ab-1" in text and "add-1-ab-2" in text and "then retried" in text
    hit = client.get("/runs/team-a/etl-x/tasks/add-2-cd").text
    assert "hit: no pod ran" in hit and "the result came from the cache" in hit
    assert client.get("/runs/team-a/etl-x/tasks/nope").status_code == 404


def test_logs_merge_the_store_and_live_pods_and_count_the_reads(
        client: TestClient, api: FakeHubApi, store: MemoryResultStore) -> None:
    store.put(log_key("team-a", "add-1-ab", 1), b"10:00:02.000 | INFO | first try\n")
    store.put(log_key("team-a", "add-1-ab", 2), b"10:00:08.000 | INFO | second try\n")
    api.pod_logs["mul-0-ef-1"] = "2026-11-30T10:00:05.000Z multiplying\n"
    before = api.calls["log"]
    text = client.get("/runs/team-a/etl-x/logs?format=text").text
    assert text.splitlines() == ["add-1 #1 | 10:00:02.000 | INFO | first try",
                                 "mul-0-ef | multiplying",
                                 "add-1 #2 | 10:00:08.000 | INFO | second try"]
    assert api.calls["log"] == before + 2  # the flow pod's and mul's: pods that exist
    only = client.get("/runs/team-a/etl-x/logs?task=mul").text
    assert "multiplying" in only and "first try" not in only and '<pre class="log">' in only


def test_cancel_is_refused_unless_enabled_and_needs_the_header(api: FakeHubApi,
                                                               store: MemoryResultStore) -> None:
    test_client, hub = client_for(api, store)
    with test_client:
        refused = test_client.post("/runs/team-a/etl-x/cancel",
                                   headers={"X-Flowpod-Action": "cancel"})
        assert refused.status_code == 403 and api.patches == []
    test_client, hub = client_for(api, store, allow_cancel=True)
    with test_client:
        assert hub.wait_synced(5)
        assert "Cancel this run" in test_client.get("/runs/team-a/etl-x").text
        form_post = test_client.post("/runs/team-a/etl-x/cancel")
        assert form_post.status_code == 403 and api.patches == []
        done = test_client.post("/runs/team-a/etl-x/cancel",
                                headers={"X-Flowpod-Action": "cancel"})
        assert done.status_code == 202
        assert api.patches == [("team-a", "etl-x", {"cancel": True})]
        assert hub.stats()["patch"] == 1


def test_health_static_and_security_headers(client: TestClient) -> None:
    health = client.get("/healthz")
    assert health.json() == {"ok": True, "requests": {"list": 4, "watch": 4, "log": 0,
                                                      "patch": 0},
                             "clients": 0, "problems": []}
    css = client.get("/static/app.css")
    assert css.status_code == 200 and "--state-TimedOut" in css.text
    assert "EventSource" in client.get("/static/live.js").text
    policy = health.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'self'" in policy
    assert health.headers["x-content-type-options"] == "nosniff"


def test_user_text_is_escaped_everywhere(api: FakeHubApi, store: MemoryResultStore) -> None:
    run = flowrun("evil", flow=XSS, parameters={XSS: XSS}, message=XSS)
    api.add("flowruns", run)
    bad = taskrun("xss-0", flowrun_name="evil", task=XSS, run_name=XSS, message=XSS)
    api.add("taskruns", bad)
    api.add("events", event("FlowRun", "evil", message=XSS, reason=XSS))
    api.pod_logs["xss-0-1"] = f"2026-11-30T10:00:05.000Z <b>bold</b> {XSS}\n"
    test_client, hub = client_for(api, store)
    with test_client:
        assert hub.wait_synced(5)
        pages = [test_client.get(url).text for url in (
            "/", "/?fragment=1", "/runs/team-a/evil", "/runs/team-a/evil?fragment=1",
            "/runs/team-a/evil/tasks/xss-0", "/runs/team-a/evil/tasks/xss-0?fragment=1",
            "/runs/team-a/evil/logs", "/runs/team-a/evil/logs?task=xss-0")]
    for text in pages:
        assert XSS not in text and "<b>bold</b>" not in text
    flow_page = pages[2]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in flow_page
    embedded = re.search(r'id="timeline-data">(.*?)</script>', flow_page, re.S)
    assert embedded is not None and "<" not in embedded.group(1)
    assert json.loads(embedded.group(1))["rows"][0]["label"] == XSS
    assert "&lt;b&gt;bold&lt;/b&gt;" in pages[6]


async def _asgi_get(app: Any, path: str, query: str, received: list[str],
                    disconnect: asyncio.Event) -> None:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": query.encode(), "headers": [],
             "client": ("test", 1), "server": ("test", 80)}

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            received.append(message["body"].decode())

    await app(scope, receive, send)


def test_ten_sse_clients_share_the_watches(api: FakeHubApi, store: MemoryResultStore) -> None:
    hub = WatchHub(api, batch_seconds=0.05)
    app = create_app(hub, lambda storage: store)
    hub.start()
    try:
        assert hub.wait_synced(5)
        wait_for(lambda: all(api.watching(kind) for kind in ("flowruns", "taskruns", "pods",
                                                             "events")))
        before, api_before = hub.stats(), dict(api.calls)

        async def run() -> list[list[str]]:
            streams: list[list[str]] = [[] for _ in range(10)]
            gone = asyncio.Event()
            tasks = [asyncio.create_task(_asgi_get(
                app, "/events", "run=team-a/etl-x" if i % 2 else "", streams[i], gone))
                for i in range(10)]
            await asyncio.to_thread(wait_for, lambda: hub.clients == 10)
            health: list[str] = []
            done = asyncio.Event()
            done.set()
            await _asgi_get(app, "/healthz", "", health, done)
            assert json.loads(health[0])["clients"] == 10
            for i in range(300):
                api.emit("taskruns", "MODIFIED", taskrun(f"add-{i}"))
            api.emit("flowruns", "MODIFIED", flowrun(state="Completed"))
            await asyncio.to_thread(wait_for, lambda: all(
                any('"kind": "flowruns"' in chunk for chunk in s) for s in streams))
            gone.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 5)
            return streams

        streams = asyncio.run(run())
        assert hub.clients == 0
        assert hub.stats() == before and dict(api.calls) == api_before  # 10 clients: 0 more
        for i, chunks in enumerate(streams):
            changes = [c for c in chunks if c.startswith("event: change")]
            assert changes and len(changes) < 20
            if i % 2 == 0:  # the runs page: FlowRun changes only
                assert all('"kind": "flowruns"' in c for c in changes)
    finally:
        hub.stop()


def test_the_task_table_pages_through_the_query(api: FakeHubApi,
                                                store: MemoryResultStore) -> None:
    for i in range(130):
        api.add("taskruns", taskrun(f"add-{i:04d}", run_name=f"add-{i}"))
    test_client, hub = client_for(api, store)
    with test_client:
        assert hub.wait_synced(5)
        first = test_client.get("/runs/team-a/etl-x").text
        assert "rows 1&ndash;100 of 133" in first and "tasks_page=2" in first
        second = test_client.get("/runs/team-a/etl-x?tasks_page=2&fragment=1").text
        assert "rows 101&ndash;133 of 133" in second
        body = second.split("<tbody>")[1].split("</tbody>")[0]
        assert body.count("<tr>") == 33
