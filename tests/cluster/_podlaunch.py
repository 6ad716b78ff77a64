"""How a pod's process is launched on this machine: argv wrapping, environment, token, cgroup.

The process is started as `unshare --mount` (a private mount namespace, only when a token is
mounted) -> `/bin/sh -c WRAPPER` (joins the memory cgroup, bind-mounts the token directory at
/var/run/secrets/kubernetes.io/serviceaccount) -> `setpriv` (only for runAsUser/runAsGroup) ->
the command. Every step execs the next, so the pid the agent holds is the command's pid and the
process group it leads is the pod.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from ._kube import KubeClient
from ._podspec import Identity, StartError, parse_quantity

JSON = dict[str, Any]
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_SECONDS = 3607  # what the kubelet asks for
MEMORY_CGROUPS = Path("/sys/fs/cgroup/memory")  # cgroup v1, as on the CI machines
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# $1: cgroup dir or "", $2: token dir or "", then the command.
WRAPPER = (
    'if [ -n "$1" ]; then echo $$ > "$1/cgroup.procs" || exit 126; fi; '
    f'if [ -n "$2" ]; then mount --bind "$2" {SA_MOUNT} || exit 126; fi; '
    'shift 2; exec "$@"'
)


def service_env(host: str, port: int) -> dict[str, str]:
    """The `kubernetes` Service's variables, pointing at the API server's real address."""
    p = str(port)
    prefix = f"KUBERNETES_PORT_{p}_TCP"
    return {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": p,
        "KUBERNETES_SERVICE_PORT_HTTPS": p,
        "KUBERNETES_PORT": f"tcp://{host}:{p}",
        prefix: f"tcp://{host}:{p}",
        f"{prefix}_PROTO": "tcp",
        f"{prefix}_PORT": p,
        f"{prefix}_ADDR": host,
    }


def process_env(pod_env: dict[str, str], *, venv: Path, pod_name: str, uid: int | None,
                sa_dir: Path, pass_env: dict[str, str]) -> dict[str, str]:
    """What an image would provide (PATH, HOME, HOSTNAME), then the pod's own variables."""
    base = {
        "PATH": f"{venv}/bin:{SYSTEM_PATH}",
        "HOME": "/root" if not uid else "/",
        "HOSTNAME": pod_name,
        "FLOWPOD_SERVICEACCOUNT_DIR": str(sa_dir),
    }
    return {**base, **pass_env, **pod_env}


def resolve_executable(argv: list[str], path: str, workdir: Path) -> list[str]:
    """argv with argv[0] resolved like exec would; StartError (the runtime's words) if missing."""
    exe = argv[0]
    if "/" in exe:
        if not (Path(exe) if exe.startswith("/") else workdir / exe).exists():
            raise StartError(f'exec: "{exe}": stat {exe}: no such file or directory')
        return argv
    found = shutil.which(exe, path=path)
    if found is None:
        raise StartError(f'exec: "{exe}": executable file not found in $PATH')
    return [found, *argv[1:]]


def launch_argv(argv: list[str], ident: Identity, cgroup: Path | None,
                sa_dir: Path | None) -> list[str]:
    """The full command line: unshare / wrapper / setpriv as needed, then the command."""
    full = list(argv)
    if ident.uid is not None or ident.gid is not None:
        priv = ["setpriv"]
        if ident.uid is not None:
            priv += ["--reuid", str(ident.uid)]
        priv += ["--regid", str(ident.gid if ident.gid is not None else 0)]
        if ident.groups:
            priv += ["--groups", ",".join(str(g) for g in ident.groups)]
        else:
            priv += ["--clear-groups"]
        full = [*priv, "--", *full]
    if cgroup is not None or sa_dir is not None:
        full = ["/bin/sh", "-c", WRAPPER, "flowpod-pod", str(cgroup or ""), str(sa_dir or ""),
                *full]
    if sa_dir is not None:
        full = ["unshare", "--mount", "--propagation", "private", "--", *full]
    return full


def prepare_workdir(container: JSON, default: Path, ident: Identity) -> Path:
    """workingDir (created if missing, owned by the pod's user), else the per-pod directory."""
    wd = container.get("workingDir")
    path = Path(wd) if wd else default
    if not path.exists():
        path.mkdir(parents=True, exist_ok=True)
        if ident.uid is not None or ident.gid is not None:
            os.chown(path, -1 if ident.uid is None else ident.uid,
                     -1 if ident.gid is None else ident.gid)
    return path


def write_token(kube: KubeClient, pod: JSON, sa_dir: Path) -> float:
    """A bound token for the pod's ServiceAccount in sa_dir; returns when to refresh it."""
    meta = pod["metadata"]
    sa = pod["spec"].get("serviceAccountName") or "default"
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "expirationSeconds": TOKEN_SECONDS,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                               "uid": meta["uid"]},
        },
    }
    path = f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{sa}/token"
    token = kube.request("POST", path, body)["status"]["token"]
    sa_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(sa_dir, 0o755)
    files = {"token": token.encode(), "ca.crt": kube.ca_bytes(),
             "namespace": meta["namespace"].encode()}
    for fname, data in files.items():
        # Replace, never rewrite in place: a reader sees the old file or the new one.
        tmp = sa_dir / f".{fname}.tmp"
        tmp.write_bytes(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, sa_dir / fname)
    # Like the kubelet, refresh once 80% of the lifetime has passed.
    return time.monotonic() + 0.8 * TOKEN_SECONDS


class MemoryCgroup:
    """A cgroup v1 memory cgroup holding one pod's process, so limits.memory OOM-kills for real."""

    def __init__(self, path: Path, limit_bytes: int) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
        self._baseline = self.oom_kills()

    @classmethod
    def for_container(cls, container: JSON, pod_uid: str) -> MemoryCgroup | None:
        limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
        if limit is None or not (MEMORY_CGROUPS / "cgroup.procs").exists():
            return None
        return cls(MEMORY_CGROUPS / "flowpod" / pod_uid, int(parse_quantity(limit)))

    def oom_kills(self) -> int:
        try:
            for line in (self.path / "memory.oom_control").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def oom_killed(self) -> bool:
        """Whether the kernel OOM-killed something in here since the last (re)start."""
        return self.oom_kills() > self._baseline

    def restarted(self) -> None:
        self._baseline = self.oom_kills()

    def remove(self) -> None:
        try:
            self.path.rmdir()
        except OSError:
            pass
