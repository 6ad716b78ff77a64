"""Container logs: stored per container, time-stamped per line, served the kubelet way.

The process writes stdout and stderr straight into `<container>.log` (so it keeps logging even
if the agent goes away); the agent notes when each line appeared in `<container>.log.ts`
(`<end offset> <unix ns>` per line), which is what `timestamps`, `sinceSeconds` and `sinceTime`
need. The HTTPS server answers the API server's `GET /containerLogs/<ns>/<pod>/<container>`
(behind `kubectl logs` and `read_namespaced_pod_log`) and `/healthz`. It does not authenticate
its callers: it listens on loopback only and the test cluster's API server is its only client.
"""

from __future__ import annotations

import http.server
import json
import os
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ._podstatus import parse_rfc3339, rfc3339_nano

Entry = tuple[int, bytes]  # (unix ns, line bytes including its newline if it had one)


class LogIndexer:
    """Records the time each new line of a log file was first seen."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.index_path = Path(str(log_path) + ".ts")
        self._offset = 0
        self._lock = threading.Lock()
        if self.index_path.exists():
            lines = self.index_path.read_text().split()
            if len(lines) >= 2:
                self._offset = int(lines[-2])

    def poll(self, final: bool = False) -> None:
        """Index lines written since the last call (and a trailing partial one if final)."""
        with self._lock:
            try:
                with open(self.log_path, "rb") as f:
                    f.seek(self._offset)
                    data = f.read()
            except FileNotFoundError:
                return
            if not data:
                return
            now = time.time_ns()
            ends: list[int] = []
            pos = 0
            while True:
                nl = data.find(b"\n", pos)
                if nl == -1:
                    break
                pos = nl + 1
                ends.append(self._offset + pos)
            if final and pos < len(data):
                ends.append(self._offset + len(data))
            if not ends:
                return
            with open(self.index_path, "a") as idx:
                idx.write("".join(f"{end} {now}\n" for end in ends))
            self._offset = ends[-1]


def read_entries(log_path: Path, start: int = 0) -> tuple[list[Entry], int]:
    """Lines of a log from byte offset `start`, with their times; returns the new offset.

    Only complete lines are returned (a partial last line waits for its newline), except that
    lines nobody indexed yet get the current time.
    """
    try:
        data = log_path.read_bytes()
    except FileNotFoundError:
        return [], start
    index: list[tuple[int, int]] = []
    idx_path = Path(str(log_path) + ".ts")
    if idx_path.exists():
        for row in idx_path.read_text().splitlines():
            parts = row.split()
            if len(parts) == 2:
                index.append((int(parts[0]), int(parts[1])))
    entries: list[Entry] = []
    pos = start
    for end, ts in index:
        if end <= pos:
            continue
        entries.append((ts, data[pos:end]))
        pos = end
    now = time.time_ns()
    while True:
        nl = data.find(b"\n", pos)
        if nl == -1:
            break
        entries.append((now, data[pos : nl + 1]))
        pos = nl + 1
    return entries, pos


def partial_tail(log_path: Path, start: int) -> bytes:
    """Bytes after `start` that do not end with a newline (the last, unfinished line)."""
    try:
        with open(log_path, "rb") as f:
            f.seek(start)
            return f.read()
    except FileNotFoundError:
        return b""


@dataclass
class LogQuery:
    follow: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since_ns: int | None = None
    limit_bytes: int | None = None
    previous: bool = False

    @classmethod
    def parse(cls, query: str) -> LogQuery:
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}

        def flag(name: str) -> bool:
            return q.get(name, "false").lower() in ("1", "true", "yes")

        since_ns = None
        if "sinceSeconds" in q:
            since_ns = time.time_ns() - int(q["sinceSeconds"]) * 1_000_000_000
        elif "sinceTime" in q:
            since_ns = int(parse_rfc3339(q["sinceTime"]) * 1_000_000_000)
        return cls(
            follow=flag("follow"),
            timestamps=flag("timestamps"),
            tail_lines=int(q["tailLines"]) if "tailLines" in q else None,
            since_ns=since_ns,
            limit_bytes=int(q["limitBytes"]) if "limitBytes" in q else None,
            previous=flag("previous"),
        )


def format_entry(entry: Entry, timestamps: bool) -> bytes:
    ts, line = entry
    return (rfc3339_nano(ts).encode() + b" " + line) if timestamps else line


def select(entries: list[Entry], query: LogQuery) -> list[Entry]:
    if query.since_ns is not None:
        entries = [e for e in entries if e[0] >= query.since_ns]
    if query.tail_lines is not None:
        entries = entries[-query.tail_lines :] if query.tail_lines > 0 else []
    return entries


@dataclass
class ContainerLog:
    """What the server needs about one container: its file and whether it can still grow."""

    path: Path
    finished: Callable[[], bool]
    waiting: Callable[[], str | None] = lambda: None  # the waiting reason, before it starts


Resolver = Callable[[str, str, str], "ContainerLog | None"]


def stream_log(log: ContainerLog, query: LogQuery, poll_interval: float = 0.1) -> Iterator[bytes]:
    """The response body for one log request, as chunks."""
    budget = query.limit_bytes

    def clip(chunk: bytes) -> bytes:
        nonlocal budget
        if budget is None:
            return chunk
        chunk = chunk[: max(budget, 0)]
        budget -= len(chunk)
        return chunk

    entries, offset = read_entries(log.path)
    for entry in select(entries, query):
        out = clip(format_entry(entry, query.timestamps))
        if out:
            yield out
        if budget is not None and budget <= 0:
            return
    if not query.follow:
        tail = partial_tail(log.path, offset)
        if tail and (query.tail_lines is None or query.tail_lines > 0):
            out = clip(format_entry((time.time_ns(), tail), query.timestamps))
            if out:
                yield out
        return
    while True:
        done = log.finished()
        entries, offset = read_entries(log.path, offset)
        for entry in entries:
            if query.since_ns is not None and entry[0] < query.since_ns:
                continue
            out = clip(format_entry(entry, query.timestamps))
            if out:
                yield out
            if budget is not None and budget <= 0:
                return
        if done:
            tail = partial_tail(log.path, offset)
            if tail:
                out = clip(format_entry((time.time_ns(), tail), query.timestamps))
                if out:
                    yield out
            return
        time.sleep(poll_interval)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: KubeletServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        self.server.log_fn("kubelet_http", {"request": format % args})

    def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _status(self, code: int, message: str) -> None:
        body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                "code": code}
        self._send(code, json.dumps(body).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        if parts == ["healthz"]:
            self._send(200, b"ok")
            return
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._status(404, f"no handler for {url.path}")
            return
        _, ns, pod, container = parts
        try:
            query = LogQuery.parse(url.query)
        except ValueError as exc:
            self._status(400, f"bad log query {url.query!r}: {exc}")
            return
        log = self.server.resolver(ns, pod, container)
        if log is None:
            self._status(404, f'container "{container}" in pod "{ns}/{pod}" not found')
            return
        reason = log.waiting()
        if reason is not None:
            self._status(400, f'container "{container}" in pod "{pod}" is waiting to start: '
                              f"{reason}")
            return
        if query.previous:
            self._status(
                400, f'previous terminated container "{container}" in pod "{pod}" not found'
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in stream_log(log, query):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True


class KubeletServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, cert: Path, key: Path, resolver: Resolver,
                 log_fn: Callable[[str, dict[str, object]], None]) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.resolver = resolver
        self.log_fn = log_fn
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        self.socket = ctx.wrap_socket(self.socket, server_side=True)

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name="kubelet-http", daemon=True)
        t.start()
        return t


def ensure_serving_cert(directory: Path, node_name: str) -> tuple[Path, Path]:
    """A self-signed serving certificate for 127.0.0.1/localhost/<node> (made once)."""
    cert, key = directory / "kubelet.crt", directory / "kubelet.key"
    if cert.exists() and key.exists():
        return cert, key
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={node_name}",
         "-addext", f"subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:{node_name}"],
        check=True, capture_output=True,
    )
    os.chmod(key, 0o600)
    return cert, key
