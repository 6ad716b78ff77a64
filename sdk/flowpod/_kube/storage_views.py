"""Which storage a run uses, seen from two places: the cluster's pods and this process.

Storage from ``FLOWPOD_S3_*`` (``flowpod._storage.StorageConfig.from_env``) is how *this*
machine reaches S3 (``FLOWPOD_S3_ENDPOINT``, e.g. a kind node port on localhost); the specs
written into the cluster carry ``FLOWPOD_S3_CLUSTER_ENDPOINT`` instead when that is set (pods
reach S3 at another address). ``storage_views`` is the one place that override happens;
``local_store`` makes this process's store from its view. Used by ``KubernetesTaskRunner``
(``flowpod._kube.runner``) and by ``submit()`` / ``FlowRunHandle`` (``flowpod._kube.submit``);
``reader_store`` is how a reader of finished runs (``flowpod logs``, the dashboard) reaches a
run's results and logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from flowpod._storage import StorageConfig
from flowpod.exceptions import ConfigurationError

if TYPE_CHECKING:
    from flowpod._contract.pod_settings import StorageSpec
    from flowpod._storage import ResultStore

__all__ = [
    "CLUSTER_ENDPOINT_VAR",
    "StorageViews",
    "local_storage",
    "local_store",
    "reader_store",
    "storage_spec",
    "storage_views",
]

# The S3 endpoint as pods reach it, when this machine reaches it elsewhere (see storage_views).
CLUSTER_ENDPOINT_VAR = "FLOWPOD_S3_CLUSTER_ENDPOINT"


def storage_spec(storage: StorageSpec | Mapping[str, Any] | None) -> StorageSpec | None:
    """``storage`` as a StorageSpec; None: ``FLOWPOD_S3_*`` as this process reaches it."""
    from flowpod._contract.pod_settings import StorageSpec

    if storage is None:
        config = StorageConfig.from_env()
        return config.to_spec() if config is not None else None
    if isinstance(storage, StorageSpec):
        return storage
    return StorageSpec.model_validate(dict(storage))


class StorageViews(NamedTuple):
    """One storage location seen from two places."""
    spec: StorageSpec | None
    """What FlowRun/TaskRun specs carry: how the pods reach it (None: the operator's default)."""
    local: StorageSpec | None
    """What this process's own ``S3ResultStore`` uses."""


def storage_views(storage: StorageSpec | Mapping[str, Any] | None) -> StorageViews:
    """The spec's and this process's view of ``storage`` (None: from ``FLOWPOD_S3_*``).

    Explicit storage is one location reached the same way from everywhere. Storage from the
    environment is how *this* machine reaches S3 (``FLOWPOD_S3_ENDPOINT``, e.g. a kind node port
    on localhost); when pods reach it at another address, ``FLOWPOD_S3_CLUSTER_ENDPOINT`` (e.g.
    the in-cluster service) replaces the endpoint in what is written into the cluster. This is
    the one place that override happens.
    """
    from flowpod._common.settings import get_settings

    local = storage_spec(storage)
    cluster_endpoint = get_settings().s3_cluster_endpoint  # validated: an http(s) URL or None
    if storage is not None or local is None or not cluster_endpoint:
        return StorageViews(local, local)
    from pydantic import ValidationError

    from flowpod._contract.pod_settings import StorageSpec

    try:
        spec = StorageSpec.model_validate({**local.to_wire(), "endpoint": cluster_endpoint})
    except ValidationError:
        raise ConfigurationError(
            f"{CLUSTER_ENDPOINT_VAR} must be an http:// or https:// URL (the S3 endpoint as pods "
            f"in the cluster reach it), got {cluster_endpoint!r}"
        ) from None
    return StorageViews(spec, local)


def local_storage(run_storage: Mapping[str, Any] | None) -> StorageSpec | None:
    """This process's view of a run's ``spec.storage``: the environment's own when the run
    carries the environment's storage (as ``storage_views`` wrote it), else the run's."""
    env = storage_views(None)
    if run_storage is None:
        return env.local
    written = storage_spec(run_storage)
    return env.local if env.local is not None and written == env.spec else written


def local_store(local: StorageSpec | None, missing: str) -> ResultStore:
    """This process's store on ``local``; ConfigurationError ``missing`` when there is none."""
    if local is None:
        raise ConfigurationError(missing)
    return StorageConfig.from_spec(local).to_store()


def reader_store(run_storage: Mapping[str, Any] | None) -> ResultStore | None:
    """The store a reader of a run uses: ``FLOWPOD_S3_*`` first, else the run's
    ``spec.storage``; None when neither names one. ValueError (pydantic's, or a
    ConfigurationError) when the settings are malformed."""
    spec = storage_spec(None) or (storage_spec(run_storage) if run_storage else None)
    if spec is None:
        return None
    from flowpod._storage.s3 import S3ResultStore

    return S3ResultStore.from_storage(spec)
