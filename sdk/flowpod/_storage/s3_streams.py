"""The S3 store's streams: the multipart writer behind ``open_write`` and the resuming reader
behind ``open_read``.

``_MultipartWriter`` buffers at most one part and uploads each as it fills (an object smaller than
one part is a single PutObject); ``commit`` completes the upload, ``abort`` drops it so nothing
appears under the key. ``_ResumingReader`` streams a GetObject body and, when the connection drops
mid-body, resumes with a ranged GET pinned to the same ETag. Both reach S3 through the store's
retry loop (``_S3Bucket`` is what they need of ``S3ResultStore``).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from flowpod._storage.s3_errors import S3StoreError, _is_transient, _NotFound, _UploadVanished
from flowpod.exceptions import ResultNotFound

logger = logging.getLogger("flowpod.s3store")

_T = TypeVar("_T")


class _S3Bucket(Protocol):
    """What the streams use of ``S3ResultStore``."""

    bucket: str
    part_size: int

    @property
    def client(self) -> Any: ...

    def object_key(self, key: str) -> str: ...

    def _where(self, key: str) -> str: ...

    def _missing(self, key: str) -> ResultNotFound: ...

    def _retrying(self, action: str, key: str, call: Callable[[], _T]) -> _T: ...


class _MultipartWriter(io.RawIOBase):
    """Buffers at most one part; uploads each full part as it fills (see open_write)."""

    def __init__(self, store: _S3Bucket, key: str) -> None:
        super().__init__()
        self._store = store
        self._key = key
        self._object_key = store.object_key(key)
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._size = 0
        self._done = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._done or self.closed:
            raise ValueError(f"write to {self._key!r} after its stream was closed")
        view = memoryview(data).cast("B")
        size = len(view)
        part_size = self._store.part_size
        offset = 0
        while offset < size:
            # Fill the buffer to exactly one part, ship it, continue: memory stays one part.
            take = min(part_size - len(self._buffer), size - offset)
            self._buffer += view[offset : offset + take]
            offset += take
            if len(self._buffer) >= part_size:
                self._upload_part()
        self._size += size
        return size

    def _upload_part(self) -> None:
        store = self._store
        if self._upload_id is None:
            response = store._retrying(
                "start an upload to",
                self._key,
                lambda: store.client.create_multipart_upload(
                    Bucket=store.bucket, Key=self._object_key
                ),
            )
            self._upload_id = str(response["UploadId"])
        body = bytes(self._buffer)
        self._buffer.clear()
        number = len(self._parts) + 1
        upload_id = self._upload_id
        response = store._retrying(
            f"upload part {number} of",
            self._key,
            lambda: store.client.upload_part(
                Bucket=store.bucket, Key=self._object_key, UploadId=upload_id,
                PartNumber=number, Body=body,
            ),
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})

    def commit(self) -> None:
        store = self._store
        if self._done:
            return
        self._done = True
        if self._upload_id is None:
            body = bytes(self._buffer)
            self._buffer.clear()
            store._retrying(
                "write",
                self._key,
                lambda: store.client.put_object(
                    Bucket=store.bucket, Key=self._object_key, Body=body
                ),
            )
            self.close()
            return
        if self._buffer:
            self._upload_part()
        upload_id = self._upload_id
        parts = list(self._parts)
        try:
            store._retrying(
                "complete the upload of",
                self._key,
                lambda: store.client.complete_multipart_upload(
                    Bucket=store.bucket, Key=self._object_key, UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                ),
            )
        except _UploadVanished:
            # A retried Complete whose first try succeeded (the answer was lost) finds no upload;
            # the object of the right size being there means it did complete.
            if not self._object_has_size(self._size):
                raise S3StoreError(
                    f"the multipart upload of {store._where(self._key)} disappeared before it "
                    "completed (aborted by a lifecycle rule or another client?); write it again"
                ) from None
        finally:
            self.close()

    def _object_has_size(self, size: int) -> bool:
        store = self._store
        try:
            head = store._retrying(
                "check",
                self._key,
                lambda: store.client.head_object(Bucket=store.bucket, Key=self._object_key),
            )
        except _NotFound:
            return False
        return int(head.get("ContentLength", -1)) == size

    def abort(self) -> None:
        """Drop the upload: nothing appears under the key, and S3 frees the stored parts."""
        self._done = True
        self._buffer.clear()
        upload_id = self._upload_id
        if upload_id is not None:
            store = self._store
            try:
                store.client.abort_multipart_upload(
                    Bucket=store.bucket, Key=self._object_key, UploadId=upload_id
                )
            except Exception as exc:  # the original error matters more than the clean-up
                logger.warning(
                    "could not abort the multipart upload %s of %s: %s (a bucket lifecycle rule "
                    "for incomplete uploads will remove its parts)",
                    upload_id, store._where(self._key), exc,
                )
        self.close()


class _ResumingReader(io.RawIOBase):
    """A GetObject body that resumes with a ranged GET when the connection drops mid-object."""

    def __init__(self, store: _S3Bucket, key: str, response: Mapping[str, Any]) -> None:
        super().__init__()
        self._store = store
        self._key = key
        self._body: Any = response["Body"]
        self._etag = response.get("ETag")
        self._length = response.get("ContentLength")
        self._position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not len(view) or (self._length is not None and self._position >= self._length):
            return 0
        while True:
            try:
                chunk: bytes = self._body.read(len(view))
                if chunk or self._length is None:
                    break
                problem = f"the body ended early at {self._position} of {self._length} bytes"
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                problem = str(exc)
            logger.warning(
                "reading %s broke at byte %d (%s); resuming",
                self._store._where(self._key), self._position, problem,
            )
            self._reopen()
        view[: len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)

    def _reopen(self) -> None:
        store = self._store
        object_key = store.object_key(self._key)
        extra: dict[str, Any] = {"Range": f"bytes={self._position}-"}
        if self._etag:
            extra["IfMatch"] = self._etag  # the same object, not one rewritten meanwhile
        with _quietly():
            self._body.close()
        try:
            response = store._retrying(
                "resume reading",
                self._key,
                lambda: store.client.get_object(Bucket=store.bucket, Key=object_key, **extra),
            )
        except _NotFound:
            raise store._missing(self._key) from None
        self._body = response["Body"]

    def close(self) -> None:
        if not self.closed:
            with _quietly():
                self._body.close()
        super().close()


@contextmanager
def _quietly() -> Iterator[None]:
    try:
        yield
    except Exception:  # closing a broken connection may itself fail; nothing to do about it
        pass
