"""Where results and cache records live: a key -> bytes store, serializers, and the cache on top.

``ResultStore`` is deliberately small (four abstract methods: ``open_read``, ``open_write``,
``exists``, ``delete``) so that an S3 backend only has to map streaming reads onto GetObject and
streaming writes onto a multipart upload; ``put``/``get`` and the chunked copies are built on
those. ``LocalResultStore`` is the embedded default: a folder, one file per key, every write
atomic (a temp file in the same folder, then ``os.replace``), so readers never see half an
object. ``MemoryResultStore`` is a dict, for tests.

``CacheStore`` keeps cache records under ``cache/<name>.json`` next to the serialised value
``cache/<name>.value`` (``<name>`` is the cache key itself when it is a safe file name, else
``~<sha256 of the key>``) — the same layout in a folder and in a bucket, so a key computed
anywhere finds the same record. ``CacheStore.lock`` serialises concurrent runs of one cache key:
a per-key re-entrant lock for threads of this process plus ``fcntl.flock`` on
``<lock_dir>/<name>.lock`` for other processes on the machine (removed again on release).
Processes on different machines sharing a bucket are not serialised by it.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from flowpod._contract.keys import cache_name, cache_record_key, cache_value_key, validate_key
from flowpod._contract.records import CacheRecord
from flowpod.exceptions import ConfigurationError, ResultNotFound, SerializationError

__all__ = [
    "CHUNK_SIZE",
    "CacheStore",
    "JSONSerializer",
    "LocalResultStore",
    "MemoryResultStore",
    "PickleSerializer",
    "ResultStore",
    "Serializer",
    "default_cache_store",
    "get_serializer",
]

CHUNK_SIZE = 1024 * 1024
"""Streaming copies move at most this many bytes at a time."""


class ResultStore(ABC):
    """A key -> bytes store. Keys are '/'-separated relative paths (see ``validate_key``)."""

    @abstractmethod
    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A readable stream of the object; raises ResultNotFound when there is none."""

    @abstractmethod
    def open_write(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A writable stream; the object appears (atomically) only if the block exits cleanly."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""

    def put(self, key: str, data: bytes) -> None:
        with self.open_write(key) as stream:
            stream.write(data)

    def get(self, key: str) -> bytes:
        with self.open_read(key) as stream:
            return stream.read()

    def put_stream(self, key: str, source: BinaryIO, chunk_size: int = CHUNK_SIZE) -> None:
        """Store everything ``source`` yields, ``chunk_size`` bytes at a time."""
        with self.open_write(key) as stream:
            shutil.copyfileobj(source, stream, chunk_size)

    def get_stream(self, key: str, target: BinaryIO, chunk_size: int = CHUNK_SIZE) -> None:
        """Copy the object into ``target``, ``chunk_size`` bytes at a time."""
        with self.open_read(key) as stream:
            shutil.copyfileobj(stream, target, chunk_size)


_temp_counter = itertools.count()


class LocalResultStore(ResultStore):
    """A folder on the local disk; one file per key."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"LocalResultStore({str(self.root)!r})"

    def path_for(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _missing(self, key: str) -> ResultNotFound:
        return ResultNotFound(f"no object stored under {key!r} in {self.root}")

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        try:
            stream = open(self.path_for(key), "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise self._missing(key) from None
        with stream:
            yield stream

    def _create_temp(self, path: Path) -> tuple[int, str]:
        """A new temp file next to ``path`` (same folder: os.replace is then an atomic rename).

        Named by process, thread and a counter rather than tempfile.mkstemp: unique all the
        same, and it saves a third of the cost of a small write.
        """
        tmp = f"{path.parent}/.{path.name[:40]}.{os.getpid()}.{threading.get_ident()}."
        tmp += f"{next(_temp_counter)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        try:
            return os.open(tmp, flags, 0o644), tmp
        except FileNotFoundError:  # first object in this folder
            path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(tmp, flags, 0o644), tmp

    @contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        path = self.path_for(key)
        fd, tmp = self._create_temp(path)
        try:
            with os.fdopen(fd, "wb") as stream:
                yield stream
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put(self, key: str, data: bytes) -> None:
        # The common small write without a buffered stream object around it.
        path = self.path_for(key)
        fd, tmp = self._create_temp(path)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self.path_for(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise self._missing(key) from None

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def delete(self, key: str) -> None:
        self.path_for(key).unlink(missing_ok=True)


class MemoryResultStore(ResultStore):
    """A dict in this process: for tests, and to keep the interface honest about what it needs."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self._guard = threading.Lock()

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        import io

        with self._guard:
            data = self.objects.get(validate_key(key))
        if data is None:
            raise ResultNotFound(f"no object stored under {key!r} in memory")
        with io.BytesIO(data) as stream:
            yield stream

    @contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        import io

        validate_key(key)
        with io.BytesIO() as stream:
            yield stream
            data = stream.getvalue()
        with self._guard:
            self.objects[key] = data

    def exists(self, key: str) -> bool:
        with self._guard:
            return validate_key(key) in self.objects

    def delete(self, key: str) -> None:
        with self._guard:
            self.objects.pop(validate_key(key), None)


# --- serializers -------------------------------------------------------------------------------


class Serializer(Protocol):
    name: str

    def dumps(self, obj: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


def _dump_error(serializer: str, obj: Any, exc: BaseException) -> SerializationError:
    other = "json" if serializer == "pickle" else "pickle"
    return SerializationError(
        f"the {serializer!r} serializer cannot serialise a value of type "
        f"{type(obj).__qualname__} ({type(exc).__name__}: {exc}). Fix: return a value it "
        f"supports, choose result_serializer={other!r}, or set persist_result=False (and no "
        f"cache policy) so the result is not stored"
    )


class PickleSerializer:
    """cloudpickle: any Python value, including lambdas and classes defined in __main__."""

    name = "pickle"

    def dumps(self, obj: Any) -> bytes:
        import cloudpickle  # lazy: ~10 ms, and only runs that persist results need it

        try:
            data: bytes = cloudpickle.dumps(obj, protocol=5)
        except Exception as exc:
            raise _dump_error(self.name, obj, exc) from exc
        return data

    def loads(self, data: bytes) -> Any:
        import pickle

        try:
            return pickle.loads(data)
        except Exception as exc:
            raise SerializationError(
                f"cannot load a pickled result ({type(exc).__name__}: {exc}); the code that "
                "defined its type may have changed or be missing from this environment"
            ) from exc


class JSONSerializer:
    """Plain JSON: portable and readable, for dicts, lists, strings, numbers, booleans, None."""

    name = "json"

    def dumps(self, obj: Any) -> bytes:
        try:
            return json.dumps(obj, allow_nan=True).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            raise _dump_error(self.name, obj, exc) from exc

    def loads(self, data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError as exc:
            raise SerializationError(f"stored result is not valid JSON: {exc}") from exc


_SERIALIZERS: dict[str, Serializer] = {
    "pickle": PickleSerializer(),
    "cloudpickle": PickleSerializer(),
    "json": JSONSerializer(),
}


def get_serializer(name: str) -> Serializer:
    """The serializer called ``name`` ("pickle" or "json")."""
    try:
        return _SERIALIZERS[name.lower() if isinstance(name, str) else name]
    except (KeyError, TypeError):
        raise ConfigurationError(
            f"unknown result serializer {name!r}; use 'pickle' (any Python value, the default) "
            "or 'json'"
        ) from None


# --- cache records -----------------------------------------------------------------------------


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
        if lock_dir is None:
            if isinstance(store, LocalResultStore):
                lock_dir = store.root / "locks"
            else:
                from flowpod._common.settings import get_settings

                lock_dir = get_settings().home / "locks"
        self.lock_dir = Path(lock_dir)
        self._locks: dict[str, _KeyLock] = {}
        self._locks_guard = threading.Lock()

    def __repr__(self) -> str:
        return f"CacheStore({self.store!r})"

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


_default_stores: dict[tuple[Path, str, str, str], CacheStore] = {}
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
    env = os.environ
    bucket = env.get("FLOWPOD_S3_BUCKET", "").strip()
    where = (home, bucket, env.get("FLOWPOD_S3_PREFIX", ""), env.get("FLOWPOD_S3_ENDPOINT", ""))
    store = _default_stores.get(where)
    if store is None:
        with _default_guard:
            store = _default_stores.get(where)
            if store is None:
                backend: ResultStore
                if bucket:
                    from flowpod._storage.s3 import store_from_env

                    s3 = store_from_env()
                    assert s3 is not None  # the bucket is set
                    backend = s3
                else:
                    backend = LocalResultStore(home / "storage")
                store = _default_stores[where] = CacheStore(backend, lock_dir=home / "locks")
    return store
