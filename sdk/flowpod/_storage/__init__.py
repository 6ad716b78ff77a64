"""Result storage: key -> bytes stores (a folder, S3), serializers, the cache, and the run files
(outcomes, results, exceptions) a pod, the SDK and the operator exchange.

This package's public face is this module: the operator and the pod import from here. Modules,
lowest first: ``backends`` (``ResultStore``, local, memory), ``serializers``, ``cache``
(``CacheStore``), ``s3_errors`` / ``s3_light`` / ``s3_streams`` / ``s3`` (``S3ResultStore``),
``run_files``, and on top ``config`` (``StorageConfig``, the one form of a storage location, and
the default store). botocore is imported on first use of an S3 store, never by importing this
package (on a custom endpoint with static keys, only ``botocore.exceptions``).
"""

from __future__ import annotations

from flowpod._storage.backends import (
    CHUNK_SIZE,
    LocalResultStore,
    MemoryResultStore,
    ResultStore,
)
from flowpod._storage.cache import CacheStore
from flowpod._storage.config import StorageConfig, default_cache_store, store_from_env
from flowpod._storage.run_files import (
    read_exception,
    read_flow_outcome,
    read_outcome,
    read_result,
    write_exception,
    write_flow_outcome,
    write_outcome,
    write_result,
)
from flowpod._storage.s3 import DEFAULT_PART_SIZE, MIN_PART_SIZE, S3ResultStore
from flowpod._storage.s3_errors import S3StoreError, S3StoreUnavailable
from flowpod._storage.serializers import (
    JSONSerializer,
    PickleSerializer,
    Serializer,
    get_serializer,
)

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_PART_SIZE",
    "MIN_PART_SIZE",
    "CacheStore",
    "JSONSerializer",
    "LocalResultStore",
    "MemoryResultStore",
    "PickleSerializer",
    "ResultStore",
    "S3ResultStore",
    "S3StoreError",
    "S3StoreUnavailable",
    "Serializer",
    "StorageConfig",
    "default_cache_store",
    "get_serializer",
    "read_exception",
    "read_flow_outcome",
    "read_outcome",
    "read_result",
    "store_from_env",
    "write_exception",
    "write_flow_outcome",
    "write_outcome",
    "write_result",
]
