"""``flowpod logs``: a FlowRun's flow pod and task pods, one stream merged by time.

    flowpod logs etl-x7k2qp [--task NAME] [--tail N] [--timestamps] [-f]

Where each attempt's log comes from (the store once uploaded, else the live pod) and how the
lines are dated and merged is ``flowpod._kube.run_logs``, which the dashboard shares. ``-f``
prints what exists, then follows the running pods and the task pods that appear, until the
FlowRun is final.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from flowpod._cli import access
from flowpod._contract.labels import FLOWRUN_LABEL, label_value
from flowpod._kube.run_logs import (
    LogAttempt,
    LogSource,
    attempts_to_show,
    collect_sources,
    interleave_logs,
    parse_rfc3339,
    stored_log,
)
from flowpod._kube.run_logs import stamp as stamp_of

if TYPE_CHECKING:
    from flowpod._kube.flowrun_api import FlowRunApi
    from flowpod._storage import ResultStore

__all__ = ["logs_command"]

_POLL_SECONDS = 2.0  # how often -f looks for new task pods and the run's end
_DRAIN_SECONDS = 10.0  # after the run is final, how long -f waits for open streams to end
_STORE_READS = 3  # how often -f looks in the store for an attempt whose pod ended unfollowed


def _attempts(api: FlowRunApi, namespace: str, flowrun: Mapping[str, Any],
              task: str | None) -> list[LogAttempt]:
    name = str(flowrun["metadata"]["name"])
    taskruns = api.list_objects(namespace, "taskruns", f"{FLOWRUN_LABEL}={label_value(name)}")
    return attempts_to_show(flowrun, taskruns, task)


_EXAMPLES = """
\b
Examples:
  # Everything a FlowRun's pods logged, merged by time
  flowpod logs etl-x7k2qp
\b
  # Only the task 'load', its last 50 lines, with RFC3339 times
  flowpod logs etl-x7k2qp --task load --tail 50 --timestamps
\b
  # Follow the run until it ends, picking up new task pods as they start
  flowpod logs -f etl-x7k2qp
"""


@click.command("logs", short_help="Print the logs of a FlowRun's pods, merged by time.",
               epilog=_EXAMPLES)
@click.argument("flowrun")
@access.namespace_option
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing new lines, from new task pods too, until the run is final.")
@click.option("--task", "task", default=None, metavar="NAME",
              help="Only the runs of this task (its name, or one run's name).")
@click.option("--tail", type=click.IntRange(min=0), default=None, metavar="N",
              help="Only the last N lines (of the merged log).")
@click.option("--timestamps", is_flag=True, help="Start each line with its RFC3339 time.")
def logs_command(flowrun: str, namespace: str | None, follow: bool, task: str | None,
                 tail: int | None, timestamps: bool) -> None:
    """Print the logs of a FlowRun's flow pod and task pods, interleaved by time.

    Logs of finished attempts come from the result store (set FLOWPOD_S3_* as for submit);
    those of running pods from the cluster."""
    api = access.make_api()
    try:
        ns = access.namespace_of(api, namespace)
        obj = api.get(ns, "flowruns", flowrun)
        store = access.make_store((obj.get("spec") or {}).get("storage"))
        attempts = _attempts(api, ns, obj, task)
        sources = collect_sources(api.pod_log, store, ns, attempts, tail)
    except Exception as exc:  # noqa: BLE001 - shown as the API's answer
        raise access.api_error(exc) from None
    if store is None:
        click.echo("Note: no result store configured (FLOWPOD_S3_BUCKET / FLOWPOD_S3_ENDPOINT): "
                   "only logs of pods that still run are shown", err=True)
    lines = interleave_logs(sources, timestamps)
    if tail is not None:
        lines = lines[-tail:] if tail else []
    for line in lines:
        click.echo(line)
    if follow:
        _Follower(api, store, ns, flowrun, task, timestamps, sources).run()
    elif not sources:
        click.echo(f"No logs for flowrun {ns}/{flowrun} yet.", err=True)


class _Follower:
    """``logs -f``: one thread per running pod streams its lines into a queue the main thread
    prints; every few seconds the FlowRun's task runs are listed again for new pods, and
    attempts whose pod was gone before it could be followed are printed from the store."""

    def __init__(self, api: FlowRunApi, store: ResultStore | None, namespace: str,
                 flowrun: str, task: str | None, timestamps: bool,
                 printed: list[LogSource]) -> None:
        self.api, self.store, self.namespace = api, store, namespace
        self.flowrun, self.task, self.timestamps = flowrun, task, timestamps
        self.lines: queue.Queue[tuple[str, datetime | None, str] | None] = queue.Queue()
        # What the first print showed: a followed pod skips lines up to its last time there.
        self.shown_until: dict[str, datetime] = {}
        for source in printed:
            stamps = [stamp for stamp, _ in source.lines if stamp is not None]
            if stamps:
                self.shown_until[source.prefix] = max(stamps)
        # Attempts printed whole, or being followed: never shown again.
        self.done = {source.stored_as for source in printed if source.stored_as}
        self.store_reads: dict[tuple[str, int], int] = {}
        self.open = 0

    def run(self) -> None:
        ended_at: float | None = None
        try:
            while True:
                final = self._poll()
                if final and ended_at is None:
                    ended_at = time.monotonic()
                if ended_at is not None and (self.open == 0 or
                                             time.monotonic() - ended_at > _DRAIN_SECONDS):
                    self._print_pending(0)
                    return
                self._print_pending(_POLL_SECONDS)
        except KeyboardInterrupt:
            return
        except Exception as exc:  # noqa: BLE001 - shown as the API's answer
            raise access.api_error(exc) from None

    def _poll(self) -> bool:
        from flowpod._contract.states import FINAL_STATES

        obj = self.api.get(self.namespace, "flowruns", self.flowrun)
        for attempt in _attempts(self.api, self.namespace, obj, self.task):
            key = (attempt.run, attempt.attempt)
            if key in self.done:
                continue
            if attempt.pod:
                stream = self.api.follow_pod_log(self.namespace, attempt.pod)
                if stream is None:
                    continue  # not started yet: next poll
                self.done.add(key)
                self.open += 1
                threading.Thread(target=self._pump, args=(attempt.prefix, stream),
                                 daemon=True).start()
                continue
            # A pod that ended between two polls: its stored log, looked for a few times only
            # (an attempt whose pod never uploaded one must not cost a read every poll).
            reads = self.store_reads[key] = self.store_reads.get(key, 0) + 1
            if reads > _STORE_READS:
                continue
            text = stored_log(self.store, self.namespace, attempt.run, attempt.attempt)
            if text is not None:
                self.done.add(key)
                for line in interleave_logs([LogSource.stored(attempt.prefix, text,
                                                              attempt.start)], self.timestamps):
                    self.lines.put((attempt.prefix, None, line))
        state = (obj.get("status") or {}).get("state")
        return state in FINAL_STATES

    def _pump(self, prefix: str, stream: Iterator[str]) -> None:
        skip_until = self.shown_until.get(prefix)
        try:
            for raw in stream:
                parsed = parse_rfc3339(raw)
                stamp, text = parsed if parsed else (None, raw)
                if skip_until is not None and stamp is not None and stamp <= skip_until:
                    continue
                skip_until = None  # past what was shown: print everything from here on
                shown = f"{stamp_of(stamp)} {text}" if self.timestamps and stamp else text
                self.lines.put((prefix, stamp, f"{prefix} | {shown}"))
        except Exception:  # noqa: BLE001 - the pod went away mid-stream: its stream ends
            pass
        finally:
            self.lines.put(None)

    def _print_pending(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while True:
            try:
                item = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            if item is None:
                self.open -= 1
                if self.open == 0 and wait == 0:
                    continue
            else:
                click.echo(item[2])
