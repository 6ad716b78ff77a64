"""The storage package's names under the historical module name ``flowpod._storage.stores``.

The old ``stores`` module was split into ``backends`` (``ResultStore``, local, memory),
``serializers`` and ``cache`` (``CacheStore``); the package itself (``flowpod._storage``) is
the public face. Code that still imports from here gets the same names.
"""

from __future__ import annotations

from flowpod._storage import *  # noqa: F403 - the package's public names, as listed there
