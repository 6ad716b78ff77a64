"""flowpod's test-cluster node agent: a stand-in for the kubelet that runs pods as local processes.

Not part of the product. It registers a Ready Node, keeps its Lease renewed, and runs the first
container of every pod bound to that node (by the real scheduler or by spec.nodeName) as a
process on this machine, reporting pod status the way the kubelet does.

Usage (as root, from the repository; scripts/cluster up starts it this way):

    python tests/cluster/node_agent.py --kubeconfig PATH --node-name NAME --state-dir DIR
        [--venv PATH] [--kubelet-port 10250] [--hostname-address localhost]
        [--tls-cert-file CRT --tls-private-key-file KEY] [--pass-env NAME ...]
        [--register-with-taints KEY[=VALUE]:EFFECT ...]
        [--keep-pods] [--delete-node-on-exit] [--verbose]

  --kubeconfig      credentials allowed to write Nodes, Leases, pod status, Events, delete pods,
                    read Secrets/ConfigMaps and create ServiceAccount tokens (the admin's).
  --node-name       the Node to register (created if missing; never deleted unless asked).
  --state-dir       per-pod directories: <state-dir>/pods/<ns>_<pod>_<uid>/ hold <container>.log
                    (stdout+stderr), <container>.log.ts (line times), work/ (the default working
                    directory), serviceaccount/ (token, ca.crt, namespace) and pid;
                    <state-dir>/pki/ holds the self-signed serving certificate.
  --venv            the virtual environment whose bin/ leads pods' PATH (default: the repo's .venv).
  --kubelet-port    HTTPS port on 127.0.0.1 for GET /containerLogs/<ns>/<pod>/<container> and
                    /healthz; published as status.daemonEndpoints.kubeletEndpoint.Port.
  --hostname-address  the Node's Hostname address (the API server dials it when it prefers
                    Hostname; it must resolve to 127.0.0.1). The InternalIP is 127.0.0.1.
  --pass-env        copy this variable of the agent's environment into every pod (repeatable).
  --register-with-taints  taints the Node gets when registered (repeatable), as the kubelet's.
  --keep-pods       on SIGTERM leave running processes alone (default: kill them, mark their pods
                    Failed with reason Terminated like a graceful node shutdown).

Semantics and limits (what differs from a kubelet):
- The image is ignored: `command` (+ `args`) is run directly; a container with args but no
  command fails with StartError because there is no image ENTRYPOINT. Only the first container
  runs; init containers, probes, volumes other than the service-account token and CPU limits are
  not implemented. restartPolicy OnFailure/Always restart the process with the kubelet's back-off
  (immediately, then 10 s doubling to 5 min; CrashLoopBackOff while waiting).
- limits.memory puts the process in a cgroup v1 memory cgroup with that limit (when
  /sys/fs/cgroup/memory exists), so an OOM kill is reported as reason OOMKilled, exit code 137.
- A process that survives the agent (--keep-pods, or a crash) is not adopted by the next agent:
  it is killed and its pod reported Failed with ContainerStatusUnknown, as the kubelet does when a
  container disappears. Pods deleted while the agent was away are finalised on its next list.
- Environment: env and envFrom (values, Secret/ConfigMap refs, fieldRef, resourceFieldRef) with
  $(VAR) expansion; PATH=<venv>/bin:<system dirs>, HOME, HOSTNAME=<pod>, KUBERNETES_SERVICE_HOST/
  PORT = the API server's loopback address, FLOWPOD_SERVICEACCOUNT_DIR = the token directory.
  The pod's env wins over these defaults.
- The service-account token is a bound TokenRequest token, bind-mounted at
  /var/run/secrets/kubernetes.io/serviceaccount in a private mount namespace (unshare), so
  in-cluster configuration works unchanged; runAsUser/runAsGroup/supplementalGroups via setpriv.
- Exit by signal N reports exitCode 128+N (143 for SIGTERM, 137 for SIGKILL) with reason Error.
  `$$` in command/args is the kubelet's escape for `$`: write `$$$$` for a shell's own pid.
- activeDeadlineSeconds counts from status.startTime: SIGTERM to the process group, SIGKILL after
  terminationGracePeriodSeconds, then phase Failed, reason DeadlineExceeded. Deletion: SIGTERM,
  SIGKILL after deletionGracePeriodSeconds, final status, then a delete with grace period 0.
- The kubelet endpoint does not authenticate callers (loopback only; the API server is its only
  client) and serves logs only (no exec/attach/port-forward).
- Status lines go to stderr as JSON, one per line; "Node <name> Ready" is logged once registered.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.cluster._agent import NodeAgent  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="node_agent.py", description="Run pods bound to a Node as local processes."
    )
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--node-name", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--venv", default=str(REPO_ROOT / ".venv"))
    p.add_argument("--kubelet-port", type=int, default=10250)
    p.add_argument("--hostname-address", default="localhost")
    p.add_argument("--tls-cert-file")
    p.add_argument("--tls-private-key-file")
    p.add_argument("--pass-env", action="append", default=[])
    p.add_argument("--register-with-taints", action="append", default=[],
                   metavar="KEY[=VALUE]:EFFECT")
    p.add_argument("--keep-pods", action="store_true")
    p.add_argument("--delete-node-on-exit", action="store_true")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if bool(args.tls_cert_file) != bool(args.tls_private_key_file):
        p.error("--tls-cert-file and --tls-private-key-file go together (or neither: self-signed)")
    if not Path(args.kubeconfig).is_file():
        p.error(f"--kubeconfig {args.kubeconfig}: no such file")
    return args


def main(argv: list[str] | None = None) -> int:
    return NodeAgent(parse_args(argv)).run()


if __name__ == "__main__":
    sys.exit(main())
