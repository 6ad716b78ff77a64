"""``flowpod get``: FlowRuns and TaskRuns as kubectl shows resources.

    flowpod get flowruns [NAME] [-A] [-l SELECTOR] [-o wide|json|yaml|name] [-w]
    flowpod get taskruns --flowrun NAME

The table has a REASON column when the operator says why a run is where it is (always with
``-o wide``), a NAMESPACE column with ``-A``. ``-o json|yaml`` prints the object exactly as the API
server returns it, several as a ``List`` (``kind: List``, ``items``), so the output pipes into
``jq``. ``-w`` prints the table, then one row per change (a row whose cells did not change, age
aside, is not printed again), until interrupted; the watch is re-listed when the server expires
it. Table formatting (``format_table``, ``RowPrinter``) lives here too: ``describe`` and the
progress view reuse the ages.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from flowpod._cli import access
from flowpod._cli.errors import CliUsageError
from flowpod._contract.labels import FLOWRUN_LABEL, label_value

if TYPE_CHECKING:
    from flowpod._kube.flowrun_api import FlowRunApi

__all__ = ["RowPrinter", "age", "flowrun_row", "format_table", "get_command", "taskrun_row"]

_KIND_NAMES = {"flowruns": ("FlowRun", "flowrun.flowpod.dev"),
               "taskruns": ("TaskRun", "taskrun.flowpod.dev")}


def age(stamp: Any, now: datetime) -> str:
    """'3m', '2h', '5d' since an RFC3339 time (kubectl's AGE); '<unknown>' without one."""
    then = access.parse_time(stamp)
    if then is None:
        return "<unknown>"
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def flowrun_row(obj: Mapping[str, Any], now: datetime) -> list[str]:
    spec, status = obj.get("spec") or {}, _status(obj)
    return [str(obj["metadata"]["name"]), str(spec.get("flowName") or spec.get("entrypoint") or ""),
            str(status.get("state") or "Pending"), str(status.get("tasksSummary") or "0/0"),
            age(obj["metadata"].get("creationTimestamp"), now), str(status.get("duration") or "")]


def taskrun_row(obj: Mapping[str, Any], now: datetime) -> list[str]:
    spec, status = obj.get("spec") or {}, _status(obj)
    labels = obj["metadata"].get("labels") or {}
    return [str(obj["metadata"]["name"]), str(spec.get("runName") or ""),
            str(status.get("state") or "Pending"), str(status.get("attempt") or 0),
            str(labels.get(FLOWRUN_LABEL) or ""),
            age(obj["metadata"].get("creationTimestamp"), now), str(status.get("duration") or "")]


_HEADERS = {
    "flowruns": ["NAME", "FLOW", "STATE", "TASKS", "AGE", "DURATION"],
    "taskruns": ["NAME", "RUN NAME", "STATE", "ATTEMPT", "FLOWRUN", "AGE", "DURATION"],
}
_AGE_COLUMN = "AGE"


def _wide_cells(plural: str, obj: Mapping[str, Any]) -> list[str]:
    spec, status = obj.get("spec") or {}, _status(obj)
    if plural == "flowruns":
        return [str(status.get("attempt") or 0), str(status.get("pod") or "<none>"),
                str(spec.get("image") or "<default>")]
    return [str(spec.get("taskName") or ""), str(status.get("pod") or "<none>"),
            str(spec.get("image") or "<default>")]


_WIDE_HEADERS = {"flowruns": ["ATTEMPT", "POD", "IMAGE"], "taskruns": ["TASK", "POD", "IMAGE"]}


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A kubectl-like table: columns padded to their widest cell, three spaces apart."""
    table = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    return "\n".join(_line(row, widths) for row in table)


def _line(row: Sequence[str], widths: Sequence[int]) -> str:
    return "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()


class RowPrinter:
    """Rows of one kind of object in the shape ``get`` prints them (namespace and reason
    columns, wide cells), and, for ``--watch``, rows after the table padded to its widths."""

    def __init__(self, plural: str, *, wide: bool, all_namespaces: bool, reason: bool) -> None:
        self.plural, self.wide, self.all_namespaces = plural, wide, all_namespaces
        self.reason = reason or wide
        self.headers = list(_HEADERS[plural])
        if self.reason:  # REASON after STATE, as kubectl puts a status's reason next to it
            self.headers.insert(3, "REASON")
        if wide:
            self.headers += _WIDE_HEADERS[plural]
        if all_namespaces:
            self.headers.insert(0, "NAMESPACE")
        self.widths = [len(header) for header in self.headers]
        self._shown: dict[tuple[str, str], list[str]] = {}

    def row(self, obj: Mapping[str, Any], now: datetime) -> list[str]:
        make = flowrun_row if self.plural == "flowruns" else taskrun_row
        cells = make(obj, now)
        if self.reason:
            cells.insert(3, str(_status(obj).get("reason") or "-"))
        if self.wide:
            cells += _wide_cells(self.plural, obj)
        if self.all_namespaces:
            cells.insert(0, str(obj["metadata"].get("namespace") or ""))
        return cells

    def table(self, items: Sequence[Mapping[str, Any]], now: datetime) -> str:
        rows = [self.row(obj, now) for obj in items]
        for obj, row in zip(items, rows, strict=True):
            self._shown[_key(obj)] = self._without_age(row)
        self.widths = [max([len(self.headers[i]), *(len(row[i]) for row in rows)])
                       for i in range(len(self.headers))]
        return format_table(self.headers, rows)

    def changed_line(self, obj: Mapping[str, Any], now: datetime) -> str | None:
        """The object's row when a cell other than its age changed since it was last shown."""
        row = self.row(obj, now)
        compared = self._without_age(row)
        if self._shown.get(_key(obj)) == compared:
            return None
        self._shown[_key(obj)] = compared
        self.widths = [max(width, len(cell)) for width, cell in zip(self.widths, row, strict=True)]
        return _line(row, self.widths)

    def _without_age(self, row: list[str]) -> list[str]:
        index = self.headers.index(_AGE_COLUMN)
        return row[:index] + row[index + 1:]


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _sorted(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda obj: (str(obj["metadata"].get("namespace") or ""),
                                          str(obj["metadata"].get("creationTimestamp") or ""),
                                          str(obj["metadata"].get("name") or "")))


def _as_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": items,
            "metadata": {"resourceVersion": ""}}


def _dump(data: Any, output: str) -> str:
    if output == "json":
        return json.dumps(data, indent=4, ensure_ascii=False)
    import yaml

    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False,
                              allow_unicode=True)).rstrip("\n")


def _name_line(plural: str, obj: Mapping[str, Any]) -> str:
    return f"{_KIND_NAMES[plural][1]}/{obj['metadata']['name']}"


_EXAMPLES = """
\b
Examples:
  # List the FlowRuns of the current namespace, with pods and images
  flowpod get flowruns -o wide
\b
  # The TaskRuns of one FlowRun, updated as they change
  flowpod get taskruns --flowrun etl-x7k2qp --watch
\b
  # Every FlowRun of the cluster, as JSON for jq
  flowpod get fr -A -o json | jq -r '.items[].metadata.name'
\b
  # One FlowRun as YAML; FlowRuns of one flow by label
  flowpod get flowrun etl-x7k2qp -o yaml
  flowpod get flowruns -l flowpod.dev/flow=etl
"""


@click.command("get", short_help="List FlowRuns or TaskRuns, or show one.",
               epilog=_EXAMPLES)
@click.argument("kind", metavar="flowruns|taskruns")
@click.argument("name", required=False)
@access.namespace_option
@click.option("--all-namespaces", "-A", "all_namespaces", is_flag=True,
              help="List the objects of every namespace (adds a NAMESPACE column).")
@click.option("--selector", "-l", default="", metavar="SELECTOR",
              help="Label selector, e.g. -l flowpod.dev/flow=etl (=, ==, != and sets).")
@click.option("--flowrun", default=None, help="taskruns: only those of this FlowRun.")
@click.option("--output", "-o", type=click.Choice(["wide", "json", "yaml", "name"]),
              default=None, help="Output format (default: a table).")
@click.option("--watch", "-w", is_flag=True,
              help="After listing, print each object again when it changes.")
def get_command(kind: str, name: str | None, namespace: str | None, all_namespaces: bool,
                selector: str, flowrun: str | None, output: str | None, watch: bool) -> None:
    """List FlowRuns or TaskRuns (or show one) as a table, or as JSON/YAML for other programs.

    KIND is flowruns (fr) or taskruns (tr). With NAME, only that object is shown."""
    plural = access.resolve_kind(kind)
    if name and all_namespaces:
        raise CliUsageError("a NAME cannot be combined with --all-namespaces", "-A",
                            "give the namespace with -n instead")
    parts = [part for part in (selector,) if part]
    if flowrun:
        parts.append(f"{FLOWRUN_LABEL}={label_value(flowrun)}")
    label_selector = ",".join(parts)
    api = access.make_api()
    try:
        ns = None if all_namespaces else access.namespace_of(api, namespace)
        if name:
            assert ns is not None
            items, version = [api.get(ns, plural, name)], ""
        else:
            listed = api.list_with_version(ns, plural, label_selector)
            items = list(listed.get("items") or [])
            version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
    except Exception as exc:  # noqa: BLE001 - shown as the API's answer
        raise access.api_error(exc) from None
    items = _sorted(items)
    reason = any(_status(obj).get("reason") for obj in items)
    printer = RowPrinter(plural, wide=output == "wide", all_namespaces=all_namespaces,
                         reason=reason or watch)
    _print_items(plural, items, name, output, printer, ns)
    if watch:
        _watch(api, plural, ns, name, label_selector, version, output, printer)


def _print_items(plural: str, items: list[dict[str, Any]], name: str | None,
                 output: str | None, printer: RowPrinter, ns: str | None) -> None:
    if output in ("json", "yaml"):
        click.echo(_dump(items[0] if name else _as_list(items), output))
        return
    if not items:
        where = "any namespace" if ns is None else f"namespace {ns}"
        click.echo(f"No {plural} found in {where}.", err=True)
        return
    if output == "name":
        for obj in items:
            click.echo(_name_line(plural, obj))
        return
    click.echo(printer.table(items, datetime.now(UTC)))
    message = str(_status(items[0]).get("message") or "") if name else ""
    if message and _status(items[0]).get("reason"):
        click.echo(f"MESSAGE: {message}")


def _watch(api: FlowRunApi, plural: str, ns: str | None, name: str | None,
           label_selector: str, version: str, output: str | None, printer: RowPrinter) -> None:
    """Print each change until Ctrl-C; a watch the server ends is resumed from the last
    resourceVersion seen, an expired one re-listed."""
    from flowpod._kube.taskrun_api import WatchExpired

    field_selector = f"metadata.name={name}" if name else ""
    try:
        while True:
            try:
                if not version:
                    listed = api.list_with_version(ns, plural, label_selector)
                    version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
                    for obj in _sorted(list(listed.get("items") or [])):
                        _print_change(plural, obj, output, printer)
                for _kind, obj in api.watch_objects(ns, plural, label_selector, version, 300,
                                                    field_selector=field_selector):
                    version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                    if name and obj.get("metadata", {}).get("name") != name:
                        continue
                    _print_change(plural, obj, output, printer)
            except WatchExpired:
                version = ""
    except KeyboardInterrupt:
        sys.exit(0)  # as kubectl: interrupting a watch is how it ends
    except Exception as exc:  # noqa: BLE001 - shown as the API's answer
        raise access.api_error(exc) from None


def _print_change(plural: str, obj: dict[str, Any], output: str | None,
                  printer: RowPrinter) -> None:
    if output in ("json", "yaml"):
        click.echo(_dump(obj, output) + ("\n---" if output == "yaml" else ""))
    elif output == "name":
        click.echo(_name_line(plural, obj))
    else:
        line = printer.changed_line(obj, datetime.now(UTC))
        if line is not None:
            click.echo(line)
