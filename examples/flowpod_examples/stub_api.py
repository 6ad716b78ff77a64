"""An offline stand-in for the web APIs the examples call, so every example runs without a network.

The seed's examples call the GitHub REST API (and, for retries, a "brittle" service). This module
serves deterministic fake data for the few endpoints they use, over real HTTP on 127.0.0.1, so that
retries are real 5xx responses, cached pages are real requests that did not happen, and submitted
tasks are real requests that overlap in time:

    GET /repos/{owner}/{repo}                     repository statistics
    GET /repos/{owner}/{repo}/contributors        paginated (page, per_page; GitHub's default 30)
    GET /repos/{owner}/{repo}/issues              paginated open issues, each with user.id
    GET /brittle/endpoint?fail=N&session=S        503 for the first N requests of that exact URL
    GET /brittle/{other}                          404, a failure not worth retrying
    GET /slow?seconds=X                           answers after X seconds
    GET /_requests                                the request log as JSON (for other processes)

Listing endpoints (contributors, issues) take `page_latency` seconds to answer, like a real API,
which makes the sequential and concurrent versions of the repository example measurably different.

Examples never hard-code the stub's address: they keep the real URLs (so cache keys are stable
across processes) and pass them through `offline(url)`, which points them at the stub named by
FLOWPOD_EXAMPLE_API or, when that is unset, at a stub started in a background thread of the
current process. `python -m flowpod_examples.stub_api --port 8765` runs a stub in the foreground.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

ENV_VAR = "FLOWPOD_EXAMPLE_API"

# Real hosts the examples name, and where each lives on the stub.
REAL_HOSTS = {
    "https://api.github.com": "",
    "https://api.brittle-service.com": "/brittle",
}


@dataclass(frozen=True)
class RepoData:
    """The numbers one fake repository reports."""

    stars: int
    forks: int
    open_issues: int
    issue_authors: int  # distinct users among the open issues
    contributors: int


# The seed's output shows these figures for PrefectHQ/prefect; any other repository gets numbers
# derived from a hash of its name, so they are stable across processes and machines.
KNOWN_REPOS: dict[str, RepoData] = {
    "PrefectHQ/prefect": RepoData(
        stars=12157, forks=1251, open_issues=573, issue_authors=252, contributors=287
    ),
}


def repo_data(full_name: str) -> RepoData:
    """The deterministic statistics of `owner/repo`."""
    if full_name in KNOWN_REPOS:
        return KNOWN_REPOS[full_name]
    digest = hashlib.sha256(full_name.encode()).digest()
    stars = int.from_bytes(digest[0:3], "big") % 50_000
    open_issues = 1 + int.from_bytes(digest[3:5], "big") % 400
    return RepoData(
        stars=stars,
        forks=stars // 10,
        open_issues=open_issues,
        issue_authors=max(1, open_issues * 4 // 9),
        contributors=1 + int.from_bytes(digest[5:7], "big") % 300,
    )


@dataclass(frozen=True)
class LoggedRequest:
    """One request the stub answered; times are time.monotonic() (system-wide on Linux)."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    started: float
    finished: float
    thread: str = field(default="")

    def overlaps(self, other: LoggedRequest) -> bool:
        return self.started < other.finished and other.started < self.finished


class StubAPI:
    """A fake GitHub-style API on 127.0.0.1 and an ephemeral port, served from a background thread.

    `flaky` maps a path to a number of 503 answers its first requests get (on top of the
    `/brittle/endpoint?fail=N` switch, which clients control). Use as a context manager or call
    `start()` / `stop()`.
    """

    def __init__(
        self,
        *,
        page_latency: float = 0.15,
        flaky: Mapping[str, int] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if page_latency < 0:
            raise ValueError(f"page_latency must be >= 0 seconds, got {page_latency!r}")
        self.page_latency = page_latency
        self._flaky = dict(flaky or {})
        self._address = (host, port)
        self._lock = threading.Lock()
        self._log: list[LoggedRequest] = []
        self._hits: Counter[str] = Counter()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> StubAPI:
        if self._server is not None:
            return self
        handler = type("BoundHandler", (_Handler,), {"stub": self})
        self._server = ThreadingHTTPServer(self._address, handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="stub-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    def __enter__(self) -> StubAPI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stub API is not running: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- the request log -------------------------------------------------------------------------

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def requests_to(self, path: str) -> list[LoggedRequest]:
        return [r for r in self.requests if r.path == path]

    def clear(self) -> None:
        with self._lock:
            self._log.clear()
            self._hits.clear()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[LoggedRequest]:
        """Block until at least `count` requests were logged; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.requests
            if len(log) >= count:
                return log
            if time.monotonic() >= deadline:
                raise TimeoutError(f"expected {count} requests within {timeout}s, saw {len(log)}")
            time.sleep(0.01)

    def _record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    def _count_hit(self, key: str) -> int:
        """Number this request is among those with the same key, starting at 1."""
        with self._lock:
            self._hits[key] += 1
            return self._hits[key]

    # -- routing ---------------------------------------------------------------------------------

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        """The status and JSON body for one GET request (the handler adds timing and logging)."""
        failures = self._flaky.get(path, 0)
        if failures and self._count_hit(f"flaky {path}") <= failures:
            return HTTPStatus.SERVICE_UNAVAILABLE, {"message": "Service Unavailable (flaky)"}
        parts = [p for p in path.split("/") if p]
        if path == "/_requests":
            return HTTPStatus.OK, [asdict(r) for r in self.requests]
        if parts[:1] == ["repos"] and len(parts) in (3, 4):
            return self._repos(parts[1], parts[2], parts[3] if len(parts) == 4 else None, query)
        if parts[:1] == ["brittle"]:
            return self._brittle(path, query)
        if parts == ["slow"]:
            seconds = _number(query, "seconds", 1.0)
            time.sleep(seconds)
            return HTTPStatus.OK, {"slept": seconds}
        return HTTPStatus.NOT_FOUND, {"message": "Not Found", "path": path}

    def _repos(
        self, owner: str, repo: str, listing: str | None, query: dict[str, str]
    ) -> tuple[int, Any]:
        full_name = f"{owner}/{repo}"
        if repo.startswith("no-such-"):
            return HTTPStatus.NOT_FOUND, {"message": "Not Found"}
        data = repo_data(full_name)
        if listing is None:
            return HTTPStatus.OK, {
                "full_name": full_name,
                "stargazers_count": data.stars,
                "forks_count": data.forks,
                "open_issues_count": data.open_issues,
                "subscribers_count": data.stars // 40,
            }
        if listing not in ("contributors", "issues"):
            return HTTPStatus.NOT_FOUND, {"message": "Not Found"}
        page = int(_number(query, "page", 1))
        per_page = int(_number(query, "per_page", 30))
        if page < 1 or not 1 <= per_page <= 100:
            return HTTPStatus.UNPROCESSABLE_ENTITY, {"message": "page >= 1, 1 <= per_page <= 100"}
        time.sleep(self.page_latency)
        total = data.contributors if listing == "contributors" else data.open_issues
        indices = range((page - 1) * per_page, min(page * per_page, total))
        if listing == "contributors":
            return HTTPStatus.OK, [
                {"login": f"contributor-{i}", "id": 1000 + i, "contributions": 1 + (i * 17) % 97}
                for i in indices
            ]
        # 37 is coprime with the authors' count for the known repos, so every author appears.
        return HTTPStatus.OK, [
            {
                "number": data.open_issues - i,
                "title": f"Issue {data.open_issues - i}",
                "state": "open",
                "user": {"id": 10_000 + (i * 37) % data.issue_authors},
            }
            for i in indices
        ]

    def _brittle(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        if path != "/brittle/endpoint":
            return HTTPStatus.NOT_FOUND, {"message": "Not Found"}
        key = path + "?" + "&".join(f"{k}={v}" for k, v in sorted(query.items()))
        attempt = self._count_hit(key)
        if attempt <= int(_number(query, "fail", 0)):
            return HTTPStatus.SERVICE_UNAVAILABLE, {"message": "Service Unavailable"}
        return HTTPStatus.OK, {"status": "ok", "attempt": attempt}


def _number(query: dict[str, str], name: str, default: float) -> float:
    try:
        return float(query[name]) if name in query else default
    except ValueError:
        return default


class _Handler(BaseHTTPRequestHandler):
    stub: StubAPI  # set on the subclass StubAPI.start() builds

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        started = time.monotonic()
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        status, body = self.stub.answer(parts.path, query)
        payload = json.dumps(body).encode()
        # Logged before the answer goes out, so a client that has its answer always finds its
        # request in the log.
        if not parts.path.startswith("/_"):
            self.stub._record(
                LoggedRequest(
                    method="GET",
                    path=parts.path,
                    query=query,
                    status=int(status),
                    started=started,
                    finished=time.monotonic(),
                    thread=threading.current_thread().name,
                )
            )
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # The examples' output is the flow's log; one line per request would drown it.
        pass


# -- what the examples use ------------------------------------------------------------------------

_own_stub: StubAPI | None = None
_own_stub_lock = threading.Lock()


def base_url() -> str:
    """The stub's base URL: FLOWPOD_EXAMPLE_API, else a stub started once for this process."""
    configured = os.environ.get(ENV_VAR, "").strip()
    if configured:
        if not configured.startswith(("http://", "https://")):
            raise ValueError(
                f"{ENV_VAR}={configured!r} is not a URL; set it to the stub's base URL, "
                "e.g. http://127.0.0.1:8765, or unset it to start a stub in this process"
            )
        return configured.rstrip("/")
    global _own_stub
    with _own_stub_lock:
        if _own_stub is None:
            _own_stub = StubAPI().start()
            atexit.register(_own_stub.stop)
        return _own_stub.url


def offline(url: str) -> str:
    """`url` with a real API host the examples use replaced by the stub's address."""
    for real, prefix in REAL_HOSTS.items():
        if url == real or url.startswith(real + "/") or url.startswith(real + "?"):
            return base_url() + prefix + url[len(real) :]
    return url


def request_log() -> list[dict[str, Any]]:
    """The stub's request log, fetched over HTTP so it works for a stub in another process."""
    with urllib.request.urlopen(base_url() + "/_requests", timeout=10) as response:
        log: list[dict[str, Any]] = json.load(response)
    return log


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the examples' fake GitHub API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--page-latency", type=float, default=0.15)
    args = parser.parse_args(argv)
    stub = StubAPI(page_latency=args.page_latency, host=args.host, port=args.port).start()
    print(f"stub API on {stub.url}; export {ENV_VAR}={stub.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        stub.stop()


if __name__ == "__main__":
    main()
