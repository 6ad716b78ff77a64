"""What a task pod loads: only what one attempt needs (issue 15, ``bench/task_pod_cpu.py``).

Every task runs in a pod of its own, so each module a pod imports is paid once per attempt. The
attempt runs in a subprocess (a fresh interpreter, as in the pod) against a local store, and the
S3 client is created too (no request is made), then ``sys.modules`` is inspected.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from flowpod import task
from flowpod._kube.payloads import FlowRunInfo, TaskPayload, write_payload
from flowpod._storage import LocalResultStore, read_outcome

# Never in a task pod: the CLI, the Kubernetes client, the operator, the flow runner and the
# submitting side, the run contract's pydantic models and the settings model, boto3's resource
# layer and transfer manager.
FORBIDDEN = (
    "click", "kubernetes", "kopf", "flowpod_operator", "flowpod._cli", "flowpod.pod._flow",
    "flowpod.kubernetes", "flowpod._kube.runner", "flowpod._kube.submit",
    "flowpod._kube.taskruns", "flowpod._contract.resources", "flowpod._contract.resuming",
    "flowpod._common.settings_model", "pydantic", "pydantic_settings", "boto3",
    "boto3.resources", "s3transfer",
)

ATTEMPT = f"""
import json, sys
from flowpod.pod import main
code = main(sys.argv[1:])
from flowpod._storage import S3ResultStore
S3ResultStore("results", endpoint_url="http://127.0.0.1:9", region="us-east-1",
              access_key_id="k", secret_access_key="s").client
print(json.dumps({{"exit": code, "loaded": sorted(m for m in {FORBIDDEN!r} if m in sys.modules)}}))
"""


@task
def add(x: int, y: int) -> int:
    return x + y


def test_a_task_attempt_loads_only_what_it_needs(tmp_path: Path) -> None:
    store = LocalResultStore(tmp_path / "store")
    name = f"add-{uuid.uuid4().hex[:6]}"
    flow_run = FlowRunInfo(id=str(uuid.uuid4()), name="f-run", flow_name="f")
    payload = TaskPayload(task=add, parameters={"x": 1, "y": 2}, run_name="add-0",
                          task_run_id=str(uuid.uuid4()), flow_run=flow_run)
    write_payload(store, "ns", name, payload)
    # The pod's environment names an S3 store (the settings are resolved as in every pod);
    # FLOWPOD_STORE_PATH takes precedence, so the attempt itself runs on the local folder.
    env = {**os.environ, "FLOWPOD_STORE_PATH": str(store.root), "FLOWPOD_S3_BUCKET": "results",
           "FLOWPOD_S3_ENDPOINT": "http://127.0.0.1:9", "FLOWPOD_S3_REGION": "us-east-1"}
    proc = subprocess.run(
        [sys.executable, "-c", ATTEMPT, "task", f"ns/{name}", "--attempt", "1"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"exit": 0, "loaded": []}
    outcome = read_outcome(store, "ns", name, 1)
    assert outcome is not None and outcome.state == "Completed"


def test_the_pod_programs_own_import_is_light() -> None:
    code = (
        "import sys, flowpod.pod; "
        "print(sorted(m for m in ('cloudpickle', 'botocore', 'flowpod.pod._task', "
        "'flowpod.pod._flow', 'pydantic') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr
