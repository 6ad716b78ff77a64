"""The dashboard's web app: ``create_app(hub, store_factory, allow_cancel=...)`` builds the
Starlette application that ``flowpod ui`` serves (and the chart runs in the cluster).

Pages are rendered on the server from the hub's copy of the cluster (``flowpod._ui.hub``), so a
page view costs no API request; Jinja2 escapes every value (autoescape on for every template),
and the timeline's JSON is embedded with ``<``, ``>`` and ``&`` as ``\\u`` escapes so no run
name can close its ``<script>`` element. Live updates: ``/events`` is a server-sent event
stream of the hub's change notices; ``static/live.js`` refetches the page's ``?fragment=1`` and
swaps its live blocks. The only write is ``POST .../cancel``, refused unless the app was built
with ``allow_cancel`` and the request carries ``X-Flowpod-Action: cancel`` (a header a form on
another site cannot set). Every response carries a Content-Security-Policy that allows scripts,
styles and connections to this origin only; every asset is served from the package.

Routes: ``/``, ``/runs/{ns}/{name}`` (``/logs``, ``/tasks/{taskrun}``, ``/cancel``),
``/api/runs/{ns}/{name}/timeline``, ``/events``, ``/healthz``, ``/static``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowpod._kube.run_logs import attempts_to_show, collect_sources, interleave_logs
from flowpod._ui import views
from flowpod._ui.preview import preview_result

if TYPE_CHECKING:
    from flowpod._storage import ResultStore
    from flowpod._ui.hub import WatchHub

__all__ = ["KEEPALIVE_SECONDS", "create_app", "embed_json"]

StoreFactory = Callable[[Mapping[str, Any] | None], "ResultStore | None"]
HERE = Path(__file__).parent
KEEPALIVE_SECONDS = 15.0
LOG_LINES = 5000  # the HTML view shows the last lines; ?format=text up to LOG_LINES_TEXT
LOG_LINES_TEXT = 100_000
_LOG_READERS = 8  # attempts whose logs are read at once (store GETs, pod logs)
_PREVIEWS = 256  # result previews kept (a result key's value never changes)
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'")
_HEADERS = [(b"content-security-policy", _CSP.encode()), (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]


def _page(value: str | None) -> int:
    """A page number from the query: 1 when absent or not a number."""
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


def embed_json(data: Any) -> Markup:
    """``data`` as JSON that is safe inside ``<script type="application/json">``."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return Markup(text)  # noqa: S704 - every markup character is escaped above


class _SecurityHeaders:
    """Adds the CSP and friends to every response (a plain ASGI wrapper: streams untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


class _Dashboard:
    """The route handlers, over one hub and one store factory."""

    def __init__(self, hub: WatchHub, store_factory: StoreFactory, allow_cancel: bool) -> None:
        self.hub, self.store_factory, self.allow_cancel = hub, store_factory, allow_cancel
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                               trim_blocks=True, lstrip_blocks=True)
        self.previews: dict[str, dict[str, Any]] = {}
        self.readers = ThreadPoolExecutor(_LOG_READERS, thread_name_prefix="flowpod-ui-logs")

    def render(self, name: str, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(banner=self.hub.banner(),
                                                  allow_cancel=self.allow_cancel, **context)
        return HTMLResponse(html)

    def _flowrun(self, request: Request) -> dict[str, Any]:
        ns, name = request.path_params["ns"], request.path_params["name"]
        found = self.hub.get("flowruns", ns, name)
        if found is None:
            raise HTTPException(404, f"flowrun {ns}/{name} is not in the dashboard's view")
        return found

    async def runs(self, request: Request) -> Response:
        query = request.query_params
        page = _page(query.get("page"))
        view = views.runs_view(self.hub.flowruns(), datetime.now(UTC),
                               namespace=query.get("namespace", ""), flow=query.get("flow", ""),
                               state=query.get("state", ""), page=page)
        template = "_runs_fragment.html" if query.get("fragment") else "runs.html"
        return self.render(template, view=view, events_url="/events")

    async def flowrun(self, request: Request) -> Response:
        obj = self._flowrun(request)
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        now = datetime.now(UTC)
        taskruns = self.hub.taskruns_of(ns, name)
        query = request.query_params
        view = views.flowrun_view(obj, taskruns, self.hub.events_for(ns, "FlowRun", name), now,
                                  task_state=query.get("tasks_state", ""),
                                  task_page=_page(query.get("tasks_page")))
        events_url = f"/events?run={ns}/{name}"
        if request.query_params.get("fragment"):
            return self.render("_flowrun_live.html", view=view, events_url=events_url)
        result = await self._preview(obj) if view["final"] else None
        return self.render("flowrun.html", view=view, events_url=events_url, result=result,
                           timeline_json=embed_json(views.timeline(obj, taskruns, now)))

    async def _preview(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        ref = str((obj.get("status") or {}).get("resultRef") or "")
        if not ref:
            return None
        if ref not in self.previews:
            store = await run_in_threadpool(self.store_factory, (obj.get("spec") or {}).get(
                "storage"))
            if store is not None:
                self.hub.count("store")
            preview = await run_in_threadpool(preview_result, store, ref)
            if preview["kind"] in ("error", "none"):
                return preview  # not kept: it may be readable next time
            if len(self.previews) >= _PREVIEWS:
                self.previews.pop(next(iter(self.previews)))
            self.previews[ref] = preview
        return self.previews[ref]

    async def timeline(self, request: Request) -> Response:
        obj = self._flowrun(request)
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        return JSONResponse(views.timeline(obj, self.hub.taskruns_of(ns, name),
                                           datetime.now(UTC)))

    async def taskrun(self, request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        found = self.hub.get("taskruns", ns, request.path_params["taskrun"])
        if found is None:
            raise HTTPException(404, "taskrun is not in the dashboard's view")
        view = views.taskrun_view(found, name,
                                  self.hub.events_for(ns, "TaskRun", found["metadata"]["name"]),
                                  datetime.now(UTC))
        template = "_taskrun_fragment.html" if request.query_params.get("fragment") \
            else "taskrun.html"
        return self.render(template, view=view, events_url=f"/events?run={ns}/{name}")

    def _log_lines(self, obj: Mapping[str, Any], task: str | None) -> list[str]:
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        store = self.store_factory((obj.get("spec") or {}).get("storage"))
        attempts = attempts_to_show(obj, self.hub.taskruns_of(ns, name), task)
        if store is not None:
            self.hub.count("store", len(attempts))
        batches = self.readers.map(
            lambda attempt: collect_sources(self.hub.pod_log, store, ns, [attempt]), attempts)
        return interleave_logs([source for batch in batches for source in batch])

    async def logs(self, request: Request) -> Response:
        obj = self._flowrun(request)
        task = request.query_params.get("task") or None
        lines = await run_in_threadpool(self._log_lines, obj, task)
        if request.query_params.get("format") == "text":
            return PlainTextResponse("".join(line + "\n" for line in lines[-LOG_LINES_TEXT:]))
        return self.render("_logs.html", lines=lines[-LOG_LINES:],
                           cut=max(0, len(lines) - LOG_LINES), task=task or "")

    async def cancel(self, request: Request) -> Response:
        if not self.allow_cancel:
            raise HTTPException(403, "cancelling is not enabled on this dashboard")
        if request.headers.get("x-flowpod-action") != "cancel":
            raise HTTPException(403, "a cancel needs the X-Flowpod-Action: cancel header")
        obj = self._flowrun(request)
        await run_in_threadpool(self.hub.cancel, obj["metadata"]["namespace"],
                                obj["metadata"]["name"])
        return JSONResponse({"ok": True, "cancel": "requested"}, status_code=202)

    async def events(self, request: Request) -> Response:
        run = request.query_params.get("run") or ""
        key = tuple(run.split("/", 1)) if "/" in run else None
        sub = self.hub.subscribe(key)  # type: ignore[arg-type]

        async def stream() -> AsyncIterator[str]:
            try:
                yield "retry: 3000\n: connected\n\n"
                while True:
                    try:
                        notices = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_SECONDS)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    for notice in notices:
                        yield f"event: change\ndata: {json.dumps(notice)}\n\n"
            finally:
                self.hub.unsubscribe(sub)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "requests": self.hub.stats(),
                             "clients": self.hub.clients, "problems": self.hub.banner()})


def create_app(hub: WatchHub, store_factory: StoreFactory | None = None, *,
               allow_cancel: bool = False) -> Starlette:
    """The dashboard over ``hub`` (started with the app, stopped after it); ``store_factory``
    gives a run's result store from its ``spec.storage`` (default: ``preview.StoreCache``)."""
    if store_factory is None:
        from flowpod._ui.preview import StoreCache

        store_factory = StoreCache()
    board = _Dashboard(hub, store_factory, allow_cancel)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub.start()
        try:
            yield
        finally:
            hub.stop()
            board.readers.shutdown(wait=False, cancel_futures=True)

    routes = [
        Route("/", board.runs),
        Route("/healthz", board.healthz),
        Route("/events", board.events),
        Route("/api/runs/{ns}/{name}/timeline", board.timeline),
        Route("/runs/{ns}/{name}", board.flowrun),
        Route("/runs/{ns}/{name}/logs", board.logs),
        Route("/runs/{ns}/{name}/tasks/{taskrun}", board.taskrun),
        Route("/runs/{ns}/{name}/cancel", board.cancel, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(_SecurityHeaders)])
    app.state.board = board
    return app
