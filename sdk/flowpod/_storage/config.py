"""Where results live, as one value: ``StorageConfig`` and the store it makes.

A storage location (bucket, prefix, endpoint, region) arrives in several shapes: a run's
``spec.storage`` (``StorageSpec``), the operator's defaults, ``FLOWPOD_S3_*`` in the environment.
``StorageConfig`` is the one form the code passes around; its converters are the only places
those shapes are read or written (``from_env`` / ``to_env``, ``from_spec`` / ``to_spec``,
``to_store``). This module also picks the default store (``store_from_env``,
``default_cache_store``): it is the storage package's top, the one module that knows both the
local and the S3 backend.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from flowpod._storage.backends import LocalResultStore, ResultStore
from flowpod._storage.cache import CacheStore
from flowpod._storage.s3 import S3ResultStore, StorageSettings

if TYPE_CHECKING:
    from flowpod._contract.pod_settings import StorageSpec

__all__ = ["ENV_VARS", "StorageConfig", "default_cache_store", "store_from_env"]

ENV_VARS: Mapping[str, str] = {
    "bucket": "FLOWPOD_S3_BUCKET",
    "prefix": "FLOWPOD_S3_PREFIX",
    "endpoint": "FLOWPOD_S3_ENDPOINT",
    "region": "FLOWPOD_S3_REGION",
}
"""The environment variable of each field."""


class StorageConfig(NamedTuple):
    """An S3 storage location: bucket, key prefix, endpoint URL (None: AWS), region.

    Credentials are not part of it: they come from boto3's chain, or a Secret the caller reads.
    """

    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StorageConfig | None:
        """``FLOWPOD_S3_*`` (this process's view of the bucket); None when no bucket is set.

        Without ``environ`` they come from the settings (environment > profile > default,
        validated: a bad endpoint is a one-line SettingError); with it, from that mapping alone
        (the operator passes its own environment).
        """
        if environ is None:
            from flowpod._common.settings import get_settings

            settings = get_settings()
            if not settings.s3_bucket:
                return None
            return cls(settings.s3_bucket, settings.s3_prefix, settings.s3_endpoint,
                       settings.s3_region)
        env = environ
        bucket = env.get(ENV_VARS["bucket"], "").strip()
        if not bucket:
            return None
        return cls(
            bucket,
            env.get(ENV_VARS["prefix"], ""),
            env.get(ENV_VARS["endpoint"]) or None,
            env.get(ENV_VARS["region"]) or None,
        )

    def to_env(self) -> dict[str, str]:
        """The ``FLOWPOD_S3_*`` variables that ``from_env`` reads back as this location."""
        return {ENV_VARS[name]: value for name, value in self._asdict().items() if value}

    @classmethod
    def from_spec(cls, spec: StorageSettings) -> StorageConfig:
        """The location a ``StorageSpec`` (or anything with its four fields) names."""
        return cls(spec.bucket, spec.prefix, spec.endpoint, spec.region)

    def to_spec(self) -> StorageSpec:
        """A ``StorageSpec`` of this location (no credentials Secret; pydantic validates)."""
        from flowpod._contract.pod_settings import StorageSpec

        fields: dict[str, Any] = {"bucket": self.bucket, "prefix": self.prefix}
        fields.update({k: v for k, v in (("endpoint", self.endpoint), ("region", self.region))
                       if v})
        return StorageSpec.model_validate(fields)

    def to_store(self, **options: Any) -> S3ResultStore:
        """An ``S3ResultStore`` on this location (``options``: credentials, timeouts, ...)."""
        return S3ResultStore.from_storage(self, **options)


def store_from_env(environ: Mapping[str, str] | None = None) -> S3ResultStore | None:
    """An S3ResultStore when ``FLOWPOD_S3_BUCKET`` is set, else None.

    Reads ``FLOWPOD_S3_ENDPOINT`` (any S3-compatible URL), ``FLOWPOD_S3_PREFIX`` and
    ``FLOWPOD_S3_REGION``; credentials come from boto3's chain (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, profiles, roles).
    """
    config = StorageConfig.from_env(environ)
    return config.to_store() if config is not None else None


_default_stores: dict[tuple[Path, StorageConfig | None], CacheStore] = {}
_default_guard = threading.Lock()


def default_cache_store() -> CacheStore:
    """The cache the local engine uses, one instance per location (so locks are shared).

    With ``FLOWPOD_S3_BUCKET`` set it is that bucket (``FLOWPOD_S3_ENDPOINT``,
    ``FLOWPOD_S3_PREFIX``, credentials from the AWS chain): the store the operator and task pods
    use, so a flow on a laptop and a TaskRun on the cluster find each other's cache records by the
    same key. Otherwise it is the folder ``$FLOWPOD_HOME/storage``.
    """
    from flowpod._common.settings import get_settings

    home = get_settings().home
    config = StorageConfig.from_env()
    where = (home, config)
    store = _default_stores.get(where)
    if store is None:
        with _default_guard:
            store = _default_stores.get(where)
            if store is None:
                backend: ResultStore = (config.to_store() if config is not None
                                        else LocalResultStore(home / "storage"))
                store = _default_stores[where] = CacheStore(backend, lock_dir=home / "locks")
    return store
