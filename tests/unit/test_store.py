"""The result store, serializers, cache records and the per-key compute lock."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flowpod._contract.keys import validate_key
from flowpod._contract.records import CacheRecord
from flowpod._storage import (
    CacheStore,
    JSONSerializer,
    LocalResultStore,
    MemoryResultStore,
    PickleSerializer,
    ResultStore,
    get_serializer,
)
from flowpod._storage.config import default_cache_store
from flowpod.exceptions import ConfigurationError, ResultNotFound, SerializationError


@pytest.fixture
def store(tmp_path: Path) -> LocalResultStore:
    return LocalResultStore(tmp_path / "store")


@pytest.fixture(params=["local", "memory"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> ResultStore:
    """Every backend must pass the same contract tests."""
    if request.param == "local":
        return LocalResultStore(tmp_path / "store")
    return MemoryResultStore()


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _keys(store: ResultStore) -> list[str]:
    """Every object in the store (for a folder: every file, temp files included)."""
    if isinstance(store, LocalResultStore):
        return _files(store.root) if store.root.exists() else []
    assert isinstance(store, MemoryResultStore)
    return sorted(store.objects)


# --- LocalResultStore ----------------------------------------------------------------------------


def test_put_get_exists_delete(any_store: ResultStore) -> None:
    assert not any_store.exists("a/b/c.bin")
    any_store.put("a/b/c.bin", b"payload")
    assert any_store.exists("a/b/c.bin")
    assert any_store.get("a/b/c.bin") == b"payload"
    any_store.put("a/b/c.bin", b"replaced")
    assert any_store.get("a/b/c.bin") == b"replaced"
    any_store.delete("a/b/c.bin")
    assert not any_store.exists("a/b/c.bin")
    any_store.delete("a/b/c.bin")  # deleting a missing object is fine
    assert _keys(any_store) == []


def test_missing_key_raises_result_not_found(any_store: ResultStore) -> None:
    with pytest.raises(ResultNotFound, match="nothing"):
        any_store.get("nothing")
    with pytest.raises(ResultNotFound):
        with any_store.open_read("nothing/deeper"):
            pass
    with pytest.raises(KeyError):  # ResultNotFound is also a KeyError
        any_store.get("nothing")


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("", "non-empty"),
        ("/etc/passwd", "absolute"),
        ("C:/x", "absolute"),
        ("../escape", "'..'"),
        ("a/../../b", "'..'"),
        ("a/./b", "'..'"),
        ("a//b", "empty segment"),
        ("a/", "empty segment"),
        ("a\\b", "backslash"),
        ("a\x00b", "NUL"),
    ],
)
def test_bad_keys_are_rejected_clearly(any_store: ResultStore, key: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="invalid result store key|non-empty") as info:
        any_store.put(key, b"x")
    assert fragment in str(info.value)
    assert _keys(any_store) == []


def test_good_keys_pass_validation() -> None:
    for key in ("a", "a/b.c", "cache/~abc.json", "runs/ns/flow/task/outcome-1", ".hidden"):
        assert validate_key(key) == key


def test_failed_write_publishes_nothing_and_keeps_the_old_object(any_store: ResultStore) -> None:
    any_store.put("obj", b"old")
    with pytest.raises(RuntimeError, match="midway"):
        with any_store.open_write("obj") as stream:
            stream.write(b"new partial data")
            raise RuntimeError("midway")
    assert any_store.get("obj") == b"old"
    assert _keys(any_store) == ["obj"]  # the temp file is gone too


class _ChunkSource(io.RawIOBase):
    """A readable stream of `total` bytes that records the biggest read it was asked for."""

    def __init__(self, total: int) -> None:
        self.remaining = total
        self.largest_read = 0
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), self.remaining)
        self.largest_read = max(self.largest_read, len(buffer))
        chunk = os.urandom(size)
        buffer[:size] = chunk
        self.digest.update(chunk)
        self.remaining -= size
        return size

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            raise AssertionError("the whole object was requested at once")
        buffer = bytearray(size)
        n = self.readinto(buffer)
        return bytes(buffer[:n])


class _ChunkSink(io.RawIOBase):
    def __init__(self) -> None:
        self.largest_write = 0
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.largest_write = max(self.largest_write, len(data))
        self.digest.update(data)
        return len(data)


def test_streaming_moves_chunks_not_whole_objects(any_store: ResultStore) -> None:
    chunk = 64 * 1024
    total = 5 * chunk + 123
    source = _ChunkSource(total)
    any_store.put_stream("big/object", source, chunk_size=chunk)  # type: ignore[arg-type]
    assert source.largest_read <= chunk
    assert len(any_store.get("big/object")) == total

    sink = _ChunkSink()
    any_store.get_stream("big/object", sink, chunk_size=chunk)  # type: ignore[arg-type]
    assert sink.largest_write <= chunk
    assert sink.digest.hexdigest() == source.digest.hexdigest()

    with any_store.open_read("big/object") as stream:
        assert len(stream.read(10)) == 10  # a real stream, read piecemeal


# --- serializers ---------------------------------------------------------------------------------


def test_serializers_round_trip() -> None:
    pickle = get_serializer("pickle")
    assert isinstance(pickle, PickleSerializer) and pickle.name == "pickle"
    square = pickle.loads(pickle.dumps(lambda x: x * x))
    assert square(3) == 9
    as_json = get_serializer("json")
    assert isinstance(as_json, JSONSerializer) and as_json.name == "json"
    assert as_json.loads(as_json.dumps({"a": [1, "b", None]})) == {"a": [1, "b", None]}
    with pytest.raises(ConfigurationError, match="'pickle'.*'json'"):
        get_serializer("yaml")


def test_serialization_errors_say_how_to_fix() -> None:
    with pytest.raises(SerializationError) as info:
        get_serializer("json").dumps({1, 2})
    message = str(info.value)
    assert "'json'" in message and "set" in message and "result_serializer='pickle'" in message
    with pytest.raises(SerializationError, match="result_serializer='json'.*persist_result=False"):
        get_serializer("pickle").dumps(threading.Lock())
    with pytest.raises(SerializationError, match="cannot load"):
        get_serializer("pickle").loads(b"not a pickle")
    with pytest.raises(SerializationError, match="not valid JSON"):
        get_serializer("json").loads(b"{nope")


# --- cache records and the cache store -----------------------------------------------------------


def test_cache_record_json_round_trip_and_expiry() -> None:
    created = datetime(2025, 1, 1, tzinfo=UTC)
    expires = created + timedelta(days=1)
    record = CacheRecord("key", "task-1", "cache/key.value", "json", created, expires)
    assert CacheRecord.from_json(record.to_json()) == record
    assert not record.is_expired(created + timedelta(hours=23))
    assert record.is_expired(created + timedelta(days=1))
    forever = CacheRecord("key", "t", "r", "pickle", created, None)
    assert CacheRecord.from_json(forever.to_json()) == forever
    assert not forever.is_expired(datetime(9999, 1, 1, tzinfo=UTC))
    with pytest.raises(SerializationError, match="malformed"):
        CacheRecord.from_json(b'{"cache_key": "x"}')


def test_commit_then_lookup(any_store: ResultStore) -> None:
    cache = CacheStore(any_store)
    assert cache.lookup("k") == (False, None)
    record = cache.commit("k", {"answer": 42}, task_key="t-1", expiration=None)
    assert cache.lookup("k") == (True, {"answer": 42})
    assert record.result_key == "cache/k.value"
    assert _keys(any_store) == ["cache/k.json", "cache/k.value"]
    assert CacheRecord.from_json(any_store.get("cache/k.json")) == record


def test_a_hit_survives_a_new_cache_store_instance(store: LocalResultStore) -> None:
    CacheStore(store).commit("k", [1, 2], task_key="t", expiration=None, serializer="json")
    assert CacheStore(LocalResultStore(store.root)).lookup("k") == (True, [1, 2])


def test_a_cached_none_is_a_hit(any_store: ResultStore) -> None:
    cache = CacheStore(any_store)
    cache.commit("k", None, task_key="t", expiration=None)
    assert cache.lookup("k") == (True, None)


def test_expiration(any_store: ResultStore) -> None:
    cache = CacheStore(any_store)
    record = cache.commit("k", "v", task_key="t", expiration=timedelta(minutes=5))
    assert record.expires is not None
    assert record.expires - record.created == timedelta(minutes=5)
    assert cache.lookup("k", now=record.created + timedelta(minutes=4)) == (True, "v")
    assert cache.lookup("k", now=record.created + timedelta(minutes=5)) == (False, None)
    assert cache.lookup("k") == (True, "v")  # real "now" is well before expiry


def test_unsafe_cache_keys_map_to_safe_names(any_store: ResultStore) -> None:
    cache = CacheStore(any_store)
    for key in ("../../etc/passwd", "with space", "x" * 500, "a/b", "..", "~tilde"):
        cache.commit(key, key, task_key="t", expiration=None)
        assert cache.lookup(key) == (True, key)
    names = [key.removeprefix("cache/") for key in _keys(any_store)]
    assert all("/" not in name and not name.startswith(".") for name in names)
    if isinstance(any_store, LocalResultStore):
        root = any_store.root.resolve()
        assert all(p.resolve().is_relative_to(root) for p in any_store.root.rglob("*"))


def test_unserialisable_value_writes_nothing_and_keeps_old_record(any_store: ResultStore) -> None:
    cache = CacheStore(any_store)
    old = cache.commit("k", "old value", task_key="t", expiration=None)
    before = {key: any_store.get(key) for key in _keys(any_store)}
    with pytest.raises(SerializationError, match="lock"):
        cache.commit("k", threading.Lock(), task_key="t", expiration=None)
    with pytest.raises(SerializationError):
        cache.commit("fresh", {1, 2}, task_key="t", expiration=None, serializer="json")
    after = {key: any_store.get(key) for key in _keys(any_store)}
    assert after == before
    assert _keys(any_store) == ["cache/k.json", "cache/k.value"]
    assert cache.read_record("k") == old
    assert cache.lookup("k") == (True, "old value")


def test_broken_entries_are_misses(any_store: ResultStore) -> None:
    cache = CacheStore(any_store)
    cache.commit("k", 1, task_key="t", expiration=None)
    any_store.put("cache/k.value", b"garbage")
    assert cache.lookup("k") == (False, None)
    any_store.put("cache/k.json", b"{not json")
    assert cache.lookup("k") == (False, None)
    cache.commit("k", 2, task_key="t", expiration=None)  # a new commit repairs it
    assert cache.lookup("k") == (True, 2)


def test_default_cache_store_lives_in_the_home(flowpod_home: Path) -> None:
    cache = default_cache_store()
    assert cache is default_cache_store()
    assert isinstance(cache.store, LocalResultStore)
    assert cache.store.root == flowpod_home / "storage"
    cache.commit("k", 1, task_key="t", expiration=None)
    assert (flowpod_home / "storage" / "cache" / "k.json").is_file()


# --- the compute lock ----------------------------------------------------------------------------


def _expensive(seed: str) -> str:
    # Real work (not a sleep) so that, without the lock, other runs would get past their lookup
    # while this one is still computing.
    digest = seed.encode()
    for _ in range(20000):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


def _lock_lookup_compute_commit(cache: CacheStore, key: str, counter_file: Path) -> Any:
    with cache.lock(key):
        hit, value = cache.lookup(key)
        if hit:
            return value
        with open(counter_file, "a") as counter:  # one line per computation, in any process
            counter.write("computed\n")
        value = _expensive(key)
        cache.commit(key, value, task_key="t", expiration=None)
        return value


def test_concurrent_threads_compute_a_key_once(any_store: ResultStore, tmp_path: Path) -> None:
    cache = CacheStore(any_store)
    counter = tmp_path / "counter"
    counter.touch()
    n = 8
    start = threading.Barrier(n)
    results: list[Any] = [None] * n

    def worker(i: int) -> None:
        start.wait(timeout=30)
        results[i] = _lock_lookup_compute_commit(cache, "shared-key", counter)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert counter.read_text().count("computed") == 1
    assert results == [_expensive("shared-key")] * n
    assert cache._locks == {}  # per-key locks are dropped once nobody holds or waits


def _process_worker(root: str, counter: str, barrier: Any, out: Any, index: int) -> None:
    cache = CacheStore(LocalResultStore(Path(root)))
    barrier.wait(timeout=60)
    out[index] = 1 if _lock_lookup_compute_commit(cache, "shared-key", Path(counter)) else 0


def test_concurrent_processes_compute_a_key_once(store: LocalResultStore, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.touch()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    out = context.Array("i", 2)
    processes = [
        context.Process(
            target=_process_worker, args=(str(store.root), str(counter), barrier, out, i)
        )
        for i in range(2)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    assert counter.read_text().count("computed") == 1
    assert [out[0], out[1]] == [1, 1]
    assert CacheStore(store).lookup("shared-key") == (True, _expensive("shared-key"))


def test_lock_is_reentrant_in_one_thread(store: LocalResultStore) -> None:
    cache = CacheStore(store)
    with cache.lock("k"):
        with cache.lock("k"):  # a nested run of the same key must not deadlock
            cache.commit("k", 1, task_key="t", expiration=None)
        assert cache._lock_path("k").exists()  # held: the file is there
    assert cache._locks == {}
    assert not cache._lock_path("k").exists()  # released: cleaned up


def test_lock_excludes_another_process_while_held(store: LocalResultStore) -> None:
    cache = CacheStore(store)
    context = multiprocessing.get_context("spawn")
    with cache.lock("held"):
        probe = context.Process(target=_try_flock, args=(str(cache.lock_dir), "held"))
        probe.start()
        probe.join(timeout=60)
        assert probe.exitcode == 3  # the other process found the key locked
    probe = context.Process(target=_try_flock, args=(str(cache.lock_dir), "held"))
    probe.start()
    probe.join(timeout=60)
    assert probe.exitcode == 0  # released on exit


def _increment_under_lock(lock_dir: str, counter: str, rounds: int, barrier: Any) -> None:
    cache = CacheStore(MemoryResultStore(), lock_dir=Path(lock_dir))
    barrier.wait(timeout=60)
    for _ in range(rounds):
        with cache.lock("contended"):
            # A read-modify-write that loses updates unless the holders really exclude each other.
            value = int(Path(counter).read_text() or "0")
            Path(counter).write_text(str(value + 1))


def test_lock_files_are_removed_and_exclusion_holds_under_contention(tmp_path: Path) -> None:
    lock_dir = tmp_path / "locks"
    counter = tmp_path / "counter"
    counter.write_text("0")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    rounds = 150
    workers = [
        context.Process(
            target=_increment_under_lock, args=(str(lock_dir), str(counter), rounds, barrier)
        )
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert counter.read_text() == str(3 * rounds)
    assert list(lock_dir.iterdir()) == []  # no lock file left behind per key


def _try_flock(lock_dir: str, name: str) -> None:
    import fcntl

    fd = os.open(os.path.join(lock_dir, f"{name}.lock"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os._exit(3)
    os._exit(0)


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    before = threading.active_count()
    yield
    assert threading.active_count() <= before


def test_a_cache_that_never_locks_needs_no_lock_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    import flowpod._common.settings as settings

    def no_settings() -> None:
        raise AssertionError("the lock folder was looked up")

    monkeypatch.setattr(settings, "get_settings", no_settings)
    cache = CacheStore(MemoryResultStore())
    cache.commit("k", 1, task_key="t", expiration=None)
    assert cache.read_record("k") is not None and cache.lookup("k") == (True, 1)


def test_storage_config_converts_both_ways() -> None:
    from flowpod._storage import StorageConfig

    env = {"FLOWPOD_S3_BUCKET": "results", "FLOWPOD_S3_PREFIX": "team",
           "FLOWPOD_S3_ENDPOINT": "http://s3:9000"}
    config = StorageConfig.from_env(env)
    assert config == ("results", "team", "http://s3:9000", None)
    assert config is not None and config.to_env() == env
    assert StorageConfig.from_spec(config.to_spec()) == config
    assert StorageConfig.from_env({}) is None
    store = config.to_store()
    assert (store.bucket, store.prefix, store.endpoint_url) == ("results", "team", "http://s3:9000")
