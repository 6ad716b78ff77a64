"""The S3 result store: ``ResultStore`` on any S3-compatible endpoint (AWS, MinIO, Ceph, ...).

Streaming both ways without holding an object in memory: writes go out as a multipart upload
whose parts are ``part_size`` bytes (one part buffered at a time; objects smaller than one part
are a single PutObject), reads stream the GetObject body and, when the connection drops mid-body,
resume with a ranged GET pinned to the same ETag. The object appears only when the upload
completes, so a failed or abandoned write never leaves a partial object behind.

Outages are retried twice over: botocore's "standard" retry mode handles a short blip inside
one call (with botocore's client; see below for ours), and our own loop around every call
retries connection errors, timeouts and 5xx / throttling answers with exponential backoff until a
time budget (60 s by default) runs out. Then ``S3StoreUnavailable`` names the endpoint, the
bucket and what to check. Every call we make is idempotent (a part or an object re-sent whole), so
retrying is always safe.

Credentials come from the AWS standard chain (``AWS_*`` environment variables, config files,
instance roles) or are passed explicitly by a caller that read them from a Kubernetes Secret;
never from a custom resource's spec.

The client, made on first use: on a custom endpoint (MinIO, Ceph, ...) with static credentials
(passed, or ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``), our own
``LightS3Client`` (``s3_light``) for GetObject, PutObject, HeadObject and DeleteObject, which
spares a task pod botocore's ~110 ms of import and client creation; it hands everything else
(multipart uploads, buckets, listings) to a botocore client made when first needed. On AWS
itself, or with credentials from the chain (profiles, web identity, instance roles), botocore's
client alone (boto3's resource layer and transfer manager are not needed).
``FLOWPOD_S3_CLIENT=botocore`` in the environment forces botocore everywhere: an escape hatch
should a server disagree with the light client. The light client makes one attempt per call (a
keep-alive connection the server closed meanwhile is reopened and the request re-sent once); the
retry loop below does the rest.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, Protocol, TypeVar, cast

from flowpod._contract.keys import validate_key
from flowpod._storage.backends import CHUNK_SIZE, ResultStore
from flowpod._storage.s3_errors import (
    _CREDENTIAL_CODES,
    _NOT_FOUND_CODES,
    S3StoreError,
    S3StoreUnavailable,
    _client_error_parts,
    _error_code,
    _is_transient,
    _NotFound,
    _UploadVanished,
)
from flowpod._storage.s3_streams import _MultipartWriter, _ResumingReader
from flowpod.exceptions import ResultNotFound

__all__ = [
    "DEFAULT_PART_SIZE",
    "MIN_PART_SIZE",
    "S3ResultStore",
    "S3StoreError",
    "S3StoreUnavailable",
    "StorageSettings",
]

logger = logging.getLogger("flowpod.s3store")

MIN_PART_SIZE = 5 * 1024 * 1024
"""S3 refuses multipart parts smaller than this (except the last one)."""
DEFAULT_PART_SIZE = 8 * 1024 * 1024

_T = TypeVar("_T")

class StorageSettings(Protocol):
    """What a run's ``spec.storage`` says (``flowpod._contract.pod_settings.StorageSpec`` fits)."""

    @property
    def bucket(self) -> str: ...
    @property
    def prefix(self) -> str: ...
    @property
    def endpoint(self) -> str | None: ...
    @property
    def region(self) -> str | None: ...


class S3ResultStore(ResultStore):
    """Objects in ``s3://bucket/prefix/<key>`` on AWS or any S3-compatible endpoint."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        retry_budget_seconds: float = 60.0,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not bucket:
            raise ValueError("S3ResultStore needs a bucket name (e.g. FLOWPOD_S3_BUCKET=results)")
        if part_size < MIN_PART_SIZE:
            raise ValueError(
                f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum part size), "
                f"got {part_size}"
            )
        if retry_budget_seconds < 0:
            raise ValueError(f"retry_budget_seconds must be >= 0, got {retry_budget_seconds}")
        if (access_key_id is None) != (secret_access_key is None):
            raise ValueError("pass both access_key_id and secret_access_key, or neither")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        self.part_size = part_size
        self.retry_budget_seconds = retry_budget_seconds
        self._credentials = (access_key_id, secret_access_key, session_token)
        self._timeouts = (connect_timeout, read_timeout)
        self._client = client
        self._client_lock = threading.Lock()
        self._sleep = sleep
        self._clock = clock

    @classmethod
    def from_storage(
        cls,
        storage: StorageSettings,
        *,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        **options: Any,
    ) -> S3ResultStore:
        """The store a run's ``spec.storage`` describes.

        The spec only names the Secret holding the credentials; the caller (the operator, or a
        pod with the Secret mounted as environment) reads it and passes the values here.
        Without them the AWS standard chain applies.
        """
        return cls(
            storage.bucket,
            storage.prefix,
            endpoint_url=storage.endpoint,
            region=storage.region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            **options,
        )

    def __repr__(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return f"S3ResultStore({where!r}, endpoint={self._endpoint_label()!r})"

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The S3 client (botocore's API, see the module docstring), made on first use."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        from flowpod._storage.s3_light import light_client_for

        connect_timeout, read_timeout = self._timeouts
        light = light_client_for(
            self.endpoint_url, self.region, self._credentials, connect_timeout=connect_timeout,
            read_timeout=read_timeout, fallback=self._make_botocore_client,
        )
        return light if light is not None else self._make_botocore_client()

    def _make_botocore_client(self) -> Any:
        # botocore's own session and client: the same client boto3 would hand out, without
        # boto3's resource layer and s3transfer, which nothing here uses (a task pod is one
        # process per attempt, and those imports were a tenth of its CPU time).
        from botocore.config import Config
        from botocore.session import Session

        access_key_id, secret_access_key, session_token = self._credentials
        connect_timeout, read_timeout = self._timeouts
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # botocore's own retries absorb a blip within one call; _retrying covers outages.
            # The mode is given, so botocore does not look it up in the environment and files.
            retries={"mode": "standard", "max_attempts": 3},
            # Custom endpoints (MinIO, Ceph) rarely have wildcard DNS for virtual-host buckets.
            s3={"addressing_style": "path" if self.endpoint_url else "auto"},
            user_agent_extra="flowpod",
        )
        return Session().create_client(
            "s3",
            region_name=self.region,
            # S3 has had one API version since 2006: naming it spares botocore looking it up.
            api_version="2006-03-01",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token,
            config=config,
        )

    def _endpoint_label(self) -> str:
        if self.endpoint_url:
            return self.endpoint_url
        return f"AWS S3 ({self.region})" if self.region else "AWS S3"

    def object_key(self, key: str) -> str:
        """The S3 object key for a store key: the prefix joined with the validated key."""
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_key(key)} at {self._endpoint_label()}"

    def _retrying(self, action: str, key: str, call: Callable[[], _T]) -> _T:
        """Run ``call``, retrying transient failures with backoff within the time budget."""
        from botocore import exceptions as bex

        start = self._clock()
        delay = 0.25
        attempt = 0
        while True:
            attempt += 1
            try:
                return call()
            except bex.ClientError as exc:
                code, status = _client_error_parts(exc) or ("", 0)
                if code in _NOT_FOUND_CODES:
                    raise _NotFound() from exc
                if code == "NoSuchUpload":
                    raise _UploadVanished() from exc
                if not _is_transient(exc):
                    raise self._refused(action, key, code, status, exc) from exc
                error: BaseException = exc
            except (bex.NoCredentialsError, bex.PartialCredentialsError) as exc:
                raise S3StoreError(
                    f"no usable S3 credentials to {action} {self._where(key)}: {exc}. Set "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile/role), or "
                    "reference a Secret in the run's storage.credentialsSecret"
                ) from exc
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                error = exc
            elapsed = self._clock() - start
            if elapsed + delay > self.retry_budget_seconds:
                raise S3StoreUnavailable(
                    f"could not {action} {self._where(key)}: gave up after {attempt} attempts "
                    f"over {elapsed:.1f} s (last error: {error}). Check that the S3 server is "
                    "running and reachable from here, that the endpoint URL "
                    "(FLOWPOD_S3_ENDPOINT / storage.endpoint) is right, and that bucket "
                    f"{self.bucket!r} exists"
                ) from error
            if attempt == 1:
                logger.warning(
                    "could not %s %s (%s); retrying for up to %.0f s",
                    action, self._where(key), error, self.retry_budget_seconds,
                )
            self._sleep(delay)
            delay = min(delay * 2, 4.0)

    def _refused(
        self, action: str, key: str, code: str, status: int, exc: BaseException
    ) -> S3StoreError:
        where = self._where(key)
        if code == "NoSuchBucket":
            hint = (
                f"bucket {self.bucket!r} does not exist at {self._endpoint_label()}: create it, "
                "or point FLOWPOD_S3_BUCKET / storage.bucket at an existing one"
            )
        elif code in _CREDENTIAL_CODES:
            hint = (
                "the credentials were refused: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
                "(or the Secret named in storage.credentialsSecret) and that they may "
                f"read and write bucket {self.bucket!r}"
            )
        else:
            hint = f"the server answered {code or 'an error'} (HTTP {status})"
        return S3StoreError(f"could not {action} {where}: {hint}. ({exc})")

    def _missing(self, key: str) -> ResultNotFound:
        return ResultNotFound(f"no object stored under {key!r} in {self._where(key)}")

    # -- the bucket -----------------------------------------------------------------------------

    def ensure_bucket(self) -> bool:
        """Create the bucket when it does not exist; True when this call created it.

        One attempt, no retries (the caller decides how long to keep trying): HeadBucket, and on
        "not found" CreateBucket (in ``region`` when that is not us-east-1). A bucket created
        meanwhile by another client with the same owner (BucketAlreadyOwnedByYou) counts as
        existing. S3StoreUnavailable when the endpoint does not answer, S3StoreError when it
        refuses.
        """
        from botocore import exceptions as bex

        failures = (bex.ClientError, bex.BotoCoreError, OSError)
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return False
        except failures as exc:
            if _error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise self._bucket_failure("check", exc) from exc
        options: dict[str, Any] = {}
        if self.region and self.region != "us-east-1":
            # us-east-1 is S3's default location and refuses an explicit constraint.
            options["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(Bucket=self.bucket, **options)
        except failures as exc:
            if _error_code(exc) == "BucketAlreadyOwnedByYou":
                return False
            raise self._bucket_failure("create", exc) from exc
        return True

    def _bucket_failure(self, action: str, exc: Exception) -> S3StoreError:
        from botocore import exceptions as bex

        where = f"bucket {self.bucket!r} at {self._endpoint_label()}"
        if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
            return S3StoreError(
                f"no usable S3 credentials to {action} {where}: {exc}. Set AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY (or an AWS profile/role)"
            )
        if _is_transient(exc):
            return S3StoreUnavailable(
                f"could not {action} {where}: {exc}. Check that the S3 server is running and "
                "reachable from here, and the endpoint URL (FLOWPOD_S3_ENDPOINT)"
            )
        code, status = _client_error_parts(exc) or ("", 0)
        if code in _CREDENTIAL_CODES:
            hint = "the credentials were refused, or the bucket belongs to another account"
        elif code == "BucketAlreadyExists":
            hint = "another account owns a bucket of that name: choose another name"
        else:
            hint = f"the server answered {code or 'an error'} (HTTP {status})"
        return S3StoreError(f"could not {action} {where}: {hint}. ({exc})")

    # -- ResultStore ----------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        if len(data) <= self.part_size:
            object_key = self.object_key(key)
            body = bytes(data)
            self._retrying(
                "write",
                key,
                lambda: self.client.put_object(Bucket=self.bucket, Key=object_key, Body=body),
            )
            return
        super().put(key, data)

    def get(self, key: str) -> bytes:
        object_key = self.object_key(key)

        def fetch() -> bytes:
            response = self.client.get_object(Bucket=self.bucket, Key=object_key)
            data: bytes = response["Body"].read()
            return data

        try:
            return self._retrying("read", key, fetch)
        except _NotFound:
            raise self._missing(key) from None

    def _found(self, action: str, key: str, method: str) -> bool:
        """Call ``client.<method>(Bucket, Key)`` with retries; False when S3 says 404."""
        object_key = self.object_key(key)
        call = getattr(self.client, method)
        try:
            self._retrying(action, key, lambda: call(Bucket=self.bucket, Key=object_key))
        except _NotFound:
            return False
        return True

    def exists(self, key: str) -> bool:
        return self._found("check", key, "head_object")

    def delete(self, key: str) -> None:
        # S3 itself answers 204 for a missing key; some servers say 404: both are fine.
        self._found("delete", key, "delete_object")

    @contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        writer = _MultipartWriter(self, key)
        try:
            yield cast(BinaryIO, writer)
        except BaseException:
            writer.abort()
            raise
        try:
            writer.commit()
        except BaseException:
            writer.abort()  # a failed Complete would otherwise leave its parts stored (and billed)
            raise

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        object_key = self.object_key(key)
        try:
            response = self._retrying(
                "read",
                key,
                lambda: self.client.get_object(Bucket=self.bucket, Key=object_key),
            )
        except _NotFound:
            raise self._missing(key) from None
        reader = io.BufferedReader(_ResumingReader(self, key, response), buffer_size=CHUNK_SIZE)
        try:
            yield cast(BinaryIO, reader)
        finally:
            reader.close()
