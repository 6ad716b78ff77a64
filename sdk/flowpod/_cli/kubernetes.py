"""The ``flowpod`` commands for flows on Kubernetes: submit, get, logs, cancel.

    flowpod submit flows/etl.py:etl --param day=2026-01-01 --namespace etl --wait
    flowpod get flowruns [NAME] [-n NS]        flowpod get taskruns [NAME] [-n NS]
    flowpod logs FLOWRUN [-n NS]               flowpod cancel FLOWRUN [--wait]

``register(main)`` adds them to the click group of ``flowpod._cli.main``; flow files are loaded
through ``flowpod._cli.targets``. Only click is imported here; the Kubernetes client, pydantic and
boto3 are imported when a command runs, through ``flowpod._kube.flowrun_api.FlowRunApi``
(``make_api`` is the seam tests replace). Exit codes: 0 success, 1 the flow run did not complete
(or the cluster refused the call, or the cluster or the store cannot be used), 2 a usage error.
``get`` adds a REASON column when the operator says why a run is where it is, and
``submit --wait`` prints a line each time that reason changes.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from flowpod._cli.targets import load_flow, parse_params, split_target
from flowpod._contract.labels import FLOWRUN_LABEL, label_value

if TYPE_CHECKING:
    from flowpod._kube.flowrun_api import FlowRunApi
    from flowpod._storage import ResultStore

__all__ = [
    "cancel_command", "format_table", "get_command", "interleave_logs", "logs_command", "make_api",
    "register", "submit_command",
]


def make_api() -> FlowRunApi:
    """The API access every command uses (tests replace this function)."""
    from flowpod._kube.flowrun_api import FlowRunApi

    return FlowRunApi()


def make_store(storage: Mapping[str, Any] | None) -> ResultStore | None:
    """This process's view of the result store: FLOWPOD_S3_* first, else the run's storage."""
    from flowpod._kube.storage_views import storage_spec as _storage_spec

    spec = _storage_spec(None) or (_storage_spec(storage) if storage else None)
    if spec is None:
        return None
    from flowpod._storage.s3 import S3ResultStore

    return S3ResultStore.from_storage(spec)


def _namespace(api: FlowRunApi, namespace: str | None) -> str:
    return namespace or api.default_namespace()


def _fail_on_api_error(exc: Exception) -> click.ClickException:
    from flowpod._kube.flowrun_api import NotFound

    if isinstance(exc, NotFound):
        return click.ClickException(str(exc))
    status = getattr(exc, "status", None)
    if status is not None:
        reason = getattr(exc, "reason", None) or exc
        return click.ClickException(f"the Kubernetes API refused the call: {status} {reason}"
                                    f"{_body_message(exc)}")
    return click.ClickException(
        f"cannot reach the cluster ({type(exc).__name__}: {exc}); check KUBECONFIG and its "
        "current context (kubectl config current-context)")


def _body_message(exc: Exception) -> str:
    import json

    try:
        message = json.loads(getattr(exc, "body", "") or "{}").get("message")
    except (TypeError, ValueError, AttributeError):
        return ""
    return f": {message}" if message else ""


_namespace_option = click.option(
    "--namespace", "-n", default=None, help="Default: the kubeconfig's namespace.")
_timeout_option = click.option(
    "--timeout", type=float, default=None, help="With --wait: give up after N s.")


# --- submit --------------------------------------------------------------------------------------


def _parse_env(items: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not NAME=VALUE, e.g. --env LOG_LEVEL=debug",
                                     param_hint="--env")
        env[key.strip()] = value
    return env


@click.command("submit", short_help="Run a flow from a file on the cluster.")
@click.argument("target")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
              help="A flow parameter; VALUE is parsed as JSON when it is JSON.")
@_namespace_option
@click.option("--image", default=None, help="Image of the flow pod (default: the operator's).")
@click.option("--env", "-e", "env", multiple=True, metavar="NAME=VALUE",
              help="An environment variable for the flow pod.")
@click.option("--wait", "-w", is_flag=True, help="Follow the run; exit 1 unless Completed.")
@_timeout_option
@click.option("--pending-timeout", "pending_timeout", type=click.FloatRange(min=0, min_open=True),
              default=None, metavar="SECONDS",
              help="How long the flow pod may wait to start (scheduling, image pull) before the "
                   "attempt ends Crashed (PendingTimeout); default: the operator's.")
def submit_command(target: str, params: tuple[str, ...], namespace: str | None,
                   image: str | None, env: tuple[str, ...], wait: bool,
                   timeout: float | None, pending_timeout: float | None) -> None:
    """Run the flow TARGET (path/to/file.py:flow_name) on the cluster as a FlowRun."""
    path, name = split_target(target)
    parameters = parse_params(params)
    env_vars = _parse_env(env)
    flow_obj = load_flow(path, name)

    from flowpod._kube.submit import progress_line, reason_line, submit
    from flowpod.exceptions import ConfigurationError, SerializationError

    store = make_store(None)
    if store is None:
        raise click.UsageError(
            "flowpod submit stores the flow where the flow pod reads it: set FLOWPOD_S3_BUCKET "
            "and FLOWPOD_S3_ENDPOINT (and AWS credentials) to the operator's storage")
    api = make_api()
    try:
        handle = submit(flow_obj, parameters, namespace=namespace, image=image,
                        env=env_vars or None, api=api, store=store,
                        pending_timeout_seconds=pending_timeout)
    except ConfigurationError as exc:  # the cluster or the store cannot be used from here
        raise click.ClickException(str(exc)) from None
    except (ValueError, TypeError, SerializationError) as exc:
        raise click.UsageError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - the API server's answer, shown as such
        raise _fail_on_api_error(exc) from None
    click.echo(f"flowrun.flowpod.dev/{handle.name} created in namespace {handle.namespace}")
    if not wait:
        return
    last: list[str] = []
    reasons: list[str | None] = [None]

    def show(obj: dict[str, Any]) -> None:
        line = progress_line(obj)
        if not last or last[-1] != line:
            last.append(line)
            click.echo(line)
        why = reason_line(obj)  # once per change of the operator's reason / message
        if why is not None and why != reasons[0]:
            click.echo(f"FlowRun {handle.name} is {why}")
        reasons[0] = why

    try:
        state = handle.wait(timeout, on_change=show)
    except TimeoutError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo(f"Stopped following; the run goes on (flowpod cancel {handle.name})", err=True)
        sys.exit(130)
    message, reason = handle.message, handle.reason
    click.echo(f"FlowRun {handle.name} finished in state {state}"
               + (f" ({reason})" if reason and state != "Completed" else "")
               + (f": {message}" if message else ""))
    if state != "Completed":
        sys.exit(1)


# --- get -----------------------------------------------------------------------------------------


def _age(stamp: Any, now: datetime) -> str:
    if not stamp:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def flowrun_row(obj: Mapping[str, Any], now: datetime) -> list[str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [str(obj["metadata"]["name"]), str(spec.get("flowName") or spec.get("entrypoint") or ""),
            str(status.get("state") or "Pending"), str(status.get("tasksSummary") or "0/0"),
            _age(obj["metadata"].get("creationTimestamp"), now), str(status.get("duration") or "")]


def taskrun_row(obj: Mapping[str, Any], now: datetime) -> list[str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    labels = obj["metadata"].get("labels") or {}
    return [str(obj["metadata"]["name"]), str(spec.get("runName") or ""),
            str(status.get("state") or "Pending"), str(status.get("attempt") or 0),
            str(labels.get(FLOWRUN_LABEL) or ""),
            _age(obj["metadata"].get("creationTimestamp"), now), str(status.get("duration") or "")]


_HEADERS = {
    "flowruns": ["NAME", "FLOW", "STATE", "TASKS", "AGE", "DURATION"],
    "taskruns": ["NAME", "RUN NAME", "STATE", "ATTEMPT", "FLOWRUN", "AGE", "DURATION"],
}


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A kubectl-like table: columns padded to their widest cell, three spaces apart."""
    table = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


@click.command("get", short_help="List FlowRuns or TaskRuns, or show one.")
@click.argument("kind", metavar="flowruns|taskruns")
@click.argument("name", required=False)
@_namespace_option
@click.option("--flowrun", default=None, help="taskruns: only those of this FlowRun.")
def get_command(kind: str, name: str | None, namespace: str | None, flowrun: str | None) -> None:
    """List FlowRuns or TaskRuns (or show one) as a table."""
    plural = {"flowrun": "flowruns", "flowruns": "flowruns", "fr": "flowruns",
              "taskrun": "taskruns", "taskruns": "taskruns", "tr": "taskruns"}.get(kind.lower())
    if plural is None:
        raise click.BadParameter(f"{kind!r} is not a kind flowpod knows: use flowruns or taskruns",
                                 param_hint="KIND")
    api = make_api()
    try:
        ns = _namespace(api, namespace)
        if name:
            items = [api.get(ns, plural, name)]
        else:
            selector = f"{FLOWRUN_LABEL}={label_value(flowrun)}" if flowrun else ""
            items = api.list_objects(ns, plural, selector)
    except Exception as exc:  # noqa: BLE001 - shown as the API's answer
        raise _fail_on_api_error(exc) from None
    if not items:
        click.echo(f"No {plural} found in namespace {ns}.", err=True)
        return
    now = datetime.now(UTC)
    make_row = flowrun_row if plural == "flowruns" else taskrun_row
    items.sort(key=lambda obj: str(obj["metadata"].get("creationTimestamp") or ""))
    headers, rows = list(_HEADERS[plural]), [make_row(obj, now) for obj in items]
    reasons = [str((obj.get("status") or {}).get("reason") or "") for obj in items]
    if any(reasons):  # REASON after STATE, only when the operator gave one (as kubectl -o wide)
        headers.insert(3, "REASON")
        for row, reason in zip(rows, reasons, strict=True):
            row.insert(3, reason or "-")
    click.echo(format_table(headers, rows))
    message = str((items[0].get("status") or {}).get("message") or "") if name else ""
    if message and reasons[0]:
        click.echo(f"MESSAGE: {message}")


# --- logs ----------------------------------------------------------------------------------------

_TIME = re.compile(r"^(\d{2}:\d{2}:\d{2}(?:\.\d+)?)\b")


def interleave_logs(sources: Iterable[tuple[str, str]]) -> list[str]:
    """Lines of several logs ``(prefix, text)`` merged by their leading time (flowpod's log format
    starts with HH:MM:SS.mmm); a line without a time (a traceback) stays after the line before it.
    Each line is prefixed with ``<prefix> | ``."""
    keyed: list[tuple[str, int, int, str]] = []
    for source_index, (prefix, text) in enumerate(sources):
        stamp = ""
        for line in text.splitlines():
            found = _TIME.match(line)
            if found:
                stamp = found.group(1)
            keyed.append((stamp, source_index, len(keyed), f"{prefix} | {line}"))
    keyed.sort()
    return [line for *_, line in keyed]


def _stored_log(store: ResultStore | None, namespace: str, name: str, attempt: int) -> str | None:
    if store is None:
        return None
    from flowpod._contract.keys import log_key
    from flowpod.exceptions import ResultNotFound

    try:
        return store.get(log_key(namespace, name, attempt)).decode(
            "utf-8", "replace")
    except ResultNotFound:
        return None


def _attempts(status: Mapping[str, Any]) -> int:
    seen = [int(entry.get("attempt") or 0) for entry in status.get("history") or []]
    return max([int(status.get("attempt") or 0), *seen, 1])


def collect_logs(api: FlowRunApi, store: ResultStore | None, namespace: str,
                 flowrun: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(prefix, text) for the flow pod's attempts and every task pod's attempts: the stored log
    when the pod uploaded it, else the live log of the pod that is still running."""
    name = str(flowrun["metadata"]["name"])
    sources: list[tuple[str, str]] = []
    status = flowrun.get("status") or {}
    label = str((flowrun.get("spec") or {}).get("flowName") or name)
    runs: list[tuple[str, str, int, str | None]] = [
        (name, f"flow {label}", _attempts(status), status.get("pod"))]
    for task in api.list_objects(namespace, "taskruns", f"{FLOWRUN_LABEL}={label_value(name)}"):
        task_status = task.get("status") or {}
        runs.append((str(task["metadata"]["name"]),
                     str((task.get("spec") or {}).get("runName") or task["metadata"]["name"]),
                     int(task_status.get("attempt") or 0), task_status.get("pod")))
    for run, prefix, attempts, live_pod in runs:
        for attempt in range(1, attempts + 1):
            text = _stored_log(store, namespace, run, attempt)
            if text is None and attempt == attempts and live_pod:
                text = api.pod_log(namespace, str(live_pod))
            if text:
                shown = prefix if attempts == 1 else f"{prefix} #{attempt}"
                sources.append((shown, text))
    return sources


@click.command("logs", short_help="Print the logs of a FlowRun's pods.")
@click.argument("flowrun")
@_namespace_option
def logs_command(flowrun: str, namespace: str | None) -> None:
    """Print the logs of a FlowRun's flow pod and task pods, interleaved by time."""
    api = make_api()
    try:
        ns = _namespace(api, namespace)
        obj = api.get(ns, "flowruns", flowrun)
        store = make_store((obj.get("spec") or {}).get("storage"))
        sources = collect_logs(api, store, ns, obj)
    except Exception as exc:  # noqa: BLE001 - shown as the API's answer
        raise _fail_on_api_error(exc) from None
    if store is None:
        click.echo("Note: no result store configured (FLOWPOD_S3_BUCKET / FLOWPOD_S3_ENDPOINT): "
                   "only logs of pods that still run are shown", err=True)
    if not sources:
        click.echo(f"No logs for flowrun {ns}/{flowrun} yet.", err=True)
        return
    for line in interleave_logs(sources):
        click.echo(line)


# --- cancel --------------------------------------------------------------------------------------


@click.command("cancel", short_help="Stop a FlowRun and its pods.")
@click.argument("flowrun")
@_namespace_option
@click.option("--wait", "-w", is_flag=True, help="Wait until the run is Cancelled.")
@_timeout_option
def cancel_command(flowrun: str, namespace: str | None, wait: bool,
                   timeout: float | None) -> None:
    """Stop a FlowRun: its flow pod and every task pod (state Cancelled)."""
    from flowpod._contract.states import FINAL_STATES
    from flowpod._kube.submit import FlowRunHandle

    api = make_api()
    try:
        ns = _namespace(api, namespace)
        handle = FlowRunHandle(flowrun, ns, api=api)
        state = handle.state
        if state in FINAL_STATES:
            click.echo(f"FlowRun {flowrun} already finished in state {state}; nothing to cancel")
            return
        handle.cancel()
    except Exception as exc:  # noqa: BLE001 - shown as the API's answer
        raise _fail_on_api_error(exc) from None
    click.echo(f"flowrun.flowpod.dev/{flowrun} cancel requested")
    if wait:
        try:
            final = handle.wait(timeout)
        except TimeoutError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"FlowRun {flowrun} finished in state {final}")
        if final != "Cancelled":
            sys.exit(1)


# --- registration --------------------------------------------------------------------------------


def register(main: click.Group) -> None:
    """Add submit, get, logs and cancel to the ``flowpod`` group."""
    for command in (submit_command, get_command, logs_command, cancel_command):
        main.add_command(command)
