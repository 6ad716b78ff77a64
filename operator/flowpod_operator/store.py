"""The operator's view of the result store: which store a TaskRun uses, and the two reads the
operator makes there (an attempt's outcome record, a cache record).

One ``ResultStore`` per distinct storage location (bucket, prefix, endpoint, region), shared by
every TaskRun that points there. The operator reads with its own credentials (its environment's
AWS chain); the Secret named in a spec is for the pods. The calls are blocking (boto3): the
handlers run them in a worker thread.

With ``FLOWPOD_S3_CREATE_BUCKET`` the operator also creates its default bucket: a daemon thread
(``start_bucket_creator``) keeps trying with exponential backoff until the bucket exists, so a
storage server that comes up after the operator neither blocks start-up nor needs a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from flowpod._contract.records import CacheRecord, FlowOutcome, Outcome
from flowpod._contract.resources import FlowRunResource, TaskRunResource
from flowpod._storage import (
    CacheStore,
    ResultStore,
    S3ResultStore,
    StorageConfig,
    read_flow_outcome,
    read_outcome,
)
from flowpod_operator.settings import OperatorConfig

__all__ = [
    "BucketOwner",
    "StoreRegistry",
    "bucket_backoff",
    "ensure_bucket_until_done",
    "start_bucket_creator",
]

logger = logging.getLogger("flowpod.operator")



def _default_factory(location: StorageConfig) -> S3ResultStore:
    return location.to_store()


class StoreRegistry:
    """Stores by location, created on first use."""

    def __init__(
        self,
        config: OperatorConfig,
        factory: Callable[[StorageConfig], ResultStore] = _default_factory,
    ) -> None:
        self._config = config
        self._factory = factory
        self._stores: dict[StorageConfig, ResultStore] = {}
        self._guard = threading.Lock()

    def location(self, taskrun: TaskRunResource | FlowRunResource) -> StorageConfig:
        storage = taskrun.spec.storage
        if storage is not None:
            return StorageConfig.from_spec(storage)
        defaults = self._config.storage
        if not defaults.bucket:
            raise LookupError(
                f"{taskrun.kind} {taskrun.metadata.namespace}/{taskrun.metadata.name} has no "
                "spec.storage and the operator has no default bucket: set spec.storage.bucket "
                "or start the operator with FLOWPOD_S3_BUCKET"
            )
        return defaults.location

    def store_for(self, taskrun: TaskRunResource | FlowRunResource) -> ResultStore:
        location = self.location(taskrun)
        with self._guard:
            store = self._stores.get(location)
            if store is None:
                store = self._stores[location] = self._factory(location)
        return store

    def outcome(self, taskrun: TaskRunResource, attempt: int) -> Outcome | None:
        """The outcome record of ``attempt`` (None: the pod wrote none)."""
        meta = taskrun.metadata
        if attempt < 1 or not meta.namespace or not meta.name:
            return None
        return read_outcome(self.store_for(taskrun), meta.namespace, meta.name, attempt)

    def flow_outcome(self, flowrun: FlowRunResource, attempt: int) -> FlowOutcome | None:
        """The outcome record of flow attempt ``attempt`` (None: the flow pod wrote none)."""
        meta = flowrun.metadata
        if attempt < 1 or not meta.namespace or not meta.name:
            return None
        return read_flow_outcome(self.store_for(flowrun), meta.namespace, meta.name, attempt)

    def cache_record(self, taskrun: TaskRunResource) -> CacheRecord | None:
        """The cache record under ``spec.cacheKey`` (None: no key, or nothing stored)."""
        key = taskrun.spec.cache_key
        if key is None or taskrun.spec.refresh_cache:
            return None
        # Only reads: the cache's compute lock (and its folder) is never used here.
        return CacheStore(self.store_for(taskrun)).read_record(key)


# -- creating the default bucket -------------------------------------------------------------------


class BucketOwner(Protocol):
    """What creating the bucket needs of a store (``S3ResultStore`` fits)."""

    bucket: str

    def ensure_bucket(self) -> bool: ...


def bucket_backoff(first: float = 0.5, cap: float = 30.0) -> Iterator[float]:
    """The waits between attempts: ``first``, doubling up to ``cap``, then ``cap`` forever."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, cap)


def ensure_bucket_until_done(store: BucketOwner, sleep: Callable[[float], object]) -> bool:
    """Call ``store.ensure_bucket()`` until it succeeds; True when it created the bucket.

    Every failure is logged as a WARNING with its reason, then ``sleep`` waits the next
    ``bucket_backoff`` delay; there is no limit (the operator is useless without its bucket,
    and the storage server may simply not be up yet).
    """
    delays = bucket_backoff()
    while True:
        try:
            created = store.ensure_bucket()
        except Exception as exc:  # noqa: BLE001 - any failure is retried, with its reason logged
            delay = next(delays)
            logger.warning("could not create bucket %s (%s); retrying in %.1f s",
                           store.bucket, exc, delay)
            sleep(delay)
            continue
        if created:
            logger.info("created bucket %s", store.bucket)
        return created


def start_bucket_creator(
    config: OperatorConfig,
    factory: Callable[[StorageConfig], BucketOwner] | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> threading.Thread | None:
    """With ``storage.create_bucket``, a started daemon thread creating the default bucket
    (``ensure_bucket_until_done``); else None. It never blocks the caller."""
    defaults = config.storage
    if not defaults.create_bucket or not defaults.bucket:
        return None
    location = StorageConfig.from_spec(defaults)
    make = factory or _default_factory

    def run() -> None:
        try:
            ensure_bucket_until_done(make(location), sleep)
        except Exception:  # noqa: BLE001 - e.g. an invalid bucket name: say so, don't die silently
            logger.exception("cannot create bucket %s", defaults.bucket)

    thread = threading.Thread(target=run, name="flowpod-create-bucket", daemon=True)
    thread.start()
    return thread
