"""``flowpod`` with a fake cluster whose operator runs a submitted flow to the end, for tests
that drive the command line in a pseudo-terminal (``test_cli_progress``).

    python _cli_pty_main.py submit flows.py:counter --wait

The fake operator, on the first watch of the FlowRun, moves it Pending -> Running (task runs
counted, one failed) -> Completed; the TaskRuns exist from the moment the FlowRun is created, so
the live block can name the running and the failed ones.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _cli_fakes import FakeClusterApi, install  # noqa: E402

from flowpod._storage import MemoryResultStore  # noqa: E402


class ScriptedCluster(FakeClusterApi):
    def create_flowrun(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        obj = super().create_flowrun(namespace, manifest)
        name = obj["metadata"]["name"]
        for index, state in enumerate(("Running", "Failed", "Completed")):
            self.add("taskruns", {
                "kind": "TaskRun",
                "metadata": {"name": f"inc-{index}-abcdef", "namespace": namespace,
                             "labels": {"flowpod.dev/flowrun": name}},
                "spec": {"runName": f"inc-{index}", "taskName": "inc"},
                "status": {"state": state, "attempt": 1,
                           "reason": "Error" if state == "Failed" else None}})
        return obj


def operate(api: ScriptedCluster) -> None:
    if not api.watching.wait(30):
        return
    (obj,) = api.list_objects("ns1", "flowruns")
    name = obj["metadata"]["name"]
    api.set_status("ns1", name, state="Running", startTime="2026-11-24T04:00:00Z",
                   taskRuns={"total": 3, "running": 1, "completed": 1, "failed": 1})
    api.set_status("ns1", name, state="Running",
                   taskRuns={"total": 3, "running": 0, "completed": 2, "failed": 1})
    api.set_status("ns1", name, state="Completed", duration="1m2s",
                   taskRuns={"total": 3, "completed": 3})


def main() -> None:
    api = ScriptedCluster("ns1")
    install(api, MemoryResultStore())
    threading.Thread(target=operate, args=(api,), daemon=True).start()
    from flowpod._cli.main import main as flowpod

    flowpod(sys.argv[1:], prog_name="flowpod")


if __name__ == "__main__":
    main()
