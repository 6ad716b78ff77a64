"""What the dashboard's pages show, as plain data: objects (dicts as the API returns them) in,
dicts and lists of strings and numbers out. No HTML here (the templates escape everything they
are given) and no I/O, so each page's content is tested without a server.

- ``runs_view``: the Runs page's rows, its filter choices and pagination;
- ``flowrun_view``: one FlowRun's status, parameters, task-run table and events;
- ``timeline``: the timeline JSON that ``static/timeline.js`` draws (ms since the epoch; one row
  per TaskRun, one bar per attempt, the retry backoff gaps, a marker for a cache hit);
- ``taskrun_view``: one TaskRun's attempts (pod, state, exit reason, duration, message) and its
  cache key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from flowpod._contract.attempts import (
    AttemptSpan,
    attempt_pod,
    attempt_spans,
    parse_time,
    retry_waits,
)
from flowpod._contract.states import FINAL_STATES, StateName
from flowpod._contract.status import format_duration

__all__ = [
    "STATES",
    "duration_text",
    "events_rows",
    "flowrun_view",
    "runs_view",
    "taskrun_view",
    "timeline",
]

STATES = tuple(state.value for state in StateName)
TASKS_PER_PAGE = 100
PER_PAGE = 50
_PARAMS_SHORT = 80


def _state_order(state: str) -> int:
    return STATES.index(state) if state in STATES else len(STATES)


def _ms(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp() * 1000)


def duration_text(seconds: float | None) -> str:
    """'0.4s', '45s', '3m5s', '1h2m'; '-' for none."""
    if seconds is None or seconds < 0:
        return "-"
    return format_duration(seconds)


def _time_text(when: datetime | None) -> str:
    return "-" if when is None else when.strftime("%Y-%m-%d %H:%M:%S")


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def _state(obj: Mapping[str, Any]) -> str:
    return str(_status(obj).get("state") or "Pending")


def _span_of(obj: Mapping[str, Any], now: datetime) -> tuple[datetime | None, datetime | None]:
    status, meta = _status(obj), _meta(obj)
    start = parse_time(status.get("startTime")) or parse_time(meta.get("creationTimestamp"))
    end = parse_time(status.get("endTime"))
    return start, end


def _duration(obj: Mapping[str, Any], now: datetime) -> str:
    start, end = _span_of(obj, now)
    if start is None:
        return "-"
    if end is None and _state(obj) in FINAL_STATES:
        return str(_status(obj).get("duration") or "-")
    return duration_text(((end or now) - start).total_seconds())


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(part, safe="") for part in parts)


def flowrun_href(namespace: str, name: str) -> str:
    return _path("runs", namespace, name)


def _short_parameters(parameters: Mapping[str, Any]) -> str:
    text = ", ".join(f"{key}={json.dumps(value, default=str)}" for key, value in
                     parameters.items())
    return text if len(text) <= _PARAMS_SHORT else text[:_PARAMS_SHORT - 1] + "…"


def _counts(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The FlowRun's task-run counts by state; ``status.taskRuns`` names each count as its
    state in camelCase (``awaitingRetry``)."""
    counts = _status(obj).get("taskRuns") or {}
    found = ((state, int(counts.get(state[0].lower() + state[1:]) or 0)) for state in STATES)
    return [{"state": state, "n": n} for state, n in found if n]


def _run_row(obj: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    meta, spec, status = _meta(obj), _spec(obj), _status(obj)
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    start, _ = _span_of(obj, now)
    return {
        "namespace": namespace, "name": name, "href": flowrun_href(namespace, name),
        "flow": str(spec.get("flowName") or spec.get("entrypoint") or "-"),
        "state": _state(obj), "counts": _counts(obj),
        "total": int((status.get("taskRuns") or {}).get("total") or 0),
        "start": _time_text(start), "duration": _duration(obj, now),
        "parameters": _short_parameters(spec.get("parameters") or {}),
    }


def runs_view(flowruns: Iterable[Mapping[str, Any]], now: datetime, *, namespace: str = "",
              flow: str = "", state: str = "", page: int = 1) -> dict[str, Any]:
    """The Runs page: newest first, filtered, ``PER_PAGE`` a page; the filter choices come from
    every run (not only the shown ones)."""
    runs = sorted(flowruns, key=lambda o: str(_meta(o).get("creationTimestamp") or ""),
                  reverse=True)
    namespaces = sorted({str(_meta(o).get("namespace") or "") for o in runs})
    flows = sorted({str(_spec(o).get("flowName") or _spec(o).get("entrypoint") or "-")
                    for o in runs})
    shown = [o for o in runs
             if (not namespace or _meta(o).get("namespace") == namespace)
             and (not flow or str(_spec(o).get("flowName") or _spec(o).get("entrypoint")
                                  or "-") == flow)
             and (not state or _state(o) == state)]
    pages = max(1, -(-len(shown) // PER_PAGE))
    page = min(max(page, 1), pages)
    rows = [_run_row(o, now) for o in shown[(page - 1) * PER_PAGE: page * PER_PAGE]]
    return {"rows": rows, "total": len(shown), "page": page, "pages": pages,
            "filters": {"namespace": namespace, "flow": flow, "state": state},
            "choices": {"namespaces": namespaces, "flows": flows, "states": list(STATES)}}


def events_rows(events: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Events oldest first: type, reason, last time, count, source, message."""
    def when(event: Mapping[str, Any]) -> str:
        return str(event.get("lastTimestamp") or event.get("eventTime")
                   or _meta(event).get("creationTimestamp") or "")

    return [{"type": str(event.get("type") or ""), "reason": str(event.get("reason") or ""),
             "time": _time_text(parse_time(when(event))),
             "count": str(int(event.get("count") or 1)),
             "object": f"{(event.get('involvedObject') or {}).get('kind', '')}/"
                       f"{(event.get('involvedObject') or {}).get('name', '')}",
             "source": str((event.get("source") or {}).get("component")
                           or event.get("reportingComponent") or ""),
             "message": str(event.get("message") or "")}
            for event in sorted(events, key=when)]


def _task_sort_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    return (str(_status(obj).get("startTime") or _meta(obj).get("creationTimestamp") or ""),
            str(_meta(obj).get("name") or ""))


def _task_row(obj: Mapping[str, Any], namespace: str, flowrun: str,
              now: datetime) -> dict[str, Any]:
    meta, spec, status = _meta(obj), _spec(obj), _status(obj)
    name = str(meta.get("name") or "")
    start, _ = _span_of(obj, now)
    return {"name": name, "label": str(spec.get("runName") or name),
            "task": str(spec.get("taskName") or ""), "state": _state(obj),
            "attempts": int(status.get("attempt") or 0), "start": _time_text(start),
            "duration": _duration(obj, now), "message": str(status.get("message") or ""),
            "href": _path("runs", namespace, flowrun, "tasks", name)}


def flowrun_view(flowrun: Mapping[str, Any], taskruns: Sequence[Mapping[str, Any]],
                 events: Iterable[Mapping[str, Any]], now: datetime, *,
                 task_state: str = "", task_page: int = 1) -> dict[str, Any]:
    """A flow run's page, the timeline aside. Its task table shows ``TASKS_PER_PAGE`` rows a
    page, of one state when ``task_state`` is given: a map of 1,000 tasks stays a page a browser
    lays out (and refetches on every live change) quickly; the timeline shows them all."""
    meta, spec, status = _meta(flowrun), _spec(flowrun), _status(flowrun)
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    start, end = _span_of(flowrun, now)
    ordered = sorted(taskruns, key=_task_sort_key)
    by_state: dict[str, int] = {}
    for obj in ordered:
        by_state[_state(obj)] = by_state.get(_state(obj), 0) + 1
    shown = [obj for obj in ordered if not task_state or _state(obj) == task_state]
    pages = max(1, -(-len(shown) // TASKS_PER_PAGE))
    task_page = min(max(task_page, 1), pages)
    first = (task_page - 1) * TASKS_PER_PAGE
    return {
        **_run_row(flowrun, now), "end": _time_text(end),
        "reason": str(status.get("reason") or ""), "message": str(status.get("message") or ""),
        "attempt": int(status.get("attempt") or 0), "pod": str(status.get("pod") or ""),
        "final": _state(flowrun) in FINAL_STATES, "cancel_requested": bool(spec.get("cancel")),
        "summary": str(status.get("tasksSummary") or ""),
        "parameters_full": [(key, json.dumps(value, indent=2, default=str))
                            for key, value in (spec.get("parameters") or {}).items()],
        "image": str(spec.get("image") or ""),
        "tasks": [_task_row(obj, namespace, name, now)
                  for obj in shown[first:first + TASKS_PER_PAGE]],
        "task_table": {"total": len(ordered), "shown": len(shown), "first": first + 1,
                       "last": min(first + TASKS_PER_PAGE, len(shown)), "page": task_page,
                       "pages": pages, "state": task_state,
                       "states": sorted(by_state.items(), key=lambda item: _state_order(
                           item[0]))},
        "task_names": sorted({str(_spec(obj).get("taskName") or "") for obj in taskruns}),
        "events": events_rows(events),
        "timeline_src": _path("api", "runs", namespace, name, "timeline"),
        "logs_src": _path("runs", namespace, name, "logs"),
        "result_ref": str(status.get("resultRef") or ""),
    }


def _attempt_bar(span: AttemptSpan) -> dict[str, Any]:
    return {"n": span.number, "start": _ms(span.start), "end": _ms(span.end),
            "state": span.state, "reason": span.reason, "message": span.message}


def _timeline_row(obj: Mapping[str, Any], namespace: str, flowrun: str) -> dict[str, Any]:
    meta, spec, status = _meta(obj), _spec(obj), _status(obj)
    name = str(meta.get("name") or "")
    spans = attempt_spans(status)
    markers = []
    if _state(obj) == "Cached":
        cached = next((entry for entry in status.get("history") or ()
                       if entry.get("state") == "Cached"), None)
        at = parse_time((cached or {}).get("timestamp") or status.get("startTime")
                        or meta.get("creationTimestamp"))
        markers.append({"at": _ms(at), "kind": "cached", "label": "cache hit"})
    return {"id": name, "label": str(spec.get("runName") or name),
            "task": str(spec.get("taskName") or ""), "state": _state(obj),
            "href": _path("runs", namespace, flowrun, "tasks", name),
            "attempts": [_attempt_bar(span) for span in spans],
            "waits": [{"start": _ms(wait.start), "end": _ms(wait.end)}
                      for wait in retry_waits(spans)],
            "markers": markers}


def timeline(flowrun: Mapping[str, Any], taskruns: Iterable[Mapping[str, Any]],
             now: datetime) -> dict[str, Any]:
    """The timeline JSON (the contract in docs/architecture.md, drawn by timeline.js)."""
    meta = _meta(flowrun)
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    start, end = _span_of(flowrun, now)
    return {"start": _ms(start), "end": _ms(end), "now": _ms(now),
            "rows": [_timeline_row(obj, namespace, name)
                     for obj in sorted(taskruns, key=_task_sort_key)]}


def taskrun_view(taskrun: Mapping[str, Any], flowrun: str,
                 events: Iterable[Mapping[str, Any]], now: datetime) -> dict[str, Any]:
    """A task run's page: attempts, cache key and hit, spec, events."""
    meta, spec, status = _meta(taskrun), _spec(taskrun), _status(taskrun)
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    attempts = []
    for span in attempt_spans(status):
        until = span.end or now
        attempts.append({
            "n": span.number, "pod": attempt_pod(taskrun, span.number) or "-", "state": span.state,
            "reason": span.reason or "-", "message": span.message or "",
            "start": _time_text(span.start), "ongoing": span.ongoing,
            "duration": duration_text((until - span.start).total_seconds()) if span.start
            else "-",
            "retried": span.last_state == "AwaitingRetry"})
    start, end = _span_of(taskrun, now)
    delays = spec.get("retryDelaySeconds") or []
    return {
        "namespace": namespace, "name": name, "flowrun": flowrun,
        "flowrun_href": flowrun_href(namespace, flowrun),
        "label": str(spec.get("runName") or name), "task": str(spec.get("taskName") or ""),
        "state": _state(taskrun), "reason": str(status.get("reason") or ""),
        "message": str(status.get("message") or ""), "start": _time_text(start),
        "end": _time_text(end), "duration": _duration(taskrun, now),
        "cache_key": str(spec.get("cacheKey") or ""), "cache_hit": _state(taskrun) == "Cached",
        "retries": int(spec.get("retries") or 0),
        "delays": ", ".join(duration_text(float(d)) for d in delays),
        "timeout": duration_text(float(spec["timeoutSeconds"]))
        if spec.get("timeoutSeconds") else "-",
        "next_retry": _time_text(parse_time(status.get("nextRetryAt")))
        if status.get("nextRetryAt") else "",
        "image": str(spec.get("image") or ""),
        "attempts": attempts, "events": events_rows(events),
        "logs_src": _path("runs", namespace, flowrun, "logs") + "?task=" + quote(name, safe=""),
        "result_ref": str(status.get("resultRef") or ""),
    }
