"""Creating the operator's default bucket (``FLOWPOD_S3_CREATE_BUCKET``) without an S3 server.

``S3ResultStore.ensure_bucket`` runs against a fake client injected at the store's ``client``
seam (raising the botocore errors the real client raises); the operator's retry loop
(``ensure_bucket_until_done``) and its background thread (``start_bucket_creator``) run against
a fake store with the sleep injected, so the backoff schedule is checked without waiting.
"""

from __future__ import annotations

import logging
import threading
from itertools import islice
from typing import Any

import pytest
from _engine_support import capture_logs
from botocore.exceptions import ClientError, EndpointConnectionError

from flowpod._storage import StorageConfig
from flowpod._storage.s3 import S3ResultStore, S3StoreError, S3StoreUnavailable
from flowpod_operator.settings import OperatorConfig, StorageDefaults
from flowpod_operator.store import (
    bucket_backoff,
    ensure_bucket_until_done,
    start_bucket_creator,
)

ENDPOINT = "http://s3.test:9000"


def client_error(code: str, status: int, operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


class FakeBuckets:
    """HeadBucket/CreateBucket of a boto3 S3 client, with an error queue per operation."""

    def __init__(self, *existing: str) -> None:
        self.buckets = set(existing)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.failures: dict[str, list[BaseException]] = {"head_bucket": [], "create_bucket": []}

    def head_bucket(self, Bucket: str) -> dict[str, Any]:
        self.calls.append(("head_bucket", {"Bucket": Bucket}))
        if self.failures["head_bucket"]:
            raise self.failures["head_bucket"].pop(0)
        if Bucket not in self.buckets:
            raise client_error("404", 404, "HeadBucket")  # HEAD has no body: just the status
        return {}

    def create_bucket(self, Bucket: str, **options: Any) -> dict[str, Any]:
        self.calls.append(("create_bucket", {"Bucket": Bucket, **options}))
        if self.failures["create_bucket"]:
            raise self.failures["create_bucket"].pop(0)
        if Bucket in self.buckets:
            raise client_error("BucketAlreadyOwnedByYou", 409, "CreateBucket")
        self.buckets.add(Bucket)
        return {}


def store_on(fake: FakeBuckets, region: str | None = None) -> S3ResultStore:
    return S3ResultStore("results", endpoint_url=ENDPOINT, region=region, client=fake)


# -- S3ResultStore.ensure_bucket ------------------------------------------------------------------


def test_ensure_bucket_creates_a_missing_bucket_once() -> None:
    fake = FakeBuckets()
    store = store_on(fake)
    assert store.ensure_bucket() is True
    assert fake.buckets == {"results"}
    assert fake.calls == [("head_bucket", {"Bucket": "results"}),
                          ("create_bucket", {"Bucket": "results"})]
    assert store.ensure_bucket() is False
    assert [op for op, _ in fake.calls] == ["head_bucket", "create_bucket", "head_bucket"]


def test_ensure_bucket_leaves_an_existing_bucket_alone() -> None:
    fake = FakeBuckets("results")
    assert store_on(fake).ensure_bucket() is False
    assert [op for op, _ in fake.calls] == ["head_bucket"]


@pytest.mark.parametrize(
    ("region", "options"),
    [(None, {}), ("us-east-1", {}),
     ("eu-west-1", {"CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}})],
)
def test_ensure_bucket_creates_in_the_stores_region(
    region: str | None, options: dict[str, Any]
) -> None:
    fake = FakeBuckets()
    assert store_on(fake, region).ensure_bucket() is True
    assert fake.calls[-1] == ("create_bucket", {"Bucket": "results", **options})


def test_no_such_bucket_code_also_means_missing() -> None:
    fake = FakeBuckets()
    fake.failures["head_bucket"].append(client_error("NoSuchBucket", 404, "HeadBucket"))
    assert store_on(fake).ensure_bucket() is True


def test_a_bucket_created_meanwhile_by_us_counts_as_existing() -> None:
    fake = FakeBuckets()
    fake.failures["create_bucket"].append(
        client_error("BucketAlreadyOwnedByYou", 409, "CreateBucket"))
    assert store_on(fake).ensure_bucket() is False


def test_ensure_bucket_failures_name_the_bucket_and_the_reason() -> None:
    fake = FakeBuckets()
    fake.failures["head_bucket"].append(EndpointConnectionError(endpoint_url=ENDPOINT))
    with pytest.raises(S3StoreUnavailable) as down:
        store_on(fake).ensure_bucket()
    assert "check bucket 'results' at http://s3.test:9000" in str(down.value)

    fake.failures["head_bucket"].append(client_error("403", 403, "HeadBucket"))
    with pytest.raises(S3StoreError) as refused:
        store_on(fake).ensure_bucket()
    assert not isinstance(refused.value, S3StoreUnavailable)
    assert "credentials were refused" in str(refused.value)

    fake.failures["create_bucket"].append(client_error("BucketAlreadyExists", 409, "CreateBucket"))
    with pytest.raises(S3StoreError, match="create bucket 'results'.*another account"):
        store_on(fake).ensure_bucket()
    assert fake.buckets == set()


# -- the operator's retry loop --------------------------------------------------------------------


class FlakyStore:
    """``ensure_bucket`` raises the queued errors first, then answers ``created``."""

    bucket = "results"

    def __init__(self, errors: list[Exception], created: bool = True) -> None:
        self.errors = list(errors)
        self.created = created
        self.calls = 0

    def ensure_bucket(self) -> bool:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.created


def test_backoff_doubles_from_half_a_second_to_thirty() -> None:
    assert list(islice(bucket_backoff(), 10)) == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]


def test_failures_are_retried_with_backoff_and_logged_until_created() -> None:
    errors: list[Exception] = [S3StoreUnavailable(f"connection refused #{i}") for i in range(9)]
    store, sleeps = FlakyStore(errors), []
    with capture_logs() as logs:
        assert ensure_bucket_until_done(store, sleeps.append) is True
    assert store.calls == 10
    assert sleeps == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    warnings = [r for r in logs.records if r.levelno == logging.WARNING]
    assert len(warnings) == 9
    assert "could not create bucket results (connection refused #0); retrying in 0.5 s" == (
        warnings[0].getMessage())
    assert "(connection refused #8); retrying in 30.0 s" in warnings[-1].getMessage()
    infos = [r.getMessage() for r in logs.records if r.levelno == logging.INFO]
    assert infos == ["created bucket results"]


def test_an_existing_bucket_is_neither_retried_nor_announced() -> None:
    store, sleeps = FlakyStore([], created=False), []
    with capture_logs() as logs:
        assert ensure_bucket_until_done(store, sleeps.append) is False
    assert store.calls == 1 and sleeps == []
    assert [r for r in logs.records if r.levelno >= logging.INFO] == []


# -- the background thread ------------------------------------------------------------------------


def creating_config(**storage: Any) -> OperatorConfig:
    return OperatorConfig(storage=StorageDefaults(
        bucket="results", prefix="team", endpoint=ENDPOINT, region="eu-west-1", **storage))


def test_no_thread_without_create_bucket() -> None:
    made: list[StorageConfig] = []

    def factory(location: StorageConfig) -> FlakyStore:
        made.append(location)
        return FlakyStore([])

    assert start_bucket_creator(creating_config(), factory) is None
    assert start_bucket_creator(OperatorConfig(), factory) is None
    assert made == []


def test_the_thread_retries_in_the_background_without_blocking_the_caller() -> None:
    store = FlakyStore([S3StoreUnavailable("MinIO is still starting")])
    made: list[StorageConfig] = []
    sleeping, wake = threading.Event(), threading.Event()
    sleeps: list[float] = []

    def factory(location: StorageConfig) -> FlakyStore:
        made.append(location)
        return store

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        sleeping.set()
        assert wake.wait(10), "the test never released the sleep"

    thread = start_bucket_creator(creating_config(create_bucket=True), factory, sleep)
    assert thread is not None and thread.daemon
    # The caller got control back while the thread is still waiting to retry.
    assert sleeping.wait(10), "the thread never tried"
    assert thread.is_alive() and store.calls == 1
    wake.set()
    thread.join(10)
    assert not thread.is_alive()
    assert store.calls == 2 and sleeps == [0.5]
    assert made == [("results", "team", ENDPOINT, "eu-west-1")]


def test_a_store_that_cannot_be_made_is_logged_not_lost() -> None:
    def factory(location: StorageConfig) -> FlakyStore:
        raise ValueError("bad bucket name")

    with capture_logs() as logs:
        thread = start_bucket_creator(creating_config(create_bucket=True), factory)
        assert thread is not None
        thread.join(10)
    assert not thread.is_alive()
    [record] = [r for r in logs.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "cannot create bucket results"
    assert record.exc_info is not None and "bad bucket name" in str(record.exc_info[1])
