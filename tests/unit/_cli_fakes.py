"""A fake cluster for the command line: ``FakeFlowRunApi`` plus what get/describe/logs read.

``FakeClusterApi`` adds lists across namespaces with a resourceVersion, object watches (fed
through ``object_events``; ``None`` ends the watch as Ctrl-C would), Events, pod logs with the
kubelet's timestamps and followed pod logs. ``install`` puts it and a memory store behind the
CLI's seams (``flowpod._cli.access.make_api`` / ``make_store``), for tests in this process and
for ``_cli_pty_main`` in a pseudo-terminal.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from test_submit_units import FakeFlowRunApi

from flowpod._storage import MemoryResultStore


class FakeClusterApi(FakeFlowRunApi):
    def __init__(self, namespace: str = "ns1") -> None:
        super().__init__(namespace)
        self.object_events: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self.k8s_events: list[dict[str, Any]] = []
        self.followed: dict[str, queue.Queue[str | None]] = {}
        self.following = threading.Event()
        self.watch_args: list[tuple[Any, ...]] = []

    def list_with_version(self, namespace: str | None, plural: str,
                          label_selector: str = "") -> dict[str, Any]:
        namespaces = {ns for (kind, ns, _) in self.objects if kind == plural}
        items = [obj for ns in sorted(namespaces) if namespace in (None, ns)
                 for obj in self.list_objects(ns, plural, label_selector)]
        return {"apiVersion": "flowpod.dev/v1alpha1", "kind": "FlowRunList", "items": items,
                "metadata": {"resourceVersion": "7"}}

    def watch_objects(self, namespace: str | None, plural: str, label_selector: str,
                      resource_version: str, timeout_seconds: int,
                      field_selector: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
        self.watch_args.append((namespace, plural, label_selector, resource_version,
                                field_selector))
        self.watching.set()
        while True:
            event = self.object_events.get(timeout=10)
            if event is None:
                raise KeyboardInterrupt  # the user pressed Ctrl-C
            yield event

    def events_for(self, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
        return [event for event in self.k8s_events
                if event["involvedObject"] == {"kind": kind, "name": name}]

    def pod_log(self, namespace: str, pod: str, *, timestamps: bool = False,
                tail_lines: int | None = None) -> str | None:
        text = self.pod_logs.get(pod)
        if text is None:
            return None
        lines = text.splitlines()
        if not timestamps:
            lines = [line.split(" ", 1)[1] for line in lines]
        if tail_lines is not None:
            lines = lines[-tail_lines:] if tail_lines else []
        return "".join(line + "\n" for line in lines)

    def follow_pod_log(self, namespace: str, pod: str, *, since_seconds: int | None = None,
                       tail_lines: int | None = None) -> Iterator[str] | None:
        """The pod's log so far, then what is put in ``followed[pod]`` until None."""
        if pod not in self.pod_logs:
            return None
        more = self.followed.setdefault(pod, queue.Queue())

        def lines() -> Iterator[str]:
            yield from self.pod_logs[pod].splitlines()
            self.following.set()
            while (line := more.get(timeout=10)) is not None:
                yield line

        return lines()


def install(api: FakeFlowRunApi, store: MemoryResultStore) -> None:
    """Put ``api`` and ``store`` behind the command line's seams."""
    import flowpod._cli.access as access

    access.make_api = lambda: api  # type: ignore[assignment]
    access.make_store = lambda storage: store  # type: ignore[assignment]
