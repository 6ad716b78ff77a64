"""``flowpod describe`` (alias ``inspect``): one FlowRun or TaskRun in detail, kubectl-describe
style.

    flowpod describe flowrun etl-x7k2qp        flowpod inspect taskrun/inc-0-ab12cd -n etl

It prints what was asked for (the spec: flow or task, parameters, image, retries and delays,
timeouts), where the run is (state, reason, message, times), the attempt history built from
``status.history`` (each attempt's pod, last state, reason, duration and message), a FlowRun's
task-run counts, and the core/v1 Events whose involvedObject is the run. ``render_*`` are plain
functions of the objects, so tests check the text without a cluster.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from flowpod._cli import access
from flowpod._cli.errors import CliUsageError
from flowpod._cli.get import age, format_table
from flowpod._contract.labels import FLOWRUN_LABEL, label_value

if TYPE_CHECKING:
    from flowpod._kube.flowrun_api import FlowRunApi

__all__ = ["attempts_of", "describe_command", "inspect_command", "render_description"]

_COUNT_LABELS = (("pending", "pending"), ("running", "running"),
                 ("awaitingRetry", "awaiting retry"), ("completed", "completed"),
                 ("cached", "cached"), ("failed", "failed"), ("timedOut", "timed out"),
                 ("crashed", "crashed"), ("cancelled", "cancelled"))


def _seconds(value: float) -> str:
    """'45s', '3m5s', '1h2m' - short durations as people read them."""
    whole = int(round(value))
    if whole < 60:
        return f"{value:.1f}s" if value < 10 and value != int(value) else f"{whole}s"
    minutes, seconds = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{seconds}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m"


def attempts_of(obj: Mapping[str, Any]) -> list[list[str]]:
    """One row per attempt - [ATTEMPT, POD, STATE, REASON, DURATION, MESSAGE] - from the
    object's history (``flowpod._contract.attempts``): the last state the attempt reached, and
    the time from its first to its last transition (to now while it is not final)."""
    from flowpod._contract.attempts import attempt_pod, attempt_spans

    rows = []
    for span in attempt_spans(obj.get("status") or {}):
        start, end = span.start, span.end or datetime.now(UTC)
        duration = _seconds((end - start).total_seconds()) if start else "-"
        rows.append([str(span.number), attempt_pod(obj, span.number) or "<none>", span.last_state,
                     span.last_reason or "-", duration,
                     " ".join((span.last_message or "").split())])
    return rows


def _fields(pairs: Sequence[tuple[str, Any]]) -> list[str]:
    width = max(len(label) for label, _ in pairs) + 2
    return [f"{(label + ':').ljust(width)}{'' if value is None else value}"
            for label, value in pairs]


def _labels(meta: Mapping[str, Any]) -> str:
    labels = meta.get("labels") or {}
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items())) or "<none>"


def _delays(spec: Mapping[str, Any]) -> str:
    delays = spec.get("retryDelaySeconds") or []
    return f" (delays: {', '.join(_seconds(float(d)) for d in delays)})" if delays else ""


def _or_default(value: Any, default: str = "<operator default>") -> str:
    return default if value in (None, "", []) else str(value)


def _spec_lines(obj: Mapping[str, Any]) -> list[str]:
    spec = obj.get("spec") or {}
    flow = obj.get("kind") == "FlowRun"
    pairs: list[tuple[str, Any]] = []
    if flow:
        pairs.append(("Flow", spec.get("flowName") or spec.get("entrypoint") or "<unnamed>"))
        pairs.append(("Code", spec.get("code") or (spec.get("entrypoint") and
                                                    f"entrypoint {spec['entrypoint']}")))
    else:
        pairs.append(("Task", spec.get("taskName")))
        pairs.append(("Run Name", spec.get("runName")))
        pairs.append(("FlowRun", spec.get("flowRun") or "<none>"))
    pairs += [("Image", _or_default(spec.get("image"))),
              ("Retries", f"{int(spec.get('retries') or 0)}{_delays(spec)}"),
              ("Timeout", _or_default(spec.get("timeoutSeconds") and
                                      _seconds(float(spec["timeoutSeconds"])), "<none>")),
              ("Pending Timeout", _or_default(spec.get("pendingTimeoutSeconds") and
                                              _seconds(float(spec["pendingTimeoutSeconds"])))),
              ("Service Account", _or_default(spec.get("serviceAccountName")))]
    if spec.get("cancel"):
        pairs.append(("Cancel", "requested"))
    lines = _fields(pairs)
    if flow:
        parameters = spec.get("parameters") or {}
        lines.append("Parameters:" + ("" if parameters else "      <none>"))
        lines += [f"  {key}:  {json.dumps(value)}" for key, value in parameters.items()]
    return lines


def _status_lines(obj: Mapping[str, Any], now: datetime) -> list[str]:
    status = obj.get("status") or {}
    pairs: list[tuple[str, Any]] = [
        ("State", status.get("state") or "Pending"),
        ("Reason", status.get("reason") or "<none>"),
        ("Message", " ".join(str(status.get("message") or "<none>").split())),
        ("Attempt", int(status.get("attempt") or 0)),
        ("Pod", status.get("pod") or "<none>"),
        ("Started", status.get("startTime") or "<not yet>"),
        ("Ended", status.get("endTime") or "<not yet>"),
        ("Duration", status.get("duration") or "-"),
    ]
    if status.get("nextRetryAt"):
        pairs.append(("Next Retry", status["nextRetryAt"]))
    return _fields(pairs)


def _count_lines(obj: Mapping[str, Any]) -> list[str]:
    counts = (obj.get("status") or {}).get("taskRuns") or {}
    total = int(counts.get("total") or 0)
    parts = [f"{int(counts.get(key) or 0)} {label}" for key, label in _COUNT_LABELS
             if int(counts.get(key) or 0)]
    return [f"Task Runs:  {total} total" + (f" ({', '.join(parts)})" if parts else "")]


def _event_lines(events: Sequence[Mapping[str, Any]], now: datetime) -> list[str]:
    if not events:
        return ["Events:  <none>"]

    def when(event: Mapping[str, Any]) -> str:
        return str(event.get("lastTimestamp") or event.get("eventTime")
                   or (event.get("metadata") or {}).get("creationTimestamp") or "")

    rows = []
    for event in sorted(events, key=when):
        count = int(event.get("count") or 1)
        first = event.get("firstTimestamp") or when(event)
        shown = age(when(event), now)
        if count > 1:
            shown += f" (x{count} over {age(first, now)})"
        source = (event.get("source") or {}).get("component") or event.get(
            "reportingComponent") or ""
        rows.append([str(event.get("type") or ""), str(event.get("reason") or ""), shown,
                     str(source), " ".join(str(event.get("message") or "").split())])
    table = format_table(["Type", "Reason", "Age", "From", "Message"],
                         [["----", "------", "----", "----", "-------"], *rows])
    return ["Events:", *("  " + line for line in table.splitlines())]


def render_description(obj: Mapping[str, Any], events: Sequence[Mapping[str, Any]],
                       now: datetime | None = None) -> str:
    """The whole description of a FlowRun or TaskRun object and its Events."""
    now = now or datetime.now(UTC)
    meta = obj.get("metadata") or {}
    lines = _fields([("Name", meta.get("name")), ("Namespace", meta.get("namespace")),
                     ("Kind", f"{obj.get('kind')} ({obj.get('apiVersion') or 'flowpod.dev'})"),
                     ("Labels", _labels(meta)),
                     ("Created", f"{meta.get('creationTimestamp')} "
                                 f"({age(meta.get('creationTimestamp'), now)} ago)")])
    lines += ["Spec:", *("  " + line for line in _spec_lines(obj))]
    lines += ["Status:", *("  " + line for line in _status_lines(obj, now))]
    if obj.get("kind") == "FlowRun":
        lines += ["  " + line for line in _count_lines(obj)]
    attempts = attempts_of(obj)
    if attempts:
        table = format_table(["ATTEMPT", "POD", "STATE", "REASON", "DURATION", "MESSAGE"],
                             attempts)
        lines += ["Attempts:", *("  " + line for line in table.splitlines())]
    else:
        lines.append("Attempts:  <none yet>")
    lines += _event_lines(events, now)
    return "\n".join(lines)


def _targets(kind: str, name: str | None) -> tuple[str, str | None]:
    if "/" in kind and name is None:  # kubectl's TYPE/NAME
        kind, name = kind.split("/", 1)
    return access.resolve_kind(kind), name


def _describe(api: FlowRunApi, ns: str, plural: str, name: str | None,
              selector: str) -> list[str]:
    kind = "FlowRun" if plural == "flowruns" else "TaskRun"
    if name:
        objects = [api.get(ns, plural, name)]
    else:
        objects = sorted(api.list_objects(ns, plural, selector),
                         key=lambda o: str(o["metadata"].get("creationTimestamp") or ""))
    texts = []
    for obj in objects:
        obj = {"kind": kind, **obj}
        events = api.events_for(ns, kind, str(obj["metadata"]["name"]))
        texts.append(render_description(obj, events))
    return texts


_EXAMPLES = """
\b
Examples:
  # A FlowRun: its parameters, attempts, task-run counts and events
  flowpod describe flowrun etl-x7k2qp
\b
  # One TaskRun, kubectl's TYPE/NAME form, in another namespace
  flowpod describe taskrun/inc-3-ab12cd -n etl
\b
  # Every TaskRun of a FlowRun
  flowpod describe taskruns --flowrun etl-x7k2qp
"""


def _command(name: str, short_help: str) -> click.Command:
    @click.command(name, short_help=short_help, epilog=_EXAMPLES)
    @click.argument("kind", metavar="flowrun|taskrun[/NAME]")
    @click.argument("name", required=False)
    @access.namespace_option
    @click.option("--selector", "-l", default="", metavar="SELECTOR",
                  help="Without NAME: describe the objects matching this label selector.")
    @click.option("--flowrun", default=None, help="taskruns: those of this FlowRun.")
    def command(kind: str, name: str | None, namespace: str | None, selector: str,
                flowrun: str | None) -> None:
        """Show a FlowRun or TaskRun in detail: spec, state, attempts and events.

        KIND is flowrun (fr) or taskrun (tr); without NAME every object of the kind in the
        namespace (or those matching -l / --flowrun) is described."""
        plural, target = _targets(kind, name)
        if flowrun and plural != "taskruns":
            raise CliUsageError("--flowrun selects TaskRuns", "--flowrun",
                                "use flowpod describe taskruns --flowrun NAME")
        parts = [selector] if selector else []
        if flowrun:
            parts.append(f"{FLOWRUN_LABEL}={label_value(flowrun)}")
        api = access.make_api()
        try:
            ns = access.namespace_of(api, namespace)
            texts = _describe(api, ns, plural, target, ",".join(parts))
        except Exception as exc:  # noqa: BLE001 - shown as the API's answer
            raise access.api_error(exc) from None
        if not texts:
            click.echo(f"No {plural} found in namespace {ns}.", err=True)
            return
        click.echo("\n\n".join(texts))

    return command


describe_command = _command("describe", "Show a FlowRun or TaskRun in detail, with its events.")
inspect_command = _command("inspect", "Alias of describe (Prefect's name for it).")
