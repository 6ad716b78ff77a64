"""The cache on top of a result store: ``CacheStore`` (records, values, the per-key lock).

``CacheStore`` keeps cache records under ``cache/<name>.json`` next to the serialised value
``cache/<name>.value`` (``<name>`` is the cache key itself when it is a safe file name, else
``~<sha256 of the key>``) — the same layout in a folder and in a bucket, so a key computed
anywhere finds the same record. ``CacheStore.lock`` serialises concurrent runs of one cache key:
a per-key re-entrant lock for threads of this process plus ``fcntl.flock`` on
``<lock_dir>/<name>.lock`` for other processes on the machine (removed again on release); the
lock folder is only decided when a lock is first taken, so a store that just reads records (the
operator) needs none. Processes on different machines sharing a bucket are not serialised by it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flowpod._contract.keys import cache_name, cache_record_key, cache_value_key
from flowpod._contract.records import CacheRecord
from flowpod._storage.backends import LocalResultStore, ResultStore
from flowpod._storage.serializers import get_serializer
from flowpod.exceptions import ConfigurationError, ResultNotFound, SerializationError

__all__ = ["CacheStore"]


class _KeyLock:
    """One cache key's lock: re-entrant within a thread, flock'ed once for other processes."""

    __slots__ = ("depth", "fd", "rlock", "users")

    def __init__(self) -> None:
        self.rlock = threading.RLock()
        self.depth = 0
        self.users = 0
        self.fd: int | None = None


class CacheStore:
    """Cache records and values on a ResultStore, plus the per-key compute lock."""

    def __init__(self, store: ResultStore, lock_dir: Path | None = None) -> None:
        self.store = store
        self._lock_dir = Path(lock_dir) if lock_dir is not None else None
        self._locks: dict[str, _KeyLock] = {}
        self._locks_guard = threading.Lock()

    def __repr__(self) -> str:
        return f"CacheStore({self.store!r})"

    @property
    def lock_dir(self) -> Path:
        """Where the compute lock's files go, decided on first use (a store that only reads
        records never needs one): the given folder, else ``locks`` next to a local store's
        objects, else ``$FLOWPOD_HOME/locks``."""
        if self._lock_dir is None:
            if isinstance(self.store, LocalResultStore):
                self._lock_dir = self.store.root / "locks"
            else:
                from flowpod._common.settings import get_settings

                self._lock_dir = get_settings().home / "locks"
        return self._lock_dir

    @staticmethod
    def record_key(cache_key: str) -> str:
        return cache_record_key(cache_key)

    @staticmethod
    def value_key(cache_key: str) -> str:
        return cache_value_key(cache_key)

    def read_record(self, cache_key: str) -> CacheRecord | None:
        """The stored record, or None if there is none (or it is unreadable)."""
        try:
            record = CacheRecord.from_json(self.store.get(self.record_key(cache_key)))
        except (ResultNotFound, SerializationError):
            return None
        return record if record.cache_key == cache_key else None

    def lookup(self, cache_key: str, now: datetime | None = None) -> tuple[bool, Any]:
        """(True, value) for an unexpired record whose value loads; else (False, None).

        A value that no longer loads (its class changed, the file was damaged) is a miss: the
        task runs again and its commit replaces the broken entry.
        """
        record = self.read_record(cache_key)
        if record is None or record.is_expired(now or datetime.now(UTC)):
            return False, None
        try:
            serializer = get_serializer(record.serializer)
            value = serializer.loads(self.store.get(record.result_key))
        except (ResultNotFound, SerializationError, ConfigurationError):
            return False, None
        return True, value

    def commit(
        self,
        cache_key: str,
        value: Any,
        *,
        task_key: str,
        expiration: timedelta | None,
        serializer: str = "pickle",
    ) -> CacheRecord:
        """Store ``value`` and its record. Serialises first, so a failure writes nothing."""
        encoder = get_serializer(serializer)
        data = encoder.dumps(value)
        created = datetime.now(UTC)
        record = CacheRecord(
            cache_key=cache_key,
            task_key=task_key,
            result_key=self.value_key(cache_key),
            serializer=encoder.name,
            created=created,
            expires=created + expiration if expiration is not None else None,
        )
        # Value before record: a record never points at a value that is not there yet.
        self.store.put(record.result_key, data)
        self.store.put(self.record_key(cache_key), record.to_json())
        return record

    def delete(self, cache_key: str) -> None:
        self.store.delete(self.record_key(cache_key))
        self.store.delete(self.value_key(cache_key))

    @contextmanager
    def lock(self, cache_key: str) -> Iterator[None]:
        """Hold this while doing lookup -> compute -> commit, so concurrent runs compute once."""
        name = cache_name(cache_key)
        with self._locks_guard:
            entry = self._locks.get(name)
            if entry is None:
                entry = self._locks[name] = _KeyLock()
            entry.users += 1
        try:
            with entry.rlock:
                entry.depth += 1
                try:
                    if entry.depth == 1:
                        entry.fd = self._acquire_file_lock(name)
                    yield
                finally:
                    entry.depth -= 1
                    if entry.depth == 0 and entry.fd is not None:
                        self._release_file_lock(name, entry.fd)
                        entry.fd = None
        finally:
            with self._locks_guard:
                entry.users -= 1
                if entry.users == 0:
                    del self._locks[name]

    def _lock_path(self, name: str) -> Path:
        return self.lock_dir / f"{name}.lock"

    def _acquire_file_lock(self, name: str) -> int | None:
        """flock the key's lock file, coping with holders that delete the file on release.

        The holder unlinks the file before unlocking (so lock files do not pile up, one per
        cache key ever computed). A waiter may therefore wake up holding a lock on a file that
        is no longer in the folder; it notices (the inode under the path differs, or the path is
        gone) and tries again on the current file, so two processes never both hold the key.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: threads only
            return None
        path = self._lock_path(name)
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                self.lock_dir.mkdir(parents=True, exist_ok=True)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    current = os.stat(path)
                except FileNotFoundError:
                    current = None
                if current is not None and current.st_ino == os.fstat(fd).st_ino:
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def _release_file_lock(self, name: str, fd: int) -> None:
        # Unlink while still holding the lock: nobody can be mid-check on this inode and win.
        try:
            os.unlink(self._lock_path(name))
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)  # closing the descriptor releases the flock
