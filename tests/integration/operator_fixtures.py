"""Fixtures that run flowpod's operator against the test cluster, as its ServiceAccount.

``operator`` starts ``.venv/bin/flowpod-operator -n <test namespace>`` as a subprocess with a
kubeconfig holding a token of ``flowpod-system/flowpod-operator``, the ServiceAccount and RBAC
that ``helm install flowpod charts/flowpod -n flowpod-system`` creates (rendered from the chart,
nothing else bound), so a rule missing from the chart fails the tests. The S3
settings of the test cluster are in its environment, and the namespace gets the default
credentials Secret (``flowpod-s3``) the task pods reference.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .chart import RELEASE_NAMESPACE, apply_flow_runner_rbac, apply_operator_rbac
from .harness import REPO_ROOT, Cluster, wait_for

OPERATOR_BIN = Path(sys.executable).with_name("flowpod-operator")
CRDS_DIR = REPO_ROOT / "crds"
OPERATOR_NAMESPACE = RELEASE_NAMESPACE
OPERATOR_SA = "flowpod-operator"
CREDENTIALS_SECRET = "flowpod-s3"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def operator_rbac(cluster: Cluster) -> None:
    """CRDs and the chart's operator ServiceAccount and RBAC applied (idempotent)."""
    cluster.kubectl("apply", "-f", str(CRDS_DIR))
    assert apply_operator_rbac(cluster) == OPERATOR_SA
    cluster.kubectl("wait", "--for=condition=Established", "crd/taskruns.flowpod.dev",
                    "--timeout=60s")


@pytest.fixture(scope="session")
def operator_kubeconfig(
    cluster: Cluster, operator_rbac: None, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A kubeconfig authenticating as the operator's ServiceAccount (nothing else)."""
    token = cluster.kubectl(
        "create", "token", OPERATOR_SA, "-n", OPERATOR_NAMESPACE, "--duration=6h"
    ).stdout.strip()
    path = tmp_path_factory.mktemp("operator") / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters:\n- name: test\n  cluster:\n"
        f"    server: {cluster.info['apiserver_url']}\n"
        f"    certificate-authority: {cluster.info['ca_file']}\n"
        f"users:\n- name: operator\n  user:\n    token: {token}\n"
        "contexts:\n- name: operator\n  context:\n    cluster: test\n    user: operator\n"
        "current-context: operator\n"
    )
    return path


@dataclass
class OperatorProcess:
    """One operator subprocess watching one namespace; can be killed and started again."""

    namespace: str
    kubeconfig: Path
    env: dict[str, str]
    log_dir: Path
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"operator-{self.starts}.log"

    def start(self, timeout: float = 60) -> None:
        port = _free_port()
        self.starts += 1
        env = {**self.env, "KUBECONFIG": str(self.kubeconfig)}
        log = open(self.log_path, "wb")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [str(OPERATOR_BIN), "-n", self.namespace,
             "--liveness", f"http://127.0.0.1:{port}/healthz", *self.extra_args],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        url = f"http://127.0.0.1:{port}/healthz"

        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"the operator exited {self.process.returncode}:\n"
                                     f"{self.logs()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_for(healthy, timeout, "the operator's liveness endpoint", interval=0.1)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as a crashed or evicted operator."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(
            (self.log_dir / f"operator-{n}.log").read_text(errors="replace")
            for n in range(1, self.starts + 1)
            if (self.log_dir / f"operator-{n}.log").exists()
        )


def create_credentials_secret(cluster: Cluster, namespace: str) -> None:
    s3 = cluster.s3
    cluster.kubectl(
        "create", "secret", "generic", CREDENTIALS_SECRET, "-n", namespace,
        f"--from-literal=AWS_ACCESS_KEY_ID={s3.access_key_id}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={s3.secret_access_key}",
    )


@pytest.fixture
def operator_factory(
    cluster: Cluster,
    operator_kubeconfig: Path,
    namespace: str,
    tmp_path: Path,
) -> Iterator[Callable[..., OperatorProcess]]:
    """`make(*extra_args, start=True, extra_env=None) -> OperatorProcess` for the test's
    namespace."""
    create_credentials_secret(cluster, namespace)
    made: list[OperatorProcess] = []
    env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
    env.update(cluster.env)
    env.pop("KUBECONFIG", None)
    env["FLOWPOD_OPERATOR_CREDENTIALS_SECRET"] = CREDENTIALS_SECRET
    env["FLOWPOD_OPERATOR_IMAGE"] = cluster.image

    def make(*extra_args: str, start: bool = True,
             extra_env: dict[str, str] | None = None) -> OperatorProcess:
        proc = OperatorProcess(namespace, operator_kubeconfig, {**env, **(extra_env or {})},
                               tmp_path, list(extra_args))
        made.append(proc)
        if start:
            proc.start()
        return proc

    yield make
    for proc in made:
        proc.stop()


@pytest.fixture
def operator(operator_factory: Callable[..., OperatorProcess]) -> OperatorProcess:
    """The operator, running for the test's namespace."""
    return operator_factory()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """``harness.wait_for`` with a short poll interval (the operator reacts in milliseconds)."""
    return wait_for(predicate, timeout, what, interval=0.05)


@pytest.fixture
def flow_runner_rbac(cluster: Cluster, operator_rbac: None, namespace: str) -> str:
    """The chart's flow-runner RBAC for the test's namespace (its ServiceAccount, bound to the
    flow-runner ClusterRole there): flow pods run as it. Returns the namespace."""
    apply_flow_runner_rbac(cluster, namespace)
    return namespace
