"""S3ResultStore against the test cluster's real MinIO: the basic operations, a 20 MB multipart
stream in bounded memory, the cache on top of S3, and riding out a 5 s outage of the server."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flowpod._storage import CacheStore, LocalResultStore
from flowpod._storage.config import store_from_env
from flowpod._storage.s3 import MIN_PART_SIZE, S3ResultStore
from flowpod.exceptions import ResultNotFound

from .harness import Cluster, S3Settings, wait_for

MiB = 1024 * 1024
OUTAGE_SECONDS = 5.0


@pytest.fixture
def prefix() -> str:
    return f"tests/{uuid.uuid4().hex[:12]}"


def make_store(s3: S3Settings, prefix: str, endpoint: str | None = None, **kwargs: Any) -> Any:
    return S3ResultStore(
        s3.bucket, prefix, endpoint_url=endpoint or s3.endpoint, region=s3.region,
        access_key_id=s3.access_key_id, secret_access_key=s3.secret_access_key, **kwargs,
    )


def chunks(count: int, size: int = MiB) -> Iterator[bytes]:
    """``count`` distinct, reproducible chunks (cheap to make, impossible to compress away)."""
    seed = hashlib.sha256(b"flowpod").digest()
    for i in range(count):
        block = hashlib.sha256(seed + i.to_bytes(4, "big")).digest()
        yield (block * (size // len(block) + 1))[:size]


def test_put_get_exists_delete_from_env(
    s3: S3Settings, prefix: str, monkeypatch: pytest.MonkeyPatch, s3_client: Any
) -> None:
    monkeypatch.setenv("FLOWPOD_S3_PREFIX", prefix)
    store = store_from_env()  # FLOWPOD_S3_BUCKET/ENDPOINT and AWS_* come from the cluster's env
    assert store is not None and store.endpoint_url == s3.endpoint

    assert not store.exists("runs/ns/fr/tr/result")
    store.put("runs/ns/fr/tr/result", b"forty-two")
    assert store.exists("runs/ns/fr/tr/result")
    assert store.get("runs/ns/fr/tr/result") == b"forty-two"
    # Objects live under the prefix, exactly at the key.
    head = s3_client.head_object(Bucket=s3.bucket, Key=f"{prefix}/runs/ns/fr/tr/result")
    assert head["ContentLength"] == len(b"forty-two")

    store.delete("runs/ns/fr/tr/result")
    assert not store.exists("runs/ns/fr/tr/result")
    with pytest.raises(ResultNotFound):
        store.get("runs/ns/fr/tr/result")
    with pytest.raises(ResultNotFound), store.open_read("runs/ns/fr/tr/result"):
        pass
    store.delete("runs/ns/fr/tr/result")  # deleting again is not an error


def test_20_mb_stream_round_trips_in_bounded_memory(
    s3: S3Settings, prefix: str, s3_client: Any
) -> None:
    store = make_store(s3, prefix, part_size=MIN_PART_SIZE)
    # Multipart uploads go through botocore, whose client loads its service models once, on
    # first use (small objects go through the store's own client): a small multipart warm-up
    # keeps that one-time load out of the stream's measured memory.
    with store.open_write("warm-up") as warm:
        warm.write(b"w" * (MIN_PART_SIZE + 1))
    written = hashlib.sha256()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        with store.open_write("big/object.bin") as stream:
            for chunk in chunks(20):
                stream.write(chunk)
                written.update(chunk)
                del chunk
        write_peak = tracemalloc.get_traced_memory()[1] - baseline

        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        read = hashlib.sha256()
        size = 0
        with store.open_read("big/object.bin") as stream:
            while block := stream.read(MiB):
                read.update(block)
                size += len(block)
        read_peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()

    assert size == 20 * MiB
    assert read.hexdigest() == written.hexdigest()
    head = s3_client.head_object(Bucket=s3.bucket, Key=f"{prefix}/big/object.bin")
    assert head["ETag"].strip('"').endswith("-4")  # uploaded as 4 parts of 5 MiB
    # One part buffered plus the copy being sent (measured: 10 MiB), never the 20 MiB object;
    # reading holds a few 1 MiB buffers (measured: 4 MiB).
    assert write_peak < 2.5 * MIN_PART_SIZE, f"write peak {write_peak / MiB:.1f} MiB"
    assert read_peak < 6 * MiB, f"read peak {read_peak / MiB:.1f} MiB"


def test_cache_store_on_s3_uses_the_local_layout(
    s3: S3Settings, prefix: str, s3_client: Any, tmp_path: Path
) -> None:
    writer = CacheStore(make_store(s3, prefix), lock_dir=tmp_path / "locks")
    record = writer.commit(
        "answer-key", {"answer": 42}, task_key="t-1", expiration=timedelta(minutes=5)
    )

    # Another process (a fresh store, nothing shared but the bucket) finds the same record.
    reader = CacheStore(make_store(s3, prefix), lock_dir=tmp_path / "locks")
    assert reader.lookup("answer-key") == (True, {"answer": 42})
    later = datetime.now(UTC) + timedelta(minutes=10)
    assert reader.lookup("answer-key", now=later) == (False, None)  # expired
    assert reader.lookup("other-key") == (False, None)

    # The same keys a local CacheStore uses, under the prefix.
    local = CacheStore(LocalResultStore(tmp_path / "local"))
    local.commit("answer-key", {"answer": 42}, task_key="t-1", expiration=None)
    local_keys = sorted(
        str(p.relative_to(tmp_path / "local")) for p in (tmp_path / "local").rglob("*")
        if p.is_file()
    )
    listed = s3_client.list_objects_v2(Bucket=s3.bucket, Prefix=f"{prefix}/")
    s3_keys = sorted(obj["Key"].removeprefix(f"{prefix}/") for obj in listed["Contents"])
    assert s3_keys == local_keys == ["cache/answer-key.json", "cache/answer-key.value"]
    assert record.result_key == "cache/answer-key.value"


# -- outages ------------------------------------------------------------------------------------


def minio_pid(cluster: Cluster) -> int:
    """The MinIO process scripts/cluster started (checked against its recorded start time)."""
    pid_text, start = (cluster.state_dir / "pids" / "minio.pid").read_text().split()
    pid = int(pid_text)
    stat = Path(f"/proc/{pid}/stat").read_text()
    assert stat.rsplit(")", 1)[1].split()[19] == start, "minio.pid names another process"
    assert b"minio" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return pid


def test_put_during_a_5_s_server_stall_succeeds_once_it_is_back(
    cluster: Cluster, s3: S3Settings, prefix: str
) -> None:
    # Short timeouts so requests to the frozen server fail (and are retried) instead of waiting.
    store = make_store(s3, prefix, connect_timeout=1, read_timeout=1)
    store.put("warm-up", b"ok")  # the client and its connection pool exist before the outage
    pid = minio_pid(cluster)
    result: dict[str, Any] = {}

    def put_during_outage() -> None:
        started = time.monotonic()
        try:
            store.put("written-during-outage", b"survived")
        except BaseException as exc:  # reported by the assertion below
            result["error"] = exc
        result["seconds"] = time.monotonic() - started

    os.kill(pid, signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        worker = threading.Thread(target=put_during_outage)
        worker.start()
        time.sleep(OUTAGE_SECONDS)  # the outage itself: the server stays frozen this long
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed_at = time.monotonic()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the put did not finish within 60 s of the server's return"
    assert "error" not in result, f"the put failed: {result.get('error')!r}"
    assert resumed_at - stopped_at >= OUTAGE_SECONDS
    assert result["seconds"] >= OUTAGE_SECONDS - 0.5  # it really waited out the outage
    assert store.get("written-during-outage") == b"survived"


class _Proxy:
    """A TCP proxy in front of MinIO that can refuse connections for a while (a down server)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._serving = threading.Event()
        self._start_accepting()

    def _start_accepting(self) -> None:
        self._serving.set()
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed: the outage began
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._sockets |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def go_down(self) -> None:
        """Close the listening socket and reset every open connection."""
        # shutdown() wakes the thread blocked in accept(); close() alone would leave it accepting.
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._sockets.clear()

    def come_back(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        self._start_accepting()

    def close(self) -> None:
        self.go_down()


@contextmanager
def proxy_to(s3: S3Settings) -> Iterator[_Proxy]:
    upstream_port = int(s3.endpoint.rsplit(":", 1)[1])
    proxy = _Proxy(upstream_port)
    try:
        yield proxy
    finally:
        proxy.close()


def test_put_while_the_server_is_down_for_5_s_succeeds_once_it_is_back(
    s3: S3Settings, prefix: str
) -> None:
    with proxy_to(s3) as proxy:
        store = make_store(s3, prefix, endpoint=f"http://127.0.0.1:{proxy.port}")
        store.put("warm-up", b"ok")
        proxy.go_down()
        result: dict[str, Any] = {}

        def put_during_outage() -> None:
            try:
                store.put("written-while-down", b"survived")
            except BaseException as exc:  # reported by the assertion below
                result["error"] = exc
            result["done_at"] = time.monotonic()

        down_at = time.monotonic()
        worker = threading.Thread(target=put_during_outage)
        worker.start()
        time.sleep(OUTAGE_SECONDS)  # the outage itself: connections are refused this long
        assert worker.is_alive(), f"the put ended during the outage: {result!r}"
        proxy.come_back()
        worker.join(timeout=60)
        assert not worker.is_alive(), "the put did not finish within 60 s of the server's return"
        assert "error" not in result, f"the put failed: {result.get('error')!r}"
        assert result["done_at"] - down_at >= OUTAGE_SECONDS
        assert wait_for(lambda: store.get("written-while-down"), 10, "the object") == b"survived"


def test_an_outage_longer_than_the_budget_names_endpoint_and_bucket(
    s3: S3Settings, prefix: str
) -> None:
    with proxy_to(s3) as proxy:
        endpoint = f"http://127.0.0.1:{proxy.port}"
        store = make_store(s3, prefix, endpoint=endpoint, retry_budget_seconds=2)
        proxy.go_down()
        from flowpod._storage.s3 import S3StoreUnavailable

        with pytest.raises(S3StoreUnavailable) as info:
            store.put("never", b"x")
    message = str(info.value)
    assert endpoint in message and repr(s3.bucket) in message
    assert "Check that the S3 server is running" in message


def test_ensure_bucket_creates_a_missing_bucket_once(s3: S3Settings, s3_client: Any) -> None:
    bucket = f"flowpod-ensure-{uuid.uuid4().hex[:12]}"
    store = S3ResultStore(
        bucket, "tests", endpoint_url=s3.endpoint, region=s3.region,
        access_key_id=s3.access_key_id, secret_access_key=s3.secret_access_key,
    )
    try:
        assert store.ensure_bucket() is True
        s3_client.head_bucket(Bucket=bucket)  # really there, seen by another client
        assert store.ensure_bucket() is False
        store.put("runs/ns/fr/result", b"in the new bucket")
        assert store.get("runs/ns/fr/result") == b"in the new bucket"
    finally:
        remove_bucket(s3_client, bucket)


def remove_bucket(client: Any, bucket: str) -> None:
    from botocore.exceptions import ClientError

    try:
        listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    except ClientError:
        return  # never created: nothing to clean up (and the test's own failure stands)
    for obj in listed:
        client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)
