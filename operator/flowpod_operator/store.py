"""The operator's view of the result store: which store a TaskRun uses, and the two reads the
operator makes there (an attempt's outcome record, a cache record).

One ``ResultStore`` per distinct storage location (bucket, prefix, endpoint, region), shared by
every TaskRun that points there. The operator reads with its own credentials (its environment's
AWS chain); the Secret named in a spec is for the pods. The calls are blocking (boto3): the
handlers run them in a worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from flowpod._payloads import FlowOutcome, Outcome, read_flow_outcome, read_outcome
from flowpod._resources import FlowRun, TaskRun
from flowpod._store import CacheRecord, CacheStore, ResultStore
from flowpod_operator.settings import OperatorConfig

__all__ = ["StoreRegistry", "StorageLocation"]

StorageLocation = tuple[str, str, str | None, str | None]
"""(bucket, prefix, endpoint, region)."""


def _default_factory(location: StorageLocation) -> ResultStore:
    from flowpod._s3store import S3ResultStore

    bucket, prefix, endpoint, region = location
    return S3ResultStore(bucket, prefix, endpoint_url=endpoint, region=region)


class StoreRegistry:
    """Stores by location, created on first use."""

    def __init__(
        self,
        config: OperatorConfig,
        factory: Callable[[StorageLocation], ResultStore] = _default_factory,
    ) -> None:
        self._config = config
        self._factory = factory
        self._stores: dict[StorageLocation, ResultStore] = {}
        self._guard = threading.Lock()

    def location(self, taskrun: TaskRun | FlowRun) -> StorageLocation:
        storage = taskrun.spec.storage
        if storage is not None:
            return storage.bucket, storage.prefix, storage.endpoint, storage.region
        defaults = self._config.storage
        if not defaults.bucket:
            raise LookupError(
                f"{taskrun.kind} {taskrun.metadata.namespace}/{taskrun.metadata.name} has no "
                "spec.storage and the operator has no default bucket: set spec.storage.bucket "
                "or start the operator with FLOWPOD_S3_BUCKET"
            )
        return defaults.bucket, defaults.prefix, defaults.endpoint, defaults.region

    def store_for(self, taskrun: TaskRun | FlowRun) -> ResultStore:
        location = self.location(taskrun)
        with self._guard:
            store = self._stores.get(location)
            if store is None:
                store = self._stores[location] = self._factory(location)
        return store

    def outcome(self, taskrun: TaskRun, attempt: int) -> Outcome | None:
        """The outcome record of ``attempt`` (None: the pod wrote none)."""
        meta = taskrun.metadata
        if attempt < 1 or not meta.namespace or not meta.name:
            return None
        return read_outcome(self.store_for(taskrun), meta.namespace, meta.name, attempt)

    def flow_outcome(self, flowrun: FlowRun, attempt: int) -> FlowOutcome | None:
        """The outcome record of flow attempt ``attempt`` (None: the flow pod wrote none)."""
        meta = flowrun.metadata
        if attempt < 1 or not meta.namespace or not meta.name:
            return None
        return read_flow_outcome(self.store_for(flowrun), meta.namespace, meta.name, attempt)

    def cache_record(self, taskrun: TaskRun) -> CacheRecord | None:
        """The cache record under ``spec.cacheKey`` (None: no key, or nothing stored)."""
        key = taskrun.spec.cache_key
        if key is None or taskrun.spec.refresh_cache:
            return None
        cache = CacheStore(self.store_for(taskrun), lock_dir=_NO_LOCKS)
        return cache.read_record(key)


# The operator only reads records, never takes the compute lock; CacheStore wants a folder anyway.
_NO_LOCKS = Path("/nonexistent/flowpod-operator-locks")
