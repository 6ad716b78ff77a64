"""What running a flow as a FlowRun costs per task, against the local engine (scripts/cluster up).

    python bench/flowrun_overhead.py [--tasks 1000] [--direct-tasks 1000] [--rounds 3] [--json]

Starts ``flowpod-operator`` as a subprocess (as its ServiceAccount, with the Helm
chart's RBAC) watching a fresh namespace that also gets the chart's flow-runner RBAC and the S3
secret, then measures with real pods (the kubelet runs each in a container of the flowpod image,
loaded by ``scripts/cluster image --load``):

(a) submitted tasks: a FlowRun, created with ``flowpod.kubernetes.submit(..., wait=True)``, whose
    flow ``.submit()``s N trivial tasks (each a TaskRun and its own pod). Wall time is from the
    submit call to the Completed state seen by this process. Per-task overhead is
    (wall(N) - wall(1)) / (N - 1): a 1-task FlowRun gives the fixed cost (flow pod start-up,
    pickling, result). The same flow on the local engine, measured the same way, gives the ratio.
(b) direct calls: a FlowRun whose flow calls N trivial tasks directly inside the flow pod and
    times its own loop with time.perf_counter, minus the same loop over the bare function; the
    best of --rounds rounds is returned as the flow's result. The same flow on the local engine
    gives the reference; target: the pod's figure within 2x of the local one.

A benchmark, not a test: prints figures and ratios (PASS/MISS against the target) and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from _cluster import apply_chart_rbac, cluster_info, kubectl, wait

from flowpod import flow, task

ROOT = Path(__file__).resolve().parents[1]
DIRECT_TARGET_RATIO = 2.0


# -- the flows (pickled by value into the FlowRun, since this file runs as __main__) -------------


def _bare(x: int) -> int:
    return x + 1


@task
def bump(x: int) -> int:
    return x + 1


@flow(name="bench-submit-many")
def submit_many(n: int) -> int:
    futures = [bump.submit(i) for i in range(n)]
    return sum(future.result() for future in futures)


@flow(name="bench-call-many")
def call_many(n: int, rounds: int = 3) -> dict[str, float]:
    """Times its own loops where it runs (the flow pod or this process); seconds per call."""
    from time import perf_counter

    best_task = best_bare = float("inf")
    for _ in range(rounds):
        started = perf_counter()
        for i in range(n):
            bump(i)
        best_task = min(best_task, (perf_counter() - started) / n)
        started = perf_counter()
        for i in range(n):
            _bare(i)
        best_bare = min(best_bare, (perf_counter() - started) / n)
    return {"task_s": best_task, "bare_s": best_bare, "overhead_s": best_task - best_bare}


# -- the cluster ---------------------------------------------------------------------------------








class Cluster:
    """A fresh namespace with the operator (as its ServiceAccount) and the flow-runner RBAC."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        self.namespace = f"bench-fr-{uuid.uuid4().hex[:6]}"
        self.operator: subprocess.Popen[bytes] | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="flowpod-bench-fr-"))

    def setup(self) -> None:
        info, ns = self.info, self.namespace
        kubectl(info, "apply", "-f", str(ROOT / "crds"))
        kubectl(info, "create", "namespace", ns)
        s3 = info["s3"]
        kubectl(info, "create", "secret", "generic", "flowpod-s3", "-n", ns,
                 f"--from-literal=AWS_ACCESS_KEY_ID={s3['access_key_id']}",
                 f"--from-literal=AWS_SECRET_ACCESS_KEY={s3['secret_access_key']}")
        # The chart's operator RBAC, and its flow-runner identity bound in this namespace only.
        apply_chart_rbac(info, run_namespace=ns)
        token = kubectl(info, "create", "token", "flowpod-operator", "-n", "flowpod-system",
                         "--duration=2h").strip()
        kubeconfig = self.tmp / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n"
            f"    server: {info['apiserver_url']}\n"
            f"    certificate-authority: {info['ca_file']}\n"
            f"users:\n- name: u\n  user:\n    token: {token}\n"
            "contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n"
            "current-context: c\n"
        )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {**os.environ, **info["env"], "KUBECONFIG": str(kubeconfig),
               "FLOWPOD_OPERATOR_IMAGE": info["image"]}
        self.operator = subprocess.Popen(
            [str(Path(sys.executable).with_name("flowpod-operator")), "-n", ns,
             "--liveness", f"http://127.0.0.1:{port}/healthz"],
            env=env, stdout=open(self.tmp / "operator.log", "wb"), stderr=subprocess.STDOUT,
        )

        def live() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    return True
            except OSError:
                return False

        wait(live, 60, "the operator")

    def teardown(self) -> None:
        if self.operator is not None:
            self.operator.send_signal(2)
            try:
                self.operator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.operator.kill()
        subprocess.run([self.info["binaries"]["kubectl"], "--kubeconfig", self.info["kubeconfig"],
                        "delete", "namespace", self.namespace, "--wait=false"],
                       capture_output=True, timeout=60)

    def run(self, flow_obj: Any, parameters: dict[str, Any], timeout: float) -> tuple[float, Any]:
        """Submit ``flow_obj`` as a FlowRun and wait: (wall seconds, the flow's result)."""
        from flowpod.kubernetes import submit

        started = time.perf_counter()
        handle = submit(flow_obj, parameters, namespace=self.namespace, wait=True,
                        timeout=timeout, kubeconfig=self.info["kubeconfig"],
                        env={"FLOWPOD_LOGGING_LEVEL": "WARNING"})
        wall = time.perf_counter() - started
        if handle.state != "Completed":
            raise SystemExit(f"FlowRun {handle.name} ended {handle.state}: {handle.message}")
        return wall, handle.result(timeout=60)


def _local_wall(n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        assert submit_many(n) == sum(range(1, n + 1))
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000,
                        help="tasks the FlowRun submits, one pod each (a)")
    parser.add_argument("--direct-tasks", type=int, default=1000,
                        help="tasks the flow pod calls directly (b)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the direct-call loop")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)
    if args.tasks < 2 or args.direct_tasks < 1 or args.rounds < 1:
        parser.error("--tasks must be >= 2, --direct-tasks and --rounds >= 1")

    # Both engines (this process and the pods) log at WARNING, as bench/local_overhead.py
    # measures them: the figures are the engine's, not the console's.
    os.environ["FLOWPOD_LOGGING_LEVEL"] = "WARNING"
    info = cluster_info()
    os.environ.update(info["env"])

    n = args.tasks
    local_1 = _local_wall(1, 5)
    local_n = _local_wall(n, 3)
    local_direct = call_many(args.direct_tasks, args.rounds)

    cluster = Cluster(info)
    cluster.setup()
    try:
        pod_1, _ = cluster.run(submit_many, {"n": 1}, timeout=300)
        pod_n, total = cluster.run(submit_many, {"n": n}, timeout=max(600.0, n * 3.0))
        assert total == sum(range(1, n + 1)), total
        _, pod_direct = cluster.run(call_many, {"n": args.direct_tasks, "rounds": args.rounds},
                                    timeout=300)
    finally:
        cluster.teardown()

    local_per = (local_n - local_1) / (n - 1)
    pod_per = (pod_n - pod_1) / (n - 1)
    direct_ratio = pod_direct["overhead_s"] / local_direct["overhead_s"]
    figures = {
        "tasks": n,
        "direct_tasks": args.direct_tasks,
        "submit_local_wall_s": local_n,
        "submit_local_1_task_s": local_1,
        "submit_local_per_task_us": local_per * 1e6,
        "submit_flowrun_wall_s": pod_n,
        "submit_flowrun_1_task_s": pod_1,
        "submit_flowrun_per_task_ms": pod_per * 1e3,
        "submit_ratio": pod_per / local_per,
        "direct_local_per_task_us": local_direct["overhead_s"] * 1e6,
        "direct_pod_per_task_us": pod_direct["overhead_s"] * 1e6,
        "direct_pod_bare_us": pod_direct["bare_s"] * 1e6,
        "direct_ratio": direct_ratio,
    }
    verdict = "PASS" if direct_ratio <= DIRECT_TARGET_RATIO else "MISS"
    rows = [
        ("(a) submit: wall time, N tasks", f"{local_n:.3f} s", f"{pod_n:.1f} s",
         f"{pod_n / local_n:,.0f}x", "-"),
        ("(a) submit: fixed cost (1-task run)", f"{local_1 * 1e3:.2f} ms", f"{pod_1:.1f} s",
         f"{pod_1 / local_1:,.0f}x", "-"),
        ("(a) submit: overhead per task", f"{local_per * 1e6:.1f} us", f"{pod_per * 1e3:.1f} ms",
         f"{pod_per / local_per:,.0f}x", "-"),
        ("(b) direct call: overhead per task", f"{local_direct['overhead_s'] * 1e6:.1f} us",
         f"{pod_direct['overhead_s'] * 1e6:.1f} us", f"{direct_ratio:.2f}x",
         f"<= {DIRECT_TARGET_RATIO:.0f}x {verdict}"),
    ]
    print(f"\nN = {n} submitted tasks (one pod each), {args.direct_tasks} direct calls x "
          f"{args.rounds} rounds\n")
    header = ("metric", "local engine", "FlowRun", "FlowRun / local", "target")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    if args.json:
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
