"""S3ResultStore against a fake S3 client injected at our own seam (the ``client`` argument).

The fake keeps objects in a dict and raises the same botocore exceptions the real client raises,
so these tests pin the store's own logic: key layout, multipart streaming, error mapping and the
retry policy (with a fake clock, so no test sleeps).
"""

from __future__ import annotations

import hashlib
import io
from collections import defaultdict
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ResponseStreamingError,
)

from flowpod._storage import CacheStore
from flowpod._storage.config import store_from_env
from flowpod._storage.s3 import (
    MIN_PART_SIZE,
    S3ResultStore,
    S3StoreError,
    S3StoreUnavailable,
)
from flowpod.exceptions import ResultNotFound

ENDPOINT = "http://s3.test:9000"


def client_error(code: str, status: int, operation: str = "Op") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


def connection_refused() -> EndpointConnectionError:
    return EndpointConnectionError(endpoint_url=ENDPOINT)


class FakeBody:
    """A GetObject body; optionally breaks after ``break_after`` bytes, like a dropped socket."""

    def __init__(self, data: bytes, break_after: int | None = None) -> None:
        self._stream = io.BytesIO(data)
        self._break_after = break_after
        self.closed = False

    def read(self, amt: int | None = None) -> bytes:
        if self._break_after is not None and self._stream.tell() >= self._break_after:
            raise ResponseStreamingError(error="connection reset by peer")
        if amt is not None and self._break_after is not None:
            amt = min(amt, self._break_after - self._stream.tell())
        return self._stream.read(amt)

    def close(self) -> None:
        self.closed = True


class FakeS3:
    """The subset of the boto3 S3 client the store uses, with failure injection per operation."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.uploads: dict[str, dict[int, bytes]] = {}
        self.upload_keys: dict[str, tuple[str, str]] = {}
        self.failures: dict[str, list[BaseException]] = defaultdict(list)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.break_reads_after: int | None = None
        self.lose_complete_response = False

    def _enter(self, op: str, **kwargs: Any) -> None:
        self.calls.append((op, kwargs))
        if self.failures[op]:
            raise self.failures[op].pop(0)

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> dict[str, Any]:
        self._enter("put_object", Bucket=Bucket, Key=Key, size=len(Body))
        self.objects[(Bucket, Key)] = bytes(Body)
        return {"ETag": '"etag"'}

    def _object(self, Bucket: str, Key: str) -> bytes:
        if (Bucket, Key) not in self.objects:
            raise client_error("NoSuchKey", 404, "GetObject")
        return self.objects[(Bucket, Key)]

    def get_object(self, Bucket: str, Key: str, **extra: Any) -> dict[str, Any]:
        self._enter("get_object", Bucket=Bucket, Key=Key, **extra)
        data = self._object(Bucket, Key)
        etag = '"' + hashlib.md5(data).hexdigest() + '"'
        if "IfMatch" in extra and extra["IfMatch"] != etag:
            raise client_error("PreconditionFailed", 412, "GetObject")
        start = 0
        if "Range" in extra:
            start = int(extra["Range"].removeprefix("bytes=").rstrip("-"))
        body = FakeBody(data[start:], self.break_reads_after)
        self.break_reads_after = None  # only the first body breaks
        return {"Body": body, "ETag": etag, "ContentLength": len(data) - start}

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        self._enter("head_object", Bucket=Bucket, Key=Key)
        if (Bucket, Key) not in self.objects:
            raise client_error("404", 404, "HeadObject")
        return {"ContentLength": len(self.objects[(Bucket, Key)])}

    def delete_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        self._enter("delete_object", Bucket=Bucket, Key=Key)
        self.objects.pop((Bucket, Key), None)
        return {}

    def create_multipart_upload(self, Bucket: str, Key: str) -> dict[str, Any]:
        self._enter("create_multipart_upload", Bucket=Bucket, Key=Key)
        upload_id = f"upload-{len(self.upload_keys)}"
        self.uploads[upload_id] = {}
        self.upload_keys[upload_id] = (Bucket, Key)
        return {"UploadId": upload_id}

    def upload_part(
        self, Bucket: str, Key: str, UploadId: str, PartNumber: int, Body: bytes
    ) -> dict[str, Any]:
        self._enter("upload_part", PartNumber=PartNumber, size=len(Body))
        self.uploads[UploadId][PartNumber] = bytes(Body)
        return {"ETag": f'"part-{PartNumber}"'}

    def complete_multipart_upload(
        self, Bucket: str, Key: str, UploadId: str, MultipartUpload: dict[str, Any]
    ) -> dict[str, Any]:
        self._enter("complete_multipart_upload", parts=MultipartUpload["Parts"])
        if UploadId not in self.uploads:
            raise client_error("NoSuchUpload", 404, "CompleteMultipartUpload")
        parts = self.uploads.pop(UploadId)
        numbers = [p["PartNumber"] for p in MultipartUpload["Parts"]]
        assert numbers == sorted(parts), "parts listed out of order or missing"
        self.objects[(Bucket, Key)] = b"".join(parts[n] for n in numbers)
        if self.lose_complete_response:
            self.lose_complete_response = False
            raise ConnectionClosedError(endpoint_url=ENDPOINT)
        return {}

    def abort_multipart_upload(self, Bucket: str, Key: str, UploadId: str) -> dict[str, Any]:
        self._enter("abort_multipart_upload", UploadId=UploadId)
        self.uploads.pop(UploadId, None)
        return {}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake() -> FakeS3:
    return FakeS3()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_store(fake: FakeS3, clock: FakeClock, **kwargs: Any) -> S3ResultStore:
    options: dict[str, Any] = {
        "endpoint_url": ENDPOINT, "client": fake, "sleep": clock.sleep, "clock": clock,
        "part_size": MIN_PART_SIZE,
    }
    options.update(kwargs)
    return S3ResultStore("results", "team-a/", **options)


def test_put_get_exists_delete_under_the_prefix(fake: FakeS3, clock: FakeClock) -> None:
    store = make_store(fake, clock)
    assert not store.exists("runs/a/result")
    store.put("runs/a/result", b"42")
    assert fake.objects == {("results", "team-a/runs/a/result"): b"42"}
    assert store.exists("runs/a/result")
    assert store.get("runs/a/result") == b"42"
    with store.open_read("runs/a/result") as stream:
        assert stream.read() == b"42"
    store.delete("runs/a/result")
    store.delete("runs/a/result")  # deleting a missing object is fine
    assert not store.exists("runs/a/result")
    assert clock.sleeps == []


def test_missing_key_raises_result_not_found(fake: FakeS3, clock: FakeClock) -> None:
    store = make_store(fake, clock)
    with pytest.raises(ResultNotFound, match=r"s3://results/team-a/nope at http://s3.test:9000"):
        store.get("nope")
    with pytest.raises(ResultNotFound), store.open_read("nope"):
        pass
    with pytest.raises(KeyError):  # ResultNotFound is also a KeyError
        store.get("nope")


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b"])
def test_invalid_keys_are_refused(fake: FakeS3, clock: FakeClock, key: str) -> None:
    with pytest.raises(ValueError, match="invalid result store key|non-empty"):
        make_store(fake, clock).put(key, b"x")
    assert fake.calls == []


def test_small_stream_is_one_put(fake: FakeS3, clock: FakeClock) -> None:
    store = make_store(fake, clock)
    with store.open_write("small") as stream:
        stream.write(b"a" * 10)
        stream.write(b"b" * 10)
    assert fake.ops() == ["put_object"]
    assert fake.objects[("results", "team-a/small")] == b"a" * 10 + b"b" * 10


def test_large_stream_is_a_multipart_upload_one_part_in_memory(
    fake: FakeS3, clock: FakeClock
) -> None:
    store = make_store(fake, clock)
    chunk = bytes(range(256)) * 4096  # 1 MiB
    total = 0
    digest = hashlib.sha256()
    with store.open_write("big") as stream:
        for i in range(13):  # 13 MiB -> parts of 5, 5 and 3 MiB
            piece = chunk[i:] + chunk[:i]
            stream.write(piece)
            digest.update(piece)
            total += len(piece)
    part_sizes = [kw["size"] for op, kw in fake.calls if op == "upload_part"]
    assert part_sizes == [MIN_PART_SIZE, MIN_PART_SIZE, total - 2 * MIN_PART_SIZE]
    assert fake.ops()[0] == "create_multipart_upload"
    assert fake.ops()[-1] == "complete_multipart_upload"
    stored = fake.objects[("results", "team-a/big")]
    assert hashlib.sha256(stored).hexdigest() == digest.hexdigest()
    with store.open_read("big") as stream:
        assert hashlib.sha256(stream.read()).hexdigest() == digest.hexdigest()


def test_put_of_a_large_value_goes_multipart(fake: FakeS3, clock: FakeClock) -> None:
    store = make_store(fake, clock)
    data = b"x" * (MIN_PART_SIZE + 1)
    store.put("v", data)
    assert fake.ops().count("upload_part") == 2
    assert store.get("v") == data


def test_error_inside_the_block_aborts_and_stores_nothing(fake: FakeS3, clock: FakeClock) -> None:
    store = make_store(fake, clock)
    with pytest.raises(RuntimeError, match="producer failed"):
        with store.open_write("partial") as stream:
            stream.write(b"y" * (MIN_PART_SIZE + 10))
            raise RuntimeError("producer failed")
    assert "abort_multipart_upload" in fake.ops()
    assert "complete_multipart_upload" not in fake.ops()
    assert fake.uploads == {}
    assert not store.exists("partial")


def test_failed_completion_aborts_the_upload(fake: FakeS3, clock: FakeClock) -> None:
    store = make_store(fake, clock)
    fake.failures["complete_multipart_upload"] = [client_error("AccessDenied", 403)]
    with pytest.raises(S3StoreError, match="credentials were refused"):
        store.put("k", b"w" * (MIN_PART_SIZE + 1))
    assert fake.ops()[-1] == "abort_multipart_upload"
    assert fake.uploads == {} and not store.exists("k")


def test_connection_errors_are_retried_with_backoff(fake: FakeS3, clock: FakeClock) -> None:
    store = make_store(fake, clock)
    fake.failures["put_object"] = [connection_refused(), connection_refused()]
    fake.failures["get_object"] = [client_error("ServiceUnavailable", 503)]
    store.put("k", b"v")
    assert store.get("k") == b"v"
    assert clock.sleeps == [0.25, 0.5, 0.25]


def test_parts_are_retried_individually(fake: FakeS3, clock: FakeClock) -> None:
    store = make_store(fake, clock)
    fake.failures["upload_part"] = [client_error("SlowDown", 503), connection_refused()]
    data = b"z" * (2 * MIN_PART_SIZE)
    store.put("k", data)
    assert store.get("k") == data
    assert [kw["PartNumber"] for op, kw in fake.calls if op == "upload_part"] == [1, 1, 1, 2]


def test_outage_longer_than_the_budget_is_a_clear_error(fake: FakeS3, clock: FakeClock) -> None:
    store = make_store(fake, clock, retry_budget_seconds=30)
    fake.failures["put_object"] = [connection_refused() for _ in range(100)]
    with pytest.raises(S3StoreUnavailable) as info:
        store.put("k", b"v")
    message = str(info.value)
    assert ENDPOINT in message and "'results'" in message and "team-a/k" in message
    assert "Check that the S3 server is running" in message
    assert isinstance(info.value, ConnectionError)
    assert 20 <= sum(clock.sleeps) <= 30  # used the budget, did not overrun it
    assert max(clock.sleeps) == 4.0


def test_refusals_are_not_retried(fake: FakeS3, clock: FakeClock) -> None:
    store = make_store(fake, clock)
    fake.failures["put_object"] = [client_error("InvalidAccessKeyId", 403)]
    with pytest.raises(S3StoreError, match="credentials were refused"):
        store.put("k", b"v")
    fake.failures["put_object"] = [client_error("NoSuchBucket", 404)]
    with pytest.raises(S3StoreError, match="bucket 'results' does not exist"):
        store.put("k", b"v")
    assert clock.sleeps == []


def test_lost_answer_to_complete_is_not_an_error(fake: FakeS3, clock: FakeClock) -> None:
    store = make_store(fake, clock)
    fake.lose_complete_response = True
    data = b"q" * (MIN_PART_SIZE + 5)
    store.put("k", data)  # first Complete succeeds but its answer is lost; the retry says
    assert fake.ops().count("complete_multipart_upload") == 2  # NoSuchUpload
    assert store.get("k") == data


def test_read_resumes_where_the_connection_dropped(fake: FakeS3, clock: FakeClock) -> None:
    store = make_store(fake, clock)
    data = bytes(range(256)) * 1000
    store.put("k", data)
    fake.break_reads_after = 100_000
    with store.open_read("k") as stream:
        assert stream.read() == data
    gets = [kw for op, kw in fake.calls if op == "get_object"]
    assert gets[1]["Range"] == "bytes=100000-"
    assert gets[1]["IfMatch"] == '"' + hashlib.md5(data).hexdigest() + '"'


def test_cache_store_works_on_s3_with_the_local_layout(fake: FakeS3, clock: FakeClock) -> None:
    cache = CacheStore(make_store(fake, clock))
    cache.commit("abc123", {"answer": 42}, task_key="t-1", expiration=None)
    assert ("results", "team-a/cache/abc123.json") in fake.objects
    assert ("results", "team-a/cache/abc123.value") in fake.objects
    assert cache.lookup("abc123") == (True, {"answer": 42})
    assert cache.lookup("other") == (False, None)


def test_constructor_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="bucket"):
        S3ResultStore("")
    with pytest.raises(ValueError, match="part_size"):
        S3ResultStore("b", part_size=1024)
    with pytest.raises(ValueError, match="both"):
        S3ResultStore("b", access_key_id="AKIA")


def test_store_from_env() -> None:
    assert store_from_env({}) is None
    store = store_from_env(
        {
            "FLOWPOD_S3_BUCKET": "results",
            "FLOWPOD_S3_ENDPOINT": "http://127.0.0.1:9000",
            "FLOWPOD_S3_PREFIX": "/ci/",
        }
    )
    assert store is not None
    assert (store.bucket, store.prefix, store.endpoint_url) == (
        "results", "ci", "http://127.0.0.1:9000",
    )
    assert store.object_key("x/y") == "ci/x/y"
    assert "s3://results/ci" in repr(store)


def test_real_client_is_built_lazily_with_our_config(monkeypatch: pytest.MonkeyPatch) -> None:
    store = S3ResultStore(
        "results", endpoint_url="http://127.0.0.1:1", region="us-east-1",
        access_key_id="minio", secret_access_key="minio-secret",
    )
    assert store._client is None
    client = store.client
    assert client is store.client
    config = client.meta.config
    assert config.s3 == {"addressing_style": "path"}
    assert config.retries["mode"] == "standard"
    assert client.meta.endpoint_url == "http://127.0.0.1:1"


def test_store_from_a_run_storage_spec() -> None:
    from flowpod._contract.pod_settings import StorageSpec

    spec = StorageSpec.model_validate(
        {"bucket": "results", "prefix": "team-a", "endpoint": ENDPOINT,
         "credentialsSecret": {"name": "s3-creds"}}
    )
    store = S3ResultStore.from_storage(spec, access_key_id="id", secret_access_key="secret")
    assert (store.bucket, store.prefix, store.endpoint_url) == ("results", "team-a", ENDPOINT)
    assert store.client.meta.endpoint_url == ENDPOINT


def test_importing_the_store_does_not_import_boto3() -> None:
    import subprocess
    import sys

    code = (
        "import sys, flowpod._storage.s3; "
        "print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
