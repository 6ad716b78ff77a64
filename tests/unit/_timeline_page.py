"""A static page that shows the dashboard's timeline, for the browser test and the benchmark.

The page holds the package's own ``timeline.css`` and ``timeline.js`` (copied from the source
tree, so it is what the server ships) and the timeline JSON embedded the way flowrun.html embeds
it; ``serve`` puts a directory on ``http://127.0.0.1:<free port>/`` so ``data-src`` can be
fetched. ``sample_rows`` makes the rows of a map of N task runs with retries, waits, cache hits,
timeouts and failures, deterministic for a given N. ``bench/ui_timeline_render.py`` imports this
module too (one fixture for both).
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "sdk" / "flowpod" / "_ui" / "static"
START = 1_764_480_000_000  # ms since epoch, a fixed day: the figures do not depend on today
DATA_FILE = "timeline.json"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>timeline</title>
<link rel="stylesheet" href="static/timeline.css"></head>
<body style="margin:16px;font-family:sans-serif">
<h1 style="font-size:18px">{title}</h1>
<div id="timeline" data-src="{data_src}"></div>
<script type="application/json" id="timeline-data">{embedded}</script>
<script src="static/timeline.js"></script>
</body></html>
"""


def embed(data: dict[str, Any]) -> str:
    """The JSON as flowrun.html embeds it: ``<`` escaped so no text can close the script."""
    return json.dumps(data).replace("<", "\\u003c")


def row(
    name: str,
    task: str,
    state: str,
    attempts: list[dict[str, Any]],
    *,
    waits: list[dict[str, Any]] | None = None,
    markers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One row of the timeline JSON; attempts' and waits' times are seconds after START."""

    def ms(seconds: float | None) -> int | None:
        return None if seconds is None else START + int(seconds * 1000)

    return {
        "id": f"{name}-x1",
        "label": name,
        "task": task,
        "state": state,
        "href": f"/tasks/{name}-x1.html",
        "attempts": [
            {**a, "start": ms(a["start"]), "end": ms(a.get("end"))} for a in attempts
        ],
        "waits": [{"start": ms(w["start"]), "end": ms(w.get("end"))} for w in waits or []],
        "markers": [{**m, "at": ms(m["at"])} for m in markers or []],
    }


def timeline(
    rows: list[dict[str, Any]], *, end_s: float | None, now_ms: int | None = None
) -> dict[str, Any]:
    """The whole JSON: the run started at START and ended ``end_s`` seconds later (None: runs)."""
    end = None if end_s is None else START + int(end_s * 1000)
    return {"start": START, "end": end, "now": now_ms or end or START, "rows": rows}


def sample_rows(
    count: int, tasks: tuple[str, ...] = ("load", "transform", "report"), *, retry_all: bool = False
) -> list[dict[str, Any]]:
    """A map of ``count`` task runs over a few task names.

    Task names take shares 70/25/5 % (so grouping gives a few groups). Every 7th run is a cache
    hit (a marker, no bar); every 50th fails after three attempts (the second timed out); one in
    three completes on its second attempt; the rest on their first. With ``retry_all`` every run
    that is not a cache hit takes three attempts (the benchmark's worst case).
    """
    rows = []
    shares = [0.70, 0.25, 0.05][: len(tasks)]
    bounds = [int(count * sum(shares[: i + 1])) for i in range(len(shares))]
    for i in range(count):
        task = tasks[next((k for k, b in enumerate(bounds) if i < b), len(tasks) - 1)]
        t = (i % 100) * 0.6
        name = f"{task}-{i}"
        if i % 7 == 3:
            rows.append(row(name, task, "Cached", [],
                            markers=[{"at": t, "kind": "cached", "label": "cache hit"}]))
        elif i % 50 == 49 or retry_all:
            last = "Failed" if i % 50 == 49 else "Completed"
            rows.append(row(name, task, last, [
                {"n": 1, "start": t, "end": t + 2, "state": "Failed", "reason": "Error",
                 "message": "ValueError: boom"},
                {"n": 2, "start": t + 4, "end": t + 6, "state": "TimedOut",
                 "reason": "DeadlineExceeded", "message": "attempt 2 timed out after 2s"},
                {"n": 3, "start": t + 8, "end": t + 9, "state": last,
                 "reason": "Error" if last == "Failed" else None,
                 "message": "ValueError: boom" if last == "Failed" else None},
            ], waits=[{"start": t + 2, "end": t + 4}, {"start": t + 6, "end": t + 8}]))
        elif i % 3 == 0:
            rows.append(row(name, task, "Completed", [
                {"n": 1, "start": t, "end": t + 1.5, "state": "Failed", "reason": "Error",
                 "message": "ConnectionError: reset"},
                {"n": 2, "start": t + 3, "end": t + 5, "state": "Completed"},
            ], waits=[{"start": t + 1.5, "end": t + 3}]))
        else:
            rows.append(row(name, task, "Completed", [
                {"n": 1, "start": t, "end": t + 1 + (i % 5) * 0.4, "state": "Completed"}]))
    return rows


def write_page(
    directory: Path, data: dict[str, Any], *, title: str = "flow run", data_src: str = DATA_FILE
) -> Path:
    """index.html (data embedded), the same JSON at ``data_src``, and the static assets."""
    static = directory / "static"
    static.mkdir(parents=True, exist_ok=True)
    for name in ("timeline.js", "timeline.css"):
        shutil.copyfile(STATIC / name, static / name)
    (directory / data_src).write_text(json.dumps(data), encoding="utf-8")
    page = directory / "index.html"
    # The title goes in as text the page author controls; only the data is user input here.
    page.write_text(PAGE.format(title=title, data_src=data_src, embedded=embed(data)),
                    encoding="utf-8")
    return page


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serves ``directory`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
