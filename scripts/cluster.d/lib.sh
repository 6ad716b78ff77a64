# shellcheck shell=bash
# Shared settings and helpers for scripts/cluster: where caches and state live, logging, errors.
# Sourced, never executed. Everything here is a variable or a small function; no side effects
# except creating directories when asked.

CLUSTER_D="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$CLUSTER_D/../.." && pwd)"

# shellcheck source=cluster.d/versions.env
source "$CLUSTER_D/versions.env"

# Build cache (binaries, build logs, build timings), keyed by component and version.
CACHE_ROOT="${FLOWPOD_CLUSTER_CACHE:-$HOME/.cache/flowpod/cluster}"
# Runtime state of one running cluster: certificates, kubeconfigs, data, PIDs, logs.
STATE_DIR="${FLOWPOD_CLUSTER_STATE:-$HOME/.cache/flowpod/cluster-state}"
# The Python used for the node agent and for small helpers (bucket creation, waiting).
VENV_PYTHON="${FLOWPOD_PYTHON:-$REPO_ROOT/.venv/bin/python}"

K8S_DIR="$CACHE_ROOT/kubernetes-$KUBERNETES_VERSION"
MINIO_DIR="$CACHE_ROOT/minio-$MINIO_VERSION"
HELM_DIR="$CACHE_ROOT/helm-$HELM_VERSION"
COREDNS_DIR="$CACHE_ROOT/coredns-$COREDNS_VERSION"
CRICTL_DIR="$CACHE_ROOT/crictl-$CRICTL_VERSION"
# Built images as docker-archive tarballs, keyed by the content they were built from.
IMAGES_DIR="$CACHE_ROOT/images"
# The node's runtime directory (containerd's state and socket). One node runs per machine (it
# owns the bridge, the iptables chains and node port 30900), and unix socket paths must stay
# short, so this is fixed rather than under the state dir.
NODE_RUN_DIR="/run/flowpod-node"
CONTAINERD_SOCKET="$NODE_RUN_DIR/containerd/containerd.sock"
# The kubelet's root (pod volumes, its plugin and pod-resources sockets): on disk, as emptyDirs
# live there, and at a short fixed path, as unix socket paths are limited to 107 bytes.
KUBELET_ROOT="/var/lib/flowpod-node/kubelet"
K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)

# Seconds since this script started, on every progress line: where `up` spends its time.
CLUSTER_T0="$(date +%s.%N)"
since_start() { awk -v a="$CLUSTER_T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%5.1fs", b - a }'; }
log() { printf '[cluster %s] %s\n' "$(since_start)" "$*" >&2; }
warn() { printf '[cluster %s] WARNING: %s\n' "$(since_start)" "$*" >&2; }
die() {
    printf '[cluster] ERROR: %s\n' "$*" >&2
    exit 1
}

# Seconds since the epoch with sub-second precision, for timing builds and start-up.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Print the last lines of a log file, framed, so a failure shows its cause.
show_log_tail() {
    local file="$1" lines="${2:-40}"
    if [[ -f "$file" ]]; then
        printf '[cluster] ---- last %s lines of %s ----\n' "$lines" "$file" >&2
        tail -n "$lines" "$file" >&2
        printf '[cluster] ---- end of %s ----\n' "$file" >&2
    else
        printf '[cluster] (no log at %s)\n' "$file" >&2
    fi
}

require_python() {
    [[ -x "$VENV_PYTHON" ]] || die "no Python at $VENV_PYTHON: create the project venv first (scripts/test does, via scripts/lib/venv.sh) or set FLOWPOD_PYTHON"
    "$VENV_PYTHON" -c 'import boto3, kubernetes' 2>/dev/null \
        || die "$VENV_PYTHON lacks boto3/kubernetes: install the project (pip install -e '.[dev]')"
}

# The etcd binary: Debian installs it as /usr/bin/etcd.
etcd_binary() { command -v etcd 2>/dev/null || echo /usr/bin/etcd; }
