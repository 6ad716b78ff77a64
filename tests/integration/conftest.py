"""Fixtures for the integration tier: the cluster started by scripts/cluster, and its clients.

The session fixture `cluster` reuses a healthy cluster that `scripts/cluster up` already started
(CI and local development do that first: it is the fast path), and otherwise starts a private one
in a temporary state directory and stops it when the session ends, so one session never stops a
cluster another session is using. While the session runs, the cluster's settings (KUBECONFIG, the
S3 endpoint and credentials, the PATH with kubectl and helm) are in os.environ for subprocesses.

Every test in this directory is marked `cluster`. With FLOWPOD_SKIP_CLUSTER=1 they are skipped;
otherwise a cluster that cannot start is an error, never a skip, so CI sees it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    REPO_ROOT,
    Cluster,
    S3Settings,
    ServiceAccountClient,
    create_namespace,
    namespace_name,
)

CLUSTER_SCRIPT = REPO_ROOT / "scripts" / "cluster"
INTEGRATION_DIR = Path(__file__).resolve().parent
DEFAULT_STATE = Path.home() / ".cache" / "flowpod" / "cluster-state"
# A warm `up` takes well under a minute; a cold one builds Kubernetes (tens of minutes).
UP_TIMEOUT_SECONDS = float(os.environ.get("FLOWPOD_CLUSTER_UP_TIMEOUT", "3600"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = os.environ.get("FLOWPOD_SKIP_CLUSTER") == "1"
    reason = "FLOWPOD_SKIP_CLUSTER=1: integration tests need the test cluster (scripts/cluster up)"
    for item in items:
        if INTEGRATION_DIR not in Path(str(item.path)).resolve().parents:
            continue
        item.add_marker(pytest.mark.cluster)
        if skip:
            item.add_marker(pytest.mark.skip(reason=reason))


def _run_cluster_script(
    args: list[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLUSTER_SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def _healthy(env: dict[str, str]) -> bool:
    return _run_cluster_script(["status"], env, timeout=60).returncode == 0


def _read_info(env: dict[str, str]) -> dict[str, Any]:
    proc = _run_cluster_script(["env", "--json"], env, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/cluster env --json failed:\n{proc.stderr}")
    info: dict[str, Any] = json.loads(proc.stdout)
    return info


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The running test cluster (reused, or started for this session and stopped after it)."""
    if os.environ.get("FLOWPOD_SKIP_CLUSTER") == "1":
        pytest.skip("FLOWPOD_SKIP_CLUSTER=1: integration tests need the test cluster")
    shared_env = dict(os.environ)
    shared_env.setdefault("FLOWPOD_CLUSTER_STATE", str(DEFAULT_STATE))
    if _healthy(shared_env):
        cluster_env, started_here = shared_env, False
    else:
        # A private cluster: our `down` can never stop a cluster someone else is using.
        cluster_env = dict(os.environ)
        cluster_env["FLOWPOD_CLUSTER_STATE"] = str(tmp_path_factory.mktemp("cluster") / "state")
        proc = _run_cluster_script(["up"], cluster_env, timeout=UP_TIMEOUT_SECONDS)
        if proc.returncode != 0:
            raise RuntimeError(
                "scripts/cluster up failed (set FLOWPOD_SKIP_CLUSTER=1 to skip the integration "
                f"tier on purpose):\n{proc.stderr[-6000:]}"
            )
        started_here = True
    try:
        found = Cluster(info=_read_info(cluster_env), started_here=started_here)
        saved = dict(os.environ)
        os.environ.update(found.env)
        try:
            yield found
        finally:
            os.environ.clear()
            os.environ.update(saved)
    finally:
        if started_here:
            _run_cluster_script(["down"], cluster_env, timeout=300)


@pytest.fixture(scope="session", autouse=True)
def node_image(cluster: Cluster) -> str:
    """The flowpod image of this checkout, built from the Dockerfile and loaded into the node.

    ``scripts/cluster image --load`` rebuilds only when the files the image is made from changed
    (seconds otherwise) and imports only what the node lacks, so pods always run this code.
    """
    env = {**os.environ, **cluster.env, "FLOWPOD_CLUSTER_STATE": str(cluster.state_dir)}
    proc = _run_cluster_script(["image", "--tag", cluster.image, "--load"], env,
                               timeout=UP_TIMEOUT_SECONDS)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/cluster image --load failed:\n{proc.stderr[-6000:]}")
    return cluster.image


@pytest.fixture(autouse=True)
def _cluster_env(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every integration test sees the cluster's settings in its environment."""
    for key, value in cluster.env.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="session")
def kube_api(cluster: Cluster) -> Iterator[Any]:
    """A `kubernetes.client.ApiClient` authenticated as the cluster admin (system:masters)."""
    from kubernetes import config

    api = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=cluster.kubeconfig, persist_config=False
    )
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(kube_api: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted (with everything in it) afterwards."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    name = namespace_name(request.node.nodeid)
    create_namespace(kube_api, name)
    yield name
    try:
        client.CoreV1Api(kube_api).delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture(scope="session")
def s3(cluster: Cluster) -> S3Settings:
    """The S3 server's endpoint, bucket and credentials."""
    return cluster.s3


@pytest.fixture
def s3_client(s3: S3Settings) -> Any:
    return s3.client()


@pytest.fixture
def service_account_token(kube_api: Any) -> Callable[..., str]:
    """`token(namespace, name, create=True, expiration_seconds=3600) -> str` via TokenRequest."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core: Any = client.CoreV1Api(kube_api)

    def token(namespace: str, name: str, create: bool = True,
              expiration_seconds: int = 3600) -> str:
        if create:
            try:
                core.create_namespaced_service_account(
                    namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
                )
            except ApiException as exc:
                if exc.status != 409:
                    raise
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
        )
        response = core.create_namespaced_service_account_token(name, namespace, request)
        return str(response.status.token)

    return token


@pytest.fixture
def service_account_client(
    cluster: Cluster, kube_api: Any, service_account_token: Callable[..., str]
) -> Iterator[ServiceAccountClient]:
    """`make(namespace, name, create=True) -> ApiClient` acting as that ServiceAccount."""
    from kubernetes import client

    made: list[Any] = []

    def make(namespace: str, name: str, create: bool = True) -> Any:
        cfg = client.Configuration()
        cfg.host = cluster.info["apiserver_url"]
        cfg.ssl_ca_cert = cluster.info["ca_file"]
        cfg.verify_ssl = True
        cfg.api_key = {"authorization": service_account_token(namespace, name, create)}
        cfg.api_key_prefix = {"authorization": "Bearer"}
        api = client.ApiClient(cfg)
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()
