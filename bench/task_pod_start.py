"""Task pods on the real node: how fast they start, and what one costs in CPU.

    python bench/task_pod_start.py [--count 40] [--parallel 4] [--json]

Needs the test cluster (``scripts/cluster up``) with the image of this checkout loaded
(``scripts/cluster image --load``). No operator runs: for each of --count trivial TaskRuns this
process writes the payload, creates the TaskRun (so the pod has a real owner) and then the very
pod the operator would create for attempt 1 (``flowpod_operator.pods.pod_manifest``), with one
change: the container's command wraps ``python -m flowpod.pod`` to print the process's own CPU
time (user + system, from ``getrusage``) when it exits, i.e. from exec to outcome written.
At most --parallel pods run at once, the way a flow's burst of submissions arrives.

Figures:

- pod created -> container started: from the create call's return to the first watch event that
  shows the container running or already terminated (the kubelet, containerd, runc and the CNI
  bridge plugin; the image is local), p50/p99;
- pod created -> Succeeded: the whole attempt, p50/p99;
- the task pod's CPU time from exec to outcome written, p50/p99 (interpreter start, imports,
  payload read, the task, result and outcome written).

A benchmark, not a test: prints figures and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _cluster import ROOT, cluster_info, kubectl, percentile

GROUP, VERSION, PLURAL = "flowpod.dev", "v1alpha1", "taskruns"
CPU_MARK = "FLOWPOD_BENCH_CPU_S"
# ``python -m flowpod.pod ARGS`` with the process's CPU time printed last, on stderr.
WRAPPER = (
    "import atexit, resource, sys\n"
    "def report():\n"
    "    usage = resource.getrusage(resource.RUSAGE_SELF)\n"
    f"    print('{CPU_MARK}', usage.ru_utime + usage.ru_stime, file=sys.stderr, flush=True)\n"
    "atexit.register(report)\n"
    "sys.argv = ['flowpod.pod', *sys.argv[1:]]\n"
    "from flowpod.pod import main\n"
    "raise SystemExit(main())\n"
)


def _trivial(x: int) -> int:
    return x + 1


class PodBench:
    def __init__(self, info: dict[str, Any]) -> None:
        from kubernetes import client, config

        from flowpod._storage.config import store_from_env

        self.info = info
        os.environ.update(info["env"])
        self.api = config.new_client_from_config(config_file=info["kubeconfig"])
        self.core: Any = client.CoreV1Api(self.api)
        self.custom: Any = client.CustomObjectsApi(self.api)
        store = store_from_env()
        assert store is not None
        self.store = store
        self.namespace = f"bench-pod-{uuid.uuid4().hex[:6]}"
        self.created: dict[str, float] = {}
        self.started: dict[str, float] = {}
        self.finished: dict[str, tuple[float, str]] = {}
        self.lock = threading.Condition()
        self._stop = threading.Event()

    def watch(self) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            stream = watch.Watch()
            for event in stream.stream(self.core.list_namespaced_pod, self.namespace,
                                       timeout_seconds=60, _request_timeout=90):
                pod = event["object"]
                name, now = pod.metadata.name, time.monotonic()
                statuses = pod.status.container_statuses or []
                state = statuses[0].state if statuses else None
                with self.lock:
                    if state and (state.running or state.terminated) and name not in self.started:
                        self.started[name] = now
                    if pod.status.phase in ("Succeeded", "Failed") and name not in self.finished:
                        self.finished[name] = (now, pod.status.phase)
                    self.lock.notify_all()
                if self._stop.is_set():
                    stream.stop()

    def one(self, index: int) -> str:
        from flowpod import task
        from flowpod._contract.resources import TaskRunResource, TaskRunSpec
        from flowpod._kube.payloads import TaskPayload, write_payload
        from flowpod_operator.pods import pod_manifest
        from flowpod_operator.settings import OperatorConfig

        name = f"trivial-{index:04d}"
        trivial = task(_trivial)
        payload = TaskPayload(task=trivial, parameters={"x": index}, run_name=f"trivial-{index}",
                              task_run_id=str(uuid.uuid4()))
        key = write_payload(self.store, self.namespace, name, payload)
        spec = TaskRunSpec(task_name="trivial", task_key="bench.trivial",
                           run_name=payload.run_name, payload=key)
        created = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, spec.to_manifest(name, self.namespace))
        config = OperatorConfig.from_env({**self.info["env"],
                                          "FLOWPOD_OPERATOR_IMAGE": self.info["image"]})
        pod = pod_manifest(TaskRunResource.from_object(created), 1, config)
        container = pod["spec"]["containers"][0]
        container["command"] = ["python", "-c", WRAPPER, *container["command"][3:]]
        self.core.create_namespaced_pod(self.namespace, pod)
        with self.lock:
            self.created[pod["metadata"]["name"]] = time.monotonic()
            self.lock.wait_for(lambda: pod["metadata"]["name"] in self.finished, timeout=300)
        return str(pod["metadata"]["name"])

    def cpu_seconds(self, pod: str) -> float | None:
        text = self.core.read_namespaced_pod_log(pod, self.namespace)
        for line in reversed(text.splitlines()):
            if line.startswith(CPU_MARK):
                return float(line.split()[1])
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    info = cluster_info()
    bench = PodBench(info)
    kubectl(info, "apply", "-f", str(ROOT / "crds"))
    kubectl(info, "create", "namespace", bench.namespace)
    s3 = info["s3"]
    kubectl(info, "create", "secret", "generic", "flowpod-s3", "-n", bench.namespace,
            f"--from-literal=AWS_ACCESS_KEY_ID={s3['access_key_id']}",
            f"--from-literal=AWS_SECRET_ACCESS_KEY={s3['secret_access_key']}")
    watcher = threading.Thread(target=bench.watch, daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(args.parallel) as pool:
            pods = list(pool.map(bench.one, range(args.count)))
        start_ms = [(bench.started[p] - bench.created[p]) * 1000 for p in pods
                    if p in bench.started]
        done_ms = [(bench.finished[p][0] - bench.created[p]) * 1000 for p in pods
                   if p in bench.finished]
        phases = [bench.finished[p][1] for p in pods if p in bench.finished]
        cpu = [c for c in (bench.cpu_seconds(p) for p in pods) if c is not None]
    finally:
        bench._stop.set()
        kubectl(info, "delete", "namespace", bench.namespace, "--wait=false")
    figures = {
        "count": args.count,
        "parallel": args.parallel,
        "succeeded": phases.count("Succeeded"),
        "start_p50_ms": statistics.median(start_ms),
        "start_p99_ms": percentile(start_ms, 99),
        "done_p50_ms": statistics.median(done_ms),
        "done_p99_ms": percentile(done_ms, 99),
        "cpu_p50_ms": statistics.median(cpu) * 1000,
        "cpu_p99_ms": percentile(cpu, 99) * 1000,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"task pods on the node ({figures['count']} pods, {figures['parallel']} at a time, "
          f"{figures['succeeded']} Succeeded)")
    print(f"  pod created -> container started  p50 {figures['start_p50_ms']:7.0f} ms   "
          f"p99 {figures['start_p99_ms']:7.0f} ms")
    print(f"  pod created -> Succeeded          p50 {figures['done_p50_ms']:7.0f} ms   "
          f"p99 {figures['done_p99_ms']:7.0f} ms")
    print(f"  task pod CPU, exec -> outcome     p50 {figures['cpu_p50_ms']:7.0f} ms   "
          f"p99 {figures['cpu_p99_ms']:7.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
