"""A small S3 client of our own for the four requests a task pod makes: GET, PUT, HEAD, DELETE.

Why it exists: a task pod is one process per attempt, and it made its 4 S3 requests (GET payload,
PUT result, PUT outcome, PUT log; all small objects) through botocore, whose import and client
creation cost about 110 ms of the pod's 231-246 ms of CPU against a target of 120 ms: botocore
parses its endpoint rules and the S3 service model (JSON) at every start. The operator, reading
one small outcome object per TaskRun from 16 threads, paid botocore's per-request machinery too.

What it owns: AWS Signature Version 4 signing (written from AWS's description of it: canonical
request, string to sign, the HMAC signing-key chain, the Authorization header), path-style URLs
(``{endpoint}/{bucket}/{key}``), one keep-alive ``http.client`` connection per thread, and the
botocore client API subset ``S3ResultStore`` uses for small objects (``get_object``,
``put_object``, ``head_object``, ``delete_object``), with botocore's call signatures, return
shapes and exception classes, so the store's retry loop and error classification are unchanged.
Everything else (multipart uploads of large objects, buckets, listings) goes to a real botocore
client, built on first use. ``light_client_for`` says when this client is used: a custom endpoint
(MinIO, Ceph, ...) with static credentials; AWS itself and the credential chain stay botocore's.

One attempt per call: the store's ``_retrying`` loop retries transient errors with backoff. The
one exception is a keep-alive connection the server closed while it sat idle: the request is
re-sent once on a fresh connection (every request here is idempotent).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import ssl
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from botocore import exceptions as bex

__all__ = ["LightS3Client", "light_client_for", "sigv4_headers"]

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# Errors of a connection the server closed while it was idle in our pool: re-sent once.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
          ConnectionAbortedError)
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def sigv4_headers(
    *, method: str, host: str, path: str, headers: Mapping[str, str], payload_sha256: str,
    access_key: str, secret_key: str, session_token: str | None, region: str,
    now: datetime, service: str = "s3",
) -> dict[str, str]:
    """The headers signing one request: x-amz-date, x-amz-content-sha256, the token, Authorization.

    ``path`` is already URI-encoded (S3 signs it as sent, without normalising it); ``headers``
    are the other headers to sign (Range, If-Match, ...). No query string: none of our requests
    has one.
    """
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    added = {"x-amz-date": amz_date, "x-amz-content-sha256": payload_sha256}
    if session_token:
        added["x-amz-security-token"] = session_token
    # Canonical headers: lower-case names, sorted, values trimmed, host included.
    signed = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
    signed.update(added)
    signed["host"] = host
    names = sorted(signed)
    canonical_headers = "".join(f"{name}:{signed[name]}\n" for name in names)
    signed_names = ";".join(names)
    canonical_request = "\n".join(
        (method, path, "", canonical_headers, signed_names, payload_sha256)
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join((
        "AWS4-HMAC-SHA256", amz_date, scope,
        hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
    ))
    # The signing key: the secret chained through the day, region, service and terminator.
    key = _hmac(("AWS4" + secret_key).encode("utf-8"), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    added["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed_names}, "
        f"Signature={signature}"
    )
    return added


class _Body:
    """A GetObject body: ``read(n)`` / ``read()`` / ``close()``, errors as botocore's."""

    def __init__(self, response: http.client.HTTPResponse,
                 connection: http.client.HTTPConnection, endpoint: str) -> None:
        self._response = response
        self._connection = connection
        self._endpoint = endpoint

    def read(self, amount: int | None = None) -> bytes:
        try:
            return self._response.read(amount)
        except http.client.IncompleteRead as exc:
            expected = len(exc.partial) + (exc.expected or 0)
            raise bex.IncompleteReadError(actual_bytes=len(exc.partial),
                                          expected_bytes=expected) from exc
        except TimeoutError as exc:
            raise bex.ReadTimeoutError(endpoint_url=self._endpoint, error=exc) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise bex.ResponseStreamingError(error=exc) from exc

    def close(self) -> None:
        drained = self._response.isclosed()
        self._response.close()
        if not drained:
            # The rest of the body is still on the socket: the connection cannot serve another.
            self._connection.close()


class LightS3Client:
    """GetObject, PutObject, HeadObject and DeleteObject, signed with SigV4, path-style.

    Thread-safe: each thread has its own keep-alive connection. Any other attribute is looked up
    on a botocore client made by ``fallback`` on first use.
    """

    def __init__(
        self, endpoint_url: str, *, region: str, access_key: str, secret_key: str,
        session_token: str | None = None, connect_timeout: float = 5.0,
        read_timeout: float = 30.0, fallback: Callable[[], Any],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint URL: {endpoint_url!r}")
        self.endpoint_url = endpoint_url
        self._https = parts.scheme == "https"
        self._hostname = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        # The Host header as botocore signs it: the default port is left out.
        default_port = parts.port is None or parts.port == (443 if self._https else 80)
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        self._host = host if default_port else f"{host}:{parts.port}"
        self._base_path = parts.path.rstrip("/")
        self._region = region
        self._credentials = (access_key, secret_key, session_token)
        self._timeouts = (connect_timeout, read_timeout)
        self._fallback = fallback
        self._botocore: Any = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._clock = clock
        self._ssl: ssl.SSLContext | None = None

    # -- the botocore API subset ----------------------------------------------------------------

    # botocore's parameter names, so the store calls either client the same way.
    def get_object(self, Bucket: str, Key: str, Range: str | None = None,
                   IfMatch: str | None = None) -> dict[str, Any]:
        headers = {}
        if Range is not None:
            headers["Range"] = Range
        if IfMatch is not None:
            headers["If-Match"] = IfMatch
        response = self._request("GetObject", "GET", Bucket, Key, headers=headers, stream=True)
        body = _Body(response, self._local.connection, self.endpoint_url)
        return {"Body": body, **self._metadata(response)}

    def put_object(self, Bucket: str, Key: str,
                   Body: bytes | bytearray | memoryview | str = b"") -> dict[str, Any]:
        body = Body.encode("utf-8") if isinstance(Body, str) else bytes(Body)
        response = self._request("PutObject", "PUT", Bucket, Key, body=body)
        return {"ETag": response.getheader("ETag"), **self._response_metadata(response)}

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return self._metadata(self._request("HeadObject", "HEAD", Bucket, Key))

    def delete_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return self._response_metadata(self._request("DeleteObject", "DELETE", Bucket, Key))

    def __getattr__(self, name: str) -> Any:
        # Only called for what this class lacks: multipart uploads, buckets, listings, meta...
        if name.startswith("_"):
            raise AttributeError(name)
        if self._botocore is None:
            with self._lock:
                if self._botocore is None:
                    self._botocore = self._fallback()
        return getattr(self._botocore, name)

    def close(self) -> None:
        """Close this thread's connection (and the botocore client, if one was made)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
        if self._botocore is not None:
            self._botocore.close()

    # -- one request ----------------------------------------------------------------------------

    def _url_path(self, bucket: str, key: str) -> str:
        # SigV4's S3 encoding: unreserved characters kept, '/' kept between segments, UTF-8.
        return f"{self._base_path}/{quote(bucket, safe='~')}/{quote(key, safe='/~')}"

    def _request(
        self, operation: str, method: str, bucket: str, key: str, *,
        headers: dict[str, str] | None = None, body: bytes = b"", stream: bool = False,
    ) -> http.client.HTTPResponse:
        path = self._url_path(bucket, key)
        to_sign = dict(headers or {})
        access_key, secret_key, token = self._credentials
        signed = sigv4_headers(
            method=method, host=self._host, path=path, headers=to_sign,
            payload_sha256=hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256,
            access_key=access_key, secret_key=secret_key, session_token=token,
            region=self._region, now=self._clock(),
        )
        # Content-Length is sent but not signed (botocore does not sign it either).
        sent = {**to_sign, **signed, "Host": self._host, "User-Agent": "flowpod-s3-light"}
        if method == "PUT":
            sent["Content-Length"] = str(len(body))
        response = self._send(method, path, sent, body)
        status = response.status
        if status >= 300:
            raise self._client_error(operation, method, response)
        if not stream:
            response.read()  # drained, so the connection can serve the next request
        return response

    def _send(self, method: str, path: str, headers: dict[str, str],
              body: bytes) -> http.client.HTTPResponse:
        while True:
            connection, reused = self._connection()
            try:
                return self._exchange(connection, method, path, headers, body)
            except _STALE as exc:
                self._drop(connection)
                if reused:
                    continue  # the server closed the idle keep-alive connection: a fresh one
                raise bex.ConnectionClosedError(endpoint_url=self.endpoint_url) from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop(connection)
                raise self._translated(exc) from exc
            except BaseException:
                self._drop(connection)
                raise

    def _exchange(self, connection: http.client.HTTPConnection, method: str, path: str,
                  headers: dict[str, str], body: bytes) -> http.client.HTTPResponse:
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        self._local.response = response  # the next request checks that its body was drained
        return response

    def _translated(self, exc: Exception) -> Exception:
        """botocore's exception for a failed exchange: both are transient for the store."""
        error: Exception
        if isinstance(exc, TimeoutError):
            error = bex.ReadTimeoutError(endpoint_url=self.endpoint_url, error=exc)
        else:
            error = bex.ConnectionClosedError(endpoint_url=self.endpoint_url, error=exc)
        return error

    def _drop(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        self._local.connection = None

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it served a request before (may be stale)."""
        local = self._local
        connection: http.client.HTTPConnection | None = getattr(local, "connection", None)
        if connection is not None:
            last: http.client.HTTPResponse | None = local.response
            if connection.sock is not None and (last is None or last.isclosed()):
                return connection, True
            if last is None or last.isclosed():
                connection.close()
            # else a body is still being read from it (open_read): it keeps that connection.
        connect_timeout, read_timeout = self._timeouts
        if self._https:
            if self._ssl is None:
                self._ssl = ssl.create_default_context(
                    cafile=os.environ.get("AWS_CA_BUNDLE") or None)
            connection = http.client.HTTPSConnection(
                self._hostname, self._port, timeout=connect_timeout, context=self._ssl)
        else:
            connection = http.client.HTTPConnection(
                self._hostname, self._port, timeout=connect_timeout)
        local.connection, local.response = None, None
        try:
            connection.connect()
        except TimeoutError as exc:
            raise bex.ConnectTimeoutError(endpoint_url=self.endpoint_url, error=exc) from exc
        except ssl.SSLError as exc:
            raise bex.SSLError(endpoint_url=self.endpoint_url, error=exc) from exc
        except OSError as exc:
            raise bex.EndpointConnectionError(endpoint_url=self.endpoint_url, error=exc) from exc
        assert connection.sock is not None
        connection.sock.settimeout(read_timeout)  # connected: from now on, the read timeout
        local.connection = connection
        return connection, False

    # -- answers --------------------------------------------------------------------------------

    @staticmethod
    def _response_metadata(response: http.client.HTTPResponse) -> dict[str, Any]:
        return {"ResponseMetadata": {"HTTPStatusCode": response.status,
                                     "HTTPHeaders": {k.lower(): v for k, v in
                                                     response.getheaders()}}}

    def _metadata(self, response: http.client.HTTPResponse) -> dict[str, Any]:
        length = response.getheader("Content-Length")
        return {
            "ETag": response.getheader("ETag"),
            "ContentLength": int(length) if length is not None else None,
            "ContentType": response.getheader("Content-Type"),
            "LastModified": response.getheader("Last-Modified"),
            **self._response_metadata(response),
        }

    def _client_error(self, operation: str, method: str,
                      response: http.client.HTTPResponse) -> bex.ClientError:
        status = response.status
        payload = b"" if method == "HEAD" else response.read()
        # As botocore: the XML body's Code and Message; without a body (HEAD), the status.
        code, message = str(status), response.reason
        if payload:
            from xml.etree import ElementTree  # only on the error path

            try:
                root = ElementTree.fromstring(payload)
                code = root.findtext("Code") or code
                message = root.findtext("Message") or message
            except ElementTree.ParseError:
                pass
        return bex.ClientError(
            {"Error": {"Code": code, "Message": message}, **self._response_metadata(response)},
            operation,
        )


def light_client_for(
    endpoint_url: str | None, region: str | None,
    credentials: tuple[str | None, str | None, str | None], *, connect_timeout: float,
    read_timeout: float, fallback: Callable[[], Any],
    environ: Mapping[str, str] = os.environ,
) -> LightS3Client | None:
    """The light client when it applies (a custom endpoint and static credentials), else None.

    Credentials: the explicit ones, else ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (and
    ``AWS_SESSION_TOKEN``), the first places botocore's chain looks. Region: the store's, else
    ``AWS_DEFAULT_REGION`` (what botocore reads), else us-east-1, what botocore signs with for a
    custom endpoint without a region. ``FLOWPOD_S3_CLIENT=botocore`` turns it off, and so does a
    proxy in the environment (botocore honours those; http.client does not).
    """
    if environ.get("FLOWPOD_S3_CLIENT", "").strip().lower() == "botocore" or not endpoint_url:
        return None
    if any(environ.get(name) or environ.get(name.upper()) for name in _PROXY_VARIABLES):
        return None
    access_key, secret_key, token = credentials
    if access_key is None or secret_key is None:
        access_key = environ.get("AWS_ACCESS_KEY_ID")
        secret_key = environ.get("AWS_SECRET_ACCESS_KEY")
        token = environ.get("AWS_SESSION_TOKEN") or None
    if not access_key or not secret_key:
        return None  # profiles, web identity, instance roles: botocore's chain
    if urlsplit(endpoint_url).scheme not in ("http", "https"):
        return None
    return LightS3Client(
        endpoint_url, region=region or environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        access_key=access_key, secret_key=secret_key, session_token=token,
        connect_timeout=connect_timeout, read_timeout=read_timeout, fallback=fallback,
    )
