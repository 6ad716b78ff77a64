"""Stores, serializers and the cache under their historical module name.

The storage package's public face is ``flowpod._storage`` itself; this module re-exports the
three modules the old ``stores`` module was split into (``backends``, ``serializers``,
``cache``) for code that still imports from here.
"""

from __future__ import annotations

from flowpod._storage.backends import (
    CHUNK_SIZE,
    LocalResultStore,
    MemoryResultStore,
    ResultStore,
)
from flowpod._storage.cache import CacheStore
from flowpod._storage.serializers import (
    JSONSerializer,
    PickleSerializer,
    Serializer,
    get_serializer,
)

__all__ = [
    "CHUNK_SIZE",
    "CacheStore",
    "JSONSerializer",
    "LocalResultStore",
    "MemoryResultStore",
    "PickleSerializer",
    "ResultStore",
    "Serializer",
    "get_serializer",
]
