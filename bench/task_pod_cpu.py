"""A task pod's own CPU, measured locally: the pod program as a subprocess against the S3 store.

    python bench/task_pod_cpu.py [--runs 30] [--json]

Needs the test cluster's MinIO only (``scripts/cluster env``; no Kubernetes API is used, and the
pod's environment has no kubeconfig). Everything lives under a fresh prefix
``bench-task-pod-cpu/<id>/`` of the cluster's bucket and is deleted at the end. For each of --runs
trivial task runs this process writes the payload the way ``KubernetesTaskRunner`` does
(``flowpod._kube.payloads.write_payload``), then runs ``python -m flowpod.pod task <ns>/<name>
--attempt 1`` with the environment the operator gives a task pod (``FLOWPOD_S3_*``, AWS keys,
``FLOWPOD_HOME``, ``PYTHONDONTWRITEBYTECODE``; no AWS config files), wrapped to print the process's
CPU time (user + system, ``getrusage``) at exit, as ``bench/task_pod_start.py`` does on the node:
exec to outcome written (and the log uploaded).

Figures:

- the pod's CPU time, p50/p99 over the runs, PASS/MISS against the 120 ms target;
- import time: ``-X importtime`` of one attempt (everything imported from exec to exit, the lazy
  imports included) and of ``python -m flowpod.pod --help`` (the program's own module);
- the S3 requests of one attempt by kind (method and object: payload, result, outcome, log,
  cache record, bucket), counted in one extra run by an audit hook on ``http.client.send`` (the
  timed runs have no hook).

The pods import flowpod from a temporary copy of this tree's ``sdk/flowpod``, compiled first
(the tree itself is left alone), and run with ``PYTHONDONTWRITEBYTECODE=1``: as in the image,
whose bytecode is compiled at build time;
``--no-precompile`` shows what a pod pays when it must compile flowpod at every start. A
benchmark, not a test: prints figures and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from typing import Any

from _cluster import ROOT, cluster_info, percentile

TARGET_MS = 120.0
CPU_MARK = "FLOWPOD_BENCH_CPU_S"
REQUESTS_MARK = "FLOWPOD_BENCH_S3"
NAMESPACE = "bench"
# ``python -m flowpod.pod ARGS`` with the process's CPU time printed last, on stderr. With
# FLOWPOD_BENCH_COUNT_S3 set, an audit hook also notes each HTTP request line sent (no import:
# the hook must not change what the pod loads).
WRAPPER = (
    "import atexit, os, resource, sys\n"
    "requests = []\n"
    "def note(event, args):\n"
    "    if event == 'http.client.send':\n"
    "        data = args[1]\n"
    "        if isinstance(data, (bytes, bytearray)) and data[:8].split(b' ')[0] in (\n"
    "                b'GET', b'PUT', b'POST', b'HEAD', b'DELETE'):\n"
    "            requests.append(bytes(data).split(b'\\r\\n', 1)[0].decode('latin-1'))\n"
    "if os.environ.get('FLOWPOD_BENCH_COUNT_S3'):\n"
    "    sys.addaudithook(note)\n"
    "def report():\n"
    "    usage = resource.getrusage(resource.RUSAGE_SELF)\n"
    f"    print('{CPU_MARK}', usage.ru_utime + usage.ru_stime, file=sys.__stderr__, flush=True)\n"
    "    for line in requests:\n"
    f"        print('{REQUESTS_MARK}', line, file=sys.__stderr__, flush=True)\n"
    "atexit.register(report)\n"
    "sys.argv = ['flowpod.pod', *sys.argv[1:]]\n"
    "from flowpod.pod import main\n"
    "raise SystemExit(main())\n"
)


def _trivial(x: int) -> int:
    return x + 1


def _pod_env(info: dict[str, Any], prefix: str, home: str) -> dict[str, str]:
    """What the operator's pod manifest sets, and what the image sets (no AWS config files)."""
    s3 = info["s3"]
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "FLOWPOD_HOME": os.path.join(home, "flowpod"),
        "FLOWPOD_S3_BUCKET": s3["bucket"],
        "FLOWPOD_S3_PREFIX": prefix,
        "FLOWPOD_S3_ENDPOINT": s3["endpoint"],
        "FLOWPOD_S3_REGION": s3["region"],
        "AWS_ACCESS_KEY_ID": s3["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": s3["secret_access_key"],
    }


def _kind(request_line: str, bucket: str, prefix: str) -> str:
    """``PUT outcome``, ``GET payload``, ...: the method and what the object is."""
    method, target = request_line.split(" ")[:2]
    path, _, query = target.partition("?")
    key = path.lstrip("/").removeprefix(bucket).lstrip("/").removeprefix(prefix).lstrip("/")
    name = key.rsplit("/", 1)[-1]
    if not key:
        what = "bucket"
    elif key.startswith("cache/"):
        what = "cache record" if name.endswith(".json") else "cache value"
    else:
        what = re.sub(r"-\d+(\.\w+)?$", "", name)  # outcome-1.json -> outcome
    if query.startswith("uploads") or "uploadId" in query:
        what += " (multipart)"
    return f"{method} {what}"


def _run_pod(env: dict[str, str], name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, *extra, "-c", WRAPPER, "task", f"{NAMESPACE}/{name}",
               "--attempt", "1"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                          cwd=env["HOME"])


def _marked(stderr: str, mark: str) -> list[str]:
    return [line[len(mark) + 1:] for line in stderr.splitlines() if line.startswith(mark + " ")]


def _import_ms(stderr: str) -> float:
    """Total of the top-level entries of ``-X importtime`` (nested ones are inside them)."""
    total = 0
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
        if match:
            total += int(match.group(1))
    return total / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-precompile", action="store_true",
                        help="no bytecode for flowpod: every pod compiles it from source")
    args = parser.parse_args(argv)

    info = cluster_info()
    s3 = info["s3"]
    prefix = f"bench-task-pod-cpu/{uuid.uuid4().hex[:10]}"
    sys.path.insert(0, str(ROOT / "sdk"))
    from flowpod import task
    from flowpod._kube.payloads import TaskPayload, write_payload
    from flowpod._storage import S3ResultStore, read_outcome

    store = S3ResultStore(s3["bucket"], prefix, endpoint_url=s3["endpoint"], region=s3["region"],
                          access_key_id=s3["access_key_id"],
                          secret_access_key=s3["secret_access_key"])
    trivial = task(_trivial)
    names = [f"trivial-{index:04d}" for index in range(args.runs + 2)]
    for index, name in enumerate(names):
        payload = TaskPayload(task=trivial, parameters={"x": index}, run_name=name,
                              task_run_id=str(uuid.uuid4()))
        write_payload(store, NAMESPACE, name, payload)

    cpu_ms: list[float] = []
    failures: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="flowpod-bench-") as home:
            env = _pod_env(info, prefix, home)
            sdk = os.path.join(home, "sdk")
            shutil.copytree(ROOT / "sdk" / "flowpod", os.path.join(sdk, "flowpod"),
                            ignore=shutil.ignore_patterns("__pycache__"))
            env["PYTHONPATH"] = sdk
            if not args.no_precompile:
                subprocess.run([sys.executable, "-m", "compileall", "-q", sdk], check=True,
                               timeout=300, env={**env, "PYTHONDONTWRITEBYTECODE": ""})
            # The first run counts the requests (audit hook) and warms the page cache; the second
            # records where the import time goes.
            counted = _run_pod({**env, "FLOWPOD_BENCH_COUNT_S3": "1"}, names[0])
            requests = Counter(_kind(line, s3["bucket"], prefix)
                               for line in _marked(counted.stderr, REQUESTS_MARK))
            traced = _run_pod(env, names[1], "-X", "importtime")
            attempt_import_ms = _import_ms(traced.stderr)
            for name in names[2:]:
                proc = _run_pod(env, name)
                marks = _marked(proc.stderr, CPU_MARK)
                outcome = read_outcome(store, NAMESPACE, name, 1)
                if proc.returncode != 0 or not marks or outcome is None \
                        or outcome.state != "Completed":
                    failures.append(f"{name}: exit {proc.returncode}, outcome "
                                    f"{outcome.state if outcome else None}: "
                                    f"{proc.stderr[-600:]}")
                    continue
                cpu_ms.append(float(marks[-1]) * 1000)
            help_trace = subprocess.run(
                [sys.executable, "-X", "importtime", "-m", "flowpod.pod", "--help"],
                env=env, capture_output=True, text=True, timeout=60, cwd=home)
            help_import_ms = _import_ms(help_trace.stderr)
    finally:
        client = store.client
        listed = client.list_objects_v2(Bucket=s3["bucket"], Prefix=prefix + "/")
        while True:
            keys = [{"Key": item["Key"]} for item in listed.get("Contents", ())]
            if keys:
                client.delete_objects(Bucket=s3["bucket"], Delete={"Objects": keys})
            if not listed.get("IsTruncated"):
                break
            listed = client.list_objects_v2(Bucket=s3["bucket"], Prefix=prefix + "/",
                                            ContinuationToken=listed["NextContinuationToken"])

    for failure in failures:
        print("run failed:", failure, file=sys.stderr)
    p50 = statistics.median(cpu_ms) if cpu_ms else float("nan")
    p99 = percentile(cpu_ms, 99)
    figures = {
        "runs": len(cpu_ms),
        "failed": len(failures),
        "cpu_p50_ms": p50,
        "cpu_p99_ms": p99,
        "target_ms": TARGET_MS,
        "verdict": "PASS" if p50 <= TARGET_MS else "MISS",
        "import_ms_attempt": attempt_import_ms,
        "import_ms_help": help_import_ms,
        "s3_requests": dict(sorted(requests.items())),
        "s3_requests_total": sum(requests.values()),
        "precompiled": not args.no_precompile,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    compiled = "compiled from source at each start" if args.no_precompile else "precompiled"
    print(f"task pod CPU, exec -> outcome written and log uploaded ({figures['runs']} runs, "
          f"{figures['failed']} failed; flowpod's bytecode {compiled})")
    print(f"  pod CPU (user+sys)        p50 {p50:6.0f} ms   p99 {p99:6.0f} ms   "
          f"target <= {TARGET_MS:.0f} ms (p50): {figures['verdict']}")
    print(f"  imports, one attempt      {attempt_import_ms:6.0f} ms (-X importtime, lazy ones "
          "included)")
    print(f"  imports, flowpod.pod --help {help_import_ms:4.0f} ms")
    print(f"  S3 requests per attempt   {figures['s3_requests_total']}")
    for kind, count in figures["s3_requests"].items():
        print(f"    {count:3d}  {kind}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
