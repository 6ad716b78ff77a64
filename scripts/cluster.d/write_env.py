"""Write the cluster's env.sh (for `eval`) and env.json (for pytest) into the state dir.

Called by scripts/cluster once everything is ready; the inputs arrive as environment variables
so the shell never has to quote JSON and Python never has to parse shell.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path


def main() -> None:
    e = os.environ
    state = Path(e["STATE_DIR"])
    ports = dict(
        line.split("=", 1)
        for line in Path(e["PORTS_FILE"]).read_text().splitlines()
        if "=" in line
    )
    api_url = e["APISERVER_URL"]
    s3_url = e["MINIO_URL"]
    bin_dirs = [e["K8S_BIN"], e["MINIO_BIN"], e["HELM_BIN"], e["CRICTL_BIN"]]
    env = {
        "KUBECONFIG": str(state / "admin.kubeconfig"),
        "FLOWPOD_CLUSTER_STATE": str(state),
        "FLOWPOD_KUBE_API": api_url,
        "FLOWPOD_S3_ENDPOINT": s3_url,
        "FLOWPOD_S3_BUCKET": e["S3_BUCKET"],
        "AWS_ACCESS_KEY_ID": e["S3_ACCESS_KEY"],
        "AWS_SECRET_ACCESS_KEY": e["S3_SECRET_KEY"],
        "AWS_DEFAULT_REGION": e["S3_REGION"],
        # boto3 >= 1.28 sends every S3 client without an explicit endpoint here.
        "AWS_ENDPOINT_URL_S3": s3_url,
        # `crictl ps`, `crictl logs` ... on the node's containerd.
        "CRI_CONFIG_FILE": e["CRICTL_CONFIG"],
    }
    info = {
        "env": env,
        "path_prepend": bin_dirs,
        "state_dir": str(state),
        "kubeconfig": env["KUBECONFIG"],
        "node_kubeconfig": str(state / "node.kubeconfig"),
        "ca_file": str(state / "pki" / "ca.crt"),
        "apiserver_url": api_url,
        "node_name": e["NODE_NAME"],
        # The node's address: where pods reach this machine (the API server, MinIO, test stubs).
        "node_ip": e["NODE_IP"],
        "node": {
            "bridge": e["NODE_BRIDGE"],
            "pod_subnet": e["POD_SUBNET"],
            "service_cidr": e["SERVICE_CIDR"],
            "guard_table": e["GUARD_TABLE"],
            "containerd_socket": e["CONTAINERD_SOCKET"],
            "logs": str(state / "logs"),
        },
        "image": e["FLOWPOD_IMAGE"],
        "s3": {
            "endpoint": s3_url,
            "bucket": e["S3_BUCKET"],
            "region": e["S3_REGION"],
            "access_key_id": e["S3_ACCESS_KEY"],
            "secret_access_key": e["S3_SECRET_KEY"],
        },
        "ports": {k.lower(): int(v) for k, v in ports.items()},
        "binaries": {
            "kubectl": str(Path(e["K8S_BIN"]) / "kubectl"),
            "helm": str(Path(e["HELM_BIN"]) / "helm"),
            "minio": str(Path(e["MINIO_BIN"]) / "minio"),
            "etcd": e["ETCD_BIN"],
            "crictl": str(Path(e["CRICTL_BIN"]) / "crictl"),
        },
        "versions": {
            "kubernetes": e["KUBERNETES_VERSION"],
            "minio": e["MINIO_VERSION"],
            "helm": e["HELM_VERSION"],
            "coredns": e["COREDNS_VERSION"],
        },
    }
    lines = ["# flowpod test cluster: eval \"$(scripts/cluster env)\""]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    # Prepend the binaries once, even when this is evaluated repeatedly in one shell.
    for d in reversed(bin_dirs):
        q = shlex.quote(d)
        lines.append(f'case ":$PATH:" in *:{q}:*) ;; *) export PATH={q}:"$PATH" ;; esac')
    (state / "env.sh").write_text("\n".join(lines) + "\n")
    # What `kind create cluster` gives a user: the kubeconfig, and kubectl and helm on PATH; no
    # store settings.
    kube_lines = ["# flowpod test cluster: kubectl and helm only",
                  f"export KUBECONFIG={shlex.quote(env['KUBECONFIG'])}"]
    kube_lines += [line for line in lines if line.startswith("case ")]
    (state / "env-kubeconfig.sh").write_text("\n".join(kube_lines) + "\n")
    (state / "env.json").write_text(json.dumps(info, indent=2) + "\n")
    for name in ("env.sh", "env.json", "env-kubeconfig.sh"):
        (state / name).chmod(0o600)


if __name__ == "__main__":
    main()
