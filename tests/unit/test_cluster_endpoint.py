"""``FLOWPOD_S3_CLUSTER_ENDPOINT``: specs written into the cluster name S3 as the pods reach it,
while this process keeps reaching it at ``FLOWPOD_S3_ENDPOINT``.

``submit()`` and ``KubernetesTaskRunner`` run against fakes of their API seams; the store this
process builds is caught where it is made (``S3ResultStore.from_storage``) and replaced with an
in-memory one, so the test sees both views: the manifest's ``spec.storage`` and the storage the
local store was built from.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from flowpod import flow, task
from flowpod._contract.pod_settings import StorageSpec
from flowpod._kube.flowrun_api import FlowRunApi, NotFound
from flowpod._kube.submit import storage_views
from flowpod._storage import MemoryResultStore
from flowpod._storage.s3 import S3ResultStore
from flowpod.exceptions import ConfigurationError
from flowpod.kubernetes import KubernetesTaskRunner, TaskRunApi, submit

LOCAL = "http://localhost:30900"
CLUSTER = "http://flowpod-minio.flowpod-system.svc:9000"
NS = "team-a"


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWPOD_S3_BUCKET", "results")
    monkeypatch.setenv("FLOWPOD_S3_PREFIX", "dev")
    monkeypatch.setenv("FLOWPOD_S3_ENDPOINT", LOCAL)
    monkeypatch.setenv("FLOWPOD_S3_REGION", "us-east-1")
    monkeypatch.setenv("FLOWPOD_S3_CLUSTER_ENDPOINT", CLUSTER)


class LocalStores:
    """Stands in for ``S3ResultStore.from_storage``: records the storage, returns one memory
    store (so what this process writes can be read back)."""

    def __init__(self) -> None:
        self.store = MemoryResultStore()
        self.storages: list[StorageSpec] = []

    def __call__(self, storage: StorageSpec, **_: Any) -> MemoryResultStore:
        self.storages.append(storage)
        return self.store

    @property
    def endpoints(self) -> set[str | None]:
        return {storage.endpoint for storage in self.storages}


@pytest.fixture
def local_stores(monkeypatch: pytest.MonkeyPatch) -> LocalStores:
    stores = LocalStores()
    monkeypatch.setattr(S3ResultStore, "from_storage", stores)
    return stores


# -- the views ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("s3_env")
def test_env_storage_gets_the_cluster_endpoint_only_in_the_spec() -> None:
    views = storage_views(None)
    assert views.spec is not None and views.local is not None
    assert views.spec.endpoint == CLUSTER and views.local.endpoint == LOCAL
    # Everything else is the same location.
    assert views.spec.model_dump(exclude={"endpoint"}) == views.local.model_dump(
        exclude={"endpoint"})
    assert (views.spec.bucket, views.spec.prefix, views.spec.region) == (
        "results", "dev", "us-east-1")


@pytest.mark.usefixtures("s3_env")
def test_explicit_storage_is_written_as_given() -> None:
    given = {"bucket": "other", "endpoint": "http://s3.example:9000"}
    views = storage_views(given)
    assert views.spec == views.local == StorageSpec.model_validate(given)


def test_without_cluster_endpoint_both_views_are_the_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWPOD_S3_BUCKET", "results")
    monkeypatch.setenv("FLOWPOD_S3_ENDPOINT", LOCAL)
    views = storage_views(None)
    assert views.spec is not None and views.spec == views.local
    assert views.spec.endpoint == LOCAL
    monkeypatch.delenv("FLOWPOD_S3_BUCKET")
    monkeypatch.setenv("FLOWPOD_S3_CLUSTER_ENDPOINT", CLUSTER)
    assert storage_views(None) == (None, None)  # no bucket: the operator's default storage


@pytest.mark.usefixtures("s3_env")
def test_a_malformed_cluster_endpoint_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLOWPOD_S3_CLUSTER_ENDPOINT", "minio:9000")
    with pytest.raises(ConfigurationError, match="CLUSTER_ENDPOINT=.minio:9000. is not a URL"):
        storage_views(None)


# -- submit() -------------------------------------------------------------------------------------


class FakeFlowRunApi(FlowRunApi):
    """Keeps created FlowRuns; ``get`` returns them (enough for submit, its configuration check
    and the handle)."""

    def __init__(self) -> None:
        super().__init__()
        self.flowruns: dict[str, dict[str, Any]] = {}

    def default_namespace(self) -> str:
        return NS

    def create_flowrun(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        obj = dict(manifest)
        self.flowruns[obj["metadata"]["name"]] = obj
        return obj

    def get(self, namespace: str, plural: str, name: str) -> dict[str, Any]:
        if plural != "flowruns" or name not in self.flowruns:
            raise NotFound(f"{plural} {namespace}/{name} not found")
        return self.flowruns[name]

    def list_objects(self, namespace: str, plural: str,
                     label_selector: str = "") -> list[dict[str, Any]]:
        return []  # submit's configuration check lists FlowRuns with a selector matching none

    def close(self) -> None:
        pass


@task
def add(x: int, y: int) -> int:
    return x + y


@flow
def adder(n: int) -> int:
    return n + 1


@pytest.mark.usefixtures("s3_env")
def test_submit_writes_the_cluster_endpoint_and_uploads_through_the_local_one(
    local_stores: LocalStores,
) -> None:
    api = FakeFlowRunApi()
    handle = submit(adder, {"n": 1}, api=api)
    storage = api.get(NS, "flowruns", handle.name)["spec"]["storage"]
    assert storage == {"bucket": "results", "prefix": "dev", "endpoint": CLUSTER,
                       "region": "us-east-1"}
    # The flow code went up through the store built from the local endpoint.
    assert local_stores.endpoints == {LOCAL}
    assert local_stores.store.exists(api.get(NS, "flowruns", handle.name)["spec"]["code"])


@pytest.mark.usefixtures("s3_env")
def test_submit_writes_explicit_storage_as_given(local_stores: LocalStores) -> None:
    api = FakeFlowRunApi()
    given = {"bucket": "other", "endpoint": "http://s3.example:9000"}
    handle = submit(adder, {"n": 1}, api=api, storage=given)
    assert api.get(NS, "flowruns", handle.name)["spec"]["storage"] == dict(given, prefix="")
    assert local_stores.endpoints == {"http://s3.example:9000"}


@pytest.mark.usefixtures("s3_env")
def test_a_handle_reads_results_through_the_local_endpoint(local_stores: LocalStores) -> None:
    from flowpod.kubernetes import FlowRunHandle

    api = FakeFlowRunApi()
    name = submit(adder, {"n": 1}, api=api).name
    local_stores.storages.clear()
    ref = f"runs/{NS}/{name}/flow-result-1"
    local_stores.store.put(ref, pickle.dumps(2))
    api.flowruns[name]["status"] = {"state": "Completed", "resultRef": ref}
    # A handle made later (as `flowpod` commands do) finds the store from the FlowRun's spec,
    # which names the cluster endpoint: it must still read through the local one.
    assert FlowRunHandle(name, NS, api=api).result(timeout=5) == 2
    assert local_stores.endpoints == {LOCAL}


# -- KubernetesTaskRunner -------------------------------------------------------------------------


class CompletingTaskRunApi(TaskRunApi):
    """Every created TaskRun completes at once with the result ``("ran", runName)``, written to
    ``store``; list + watch replay the completed objects."""

    def __init__(self, store: MemoryResultStore) -> None:
        super().__init__()
        self.store = store
        self.created: list[dict[str, Any]] = []
        self.cond = threading.Condition()

    def default_namespace(self) -> str:
        return NS

    def create(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        ref = f"runs/{namespace}/{name}/result"
        self.store.put(ref, pickle.dumps(("ran", manifest["spec"]["runName"])))
        obj = dict(manifest, status={"state": "Completed", "resultRef": ref})
        with self.cond:
            self.created.append(obj)
            self.cond.notify_all()
        return obj

    def list(self, namespace: str, label_selector: str) -> tuple[list[dict[str, Any]], str]:
        with self.cond:
            return list(self.created), str(len(self.created))

    def watch(self, namespace: str, label_selector: str, resource_version: str,
              timeout_seconds: int) -> Iterator[tuple[str, dict[str, Any]]]:
        seen = int(resource_version)
        with self.cond:
            self.cond.wait_for(lambda: len(self.created) > seen, timeout=0.5)
            fresh = self.created[seen:]
        for obj in fresh:
            yield "MODIFIED", dict(obj, metadata=dict(obj["metadata"],
                                                      resourceVersion=str(seen + 1)))
            seen += 1

    def close(self) -> None:
        pass


@pytest.mark.usefixtures("s3_env")
def test_the_runner_writes_the_cluster_endpoint_and_uses_the_local_one(
    local_stores: LocalStores,
) -> None:
    api = CompletingTaskRunApi(local_stores.store)
    runner = KubernetesTaskRunner(namespace=NS, api=api)

    @flow(task_runner=runner)
    def pipeline() -> Any:
        return add.submit(1, 2).result(timeout=30)

    assert pipeline() == ("ran", "add-0")
    [obj] = api.created
    assert obj["spec"]["storage"]["endpoint"] == CLUSTER
    assert obj["spec"]["storage"]["bucket"] == "results"
    # The payload was written, and the result read, through the store on the local endpoint.
    assert local_stores.endpoints == {LOCAL}
    assert local_stores.store.exists(obj["spec"]["payload"])
    spec = runner.storage_spec()
    assert spec is not None and spec.endpoint == CLUSTER


@pytest.mark.usefixtures("s3_env")
def test_the_runner_writes_explicit_storage_as_given(local_stores: LocalStores) -> None:
    api = CompletingTaskRunApi(local_stores.store)
    runner = KubernetesTaskRunner(namespace=NS, api=api,
                                  storage={"bucket": "other", "endpoint": "http://s3.example:9000"})

    @flow(task_runner=runner)
    def pipeline() -> Any:
        return add.submit(1, 2).result(timeout=30)

    assert pipeline() == ("ran", "add-0")
    [obj] = api.created
    assert obj["spec"]["storage"]["endpoint"] == "http://s3.example:9000"
    assert local_stores.endpoints == {"http://s3.example:9000"}
