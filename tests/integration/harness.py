"""Helpers shared by the integration tests and their fixtures: what a running test cluster
offers (from `scripts/cluster env --json`), waiting on conditions, namespaces."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO_ROOT / "scripts" / "cluster.d" / "versions.env"

# make(namespace, name, create=True) -> kubernetes ApiClient acting as that ServiceAccount.
ServiceAccountClient = Callable[..., Any]


@dataclass(frozen=True)
class S3Settings:
    endpoint: str
    bucket: str
    region: str
    access_key_id: str
    secret_access_key: str

    def client(self) -> Any:
        """A boto3 S3 client for the test server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )


@dataclass(frozen=True)
class Cluster:
    """What `scripts/cluster env --json` reports about a running cluster."""

    info: dict[str, Any]
    started_here: bool

    @property
    def kubeconfig(self) -> str:
        return str(self.info["kubeconfig"])

    @property
    def state_dir(self) -> Path:
        return Path(self.info["state_dir"])

    @property
    def env(self) -> dict[str, str]:
        """Environment variables for processes that should use this cluster."""
        env = dict(self.info["env"])
        env["PATH"] = os.pathsep.join([*self.info["path_prepend"], os.environ.get("PATH", "")])
        return env

    @property
    def s3(self) -> S3Settings:
        return S3Settings(**self.info["s3"])

    @property
    def node_ip(self) -> str:
        """The node's address: where pods reach this machine (API server, MinIO, test stubs)."""
        return str(self.info["node_ip"])

    @property
    def image(self) -> str:
        """The flowpod image built from this checkout and loaded into the node (flowpod:dev)."""
        return str(self.info["image"])

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the cluster's kubectl as the admin; raise with its output when `check` fails."""
        cmd = [self.info["binaries"]["kubectl"], "--kubeconfig", self.kubeconfig, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc


def pinned(name: str) -> str:
    """A version pinned in scripts/cluster.d/versions.env (the single source of truth)."""
    for line in VERSIONS_FILE.read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1].strip()
    raise AssertionError(f"{name} is not pinned in {VERSIONS_FILE}")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll `predicate` until it returns a truthy value; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - remembered and reported on timeout
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)


def namespace_name(nodeid: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", nodeid.split("::")[-1].lower()).strip("-")[:40].strip("-")
    return f"t-{base}-{uuid.uuid4().hex[:6]}"


def create_namespace(kube_api: Any, name: str, timeout: float = 60) -> None:
    """Create a namespace and wait until pods can be created in it (its default ServiceAccount)."""
    from kubernetes import client

    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(lambda: core.read_namespaced_service_account("default", name), timeout,
             f"ServiceAccount {name}/default")


