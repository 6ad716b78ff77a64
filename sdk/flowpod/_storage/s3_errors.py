"""What S3 answers mean: the store's errors and the classification of botocore failures.

``S3StoreError`` (refused, retrying will not help) and ``S3StoreUnavailable`` (the endpoint did
not answer within the retry budget) are public; ``_NotFound`` and ``_UploadVanished`` are internal
signals between the retry loop (``flowpod._storage.s3``) and its callers. ``_is_transient`` decides
what the retry loop and the resuming reader retry.
"""

from __future__ import annotations

from collections.abc import Mapping

from flowpod.exceptions import FlowpodException

__all__ = ["S3StoreError", "S3StoreUnavailable"]

# ClientError codes meaning "nothing under that key".
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# ClientError codes meaning "try again later" (besides every 5xx status).
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
        "ServiceUnavailable", "InternalError", "XMinioServerNotInitialized",
    }
)
_CREDENTIAL_CODES = frozenset(
    {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
     "InvalidToken"}
)


class S3StoreError(FlowpodException):
    """The S3 store refused a request for a reason retrying will not fix."""


class S3StoreUnavailable(S3StoreError, ConnectionError):
    """The S3 endpoint did not answer (or answered 5xx) for longer than the retry budget."""


class _NotFound(Exception):
    """Internal: the object is missing; turned into ResultNotFound with the caller's key."""


class _UploadVanished(Exception):
    """Internal: CompleteMultipartUpload said NoSuchUpload (maybe our earlier try succeeded)."""


def _client_error_parts(exc: BaseException) -> tuple[str, int] | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return None
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def _error_code(exc: BaseException) -> str:
    parts = _client_error_parts(exc)
    return parts[0] if parts else ""


def _is_transient(exc: BaseException) -> bool:
    from botocore import exceptions as bex

    parts = _client_error_parts(exc) if isinstance(exc, bex.ClientError) else None
    if parts is not None:
        code, status = parts
        return status >= 500 or status == 429 or code in _TRANSIENT_CODES
    # Connection refused/reset, timeouts, a body cut short: the endpoint is (briefly) away.
    return isinstance(
        exc,
        bex.HTTPClientError | bex.ConnectionError | bex.IncompleteReadError | ConnectionError
        | TimeoutError,
    )
