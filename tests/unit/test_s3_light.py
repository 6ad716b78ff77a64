"""The light S3 client (``flowpod._storage.s3_light``): its SigV4 signatures, its behaviour over
HTTP, when the store uses it, and what a task pod imports with it.

Signatures are checked against AWS's published example and against botocore's own signer for
generated requests; behaviour against an in-process HTTP server that plays S3 (objects in a
dict, with injectable failures), through ``S3ResultStore`` so the store's retry loop and error
classification are exercised as in production.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from flowpod import task
from flowpod._kube.payloads import FlowRunInfo, TaskPayload, write_payload
from flowpod._storage import CHUNK_SIZE, S3ResultStore, S3StoreUnavailable, read_outcome
from flowpod._storage.s3_errors import _is_transient
from flowpod._storage.s3_light import EMPTY_SHA256, LightS3Client, sigv4_headers
from flowpod._storage.s3_streams import _ResumingReader
from flowpod.exceptions import ResultNotFound

AWS_KEY, AWS_SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
S3_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION",
          "AWS_REGION", "FLOWPOD_S3_CLIENT", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
          "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def _no_ambient_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in S3_ENV:
        monkeypatch.delenv(name, raising=False)


# -- signing ------------------------------------------------------------------------------------


def test_the_published_aws_example_for_get_object() -> None:
    # AWS's SigV4 documentation for S3, "GET Object": the signature is theirs, not ours.
    headers = sigv4_headers(
        method="GET", host="examplebucket.s3.amazonaws.com", path="/test.txt",
        headers={"Range": "bytes=0-9"}, payload_sha256=EMPTY_SHA256, access_key=AWS_KEY,
        secret_key=AWS_SECRET, session_token=None, region="us-east-1",
        now=datetime(2013, 5, 24, tzinfo=UTC),
    )
    assert headers["x-amz-date"] == "20130524T000000Z"
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


KEY_PARTS = ["a", "with space", "ünïcødé", "plus+sign", "eq=ual", "tilde~", "dots..", "UPPER",
             "semi;colon", "amp&", "pct%41", "star*", "paren(x)", "comma,", "at@", "日本",
             "under_score", "dash-", "quote'", "dollar$", "colon:"]


def _generated_requests(count: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(15)
    for index in range(count):
        key = "/".join(rng.choice(KEY_PARTS) for _ in range(rng.randint(1, 4)))
        method = rng.choice(["GET", "PUT", "HEAD", "DELETE"])
        headers: dict[str, str] = {}
        if method == "GET" and rng.random() < 0.5:
            headers["Range"] = f"bytes={rng.randint(0, 99)}-"
            if rng.random() < 0.5:
                headers["If-Match"] = f'"{uuid.UUID(int=rng.getrandbits(128)).hex}"'
        body = rng.randbytes(rng.randint(0, 3000)) if method == "PUT" else b""
        yield {
            "endpoint": rng.choice(["http://127.0.0.1:9000", "https://minio.example.org",
                                    "http://s3.local:80", "https://ceph.example:8443/base"]),
            "bucket": rng.choice(["results", "flowpod-test", "b.with.dots"]),
            "key": key, "method": method, "headers": headers, "body": body,
            "token": f"token/{index}+=" if rng.random() < 0.3 else None,
            "region": rng.choice(["us-east-1", "eu-west-3", "garage"]),
            "now": datetime(2020 + index % 6, 1 + index % 12, 1 + index % 28, index % 24,
                            index % 60, tzinfo=UTC),
        }


def test_signatures_equal_botocores_for_generated_requests(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for case in _generated_requests(300):
        sent: dict[str, Any] = {}
        client = LightS3Client(
            case["endpoint"], region=case["region"], access_key=AWS_KEY, secret_key=AWS_SECRET,
            session_token=case["token"], fallback=lambda: None, clock=lambda c=case: c["now"],
        )

        def capture(method: str, path: str, headers: dict[str, str], body: bytes,
                    sent: dict[str, Any] = sent) -> Any:
            sent.update(method=method, path=path, headers=headers, body=body)
            raise _Captured

        monkeypatch.setattr(client, "_send", capture)
        with pytest.raises(_Captured):
            client._request("Op", case["method"], case["bucket"], case["key"],
                            headers=dict(case["headers"]), body=case["body"])
        # botocore's signer over the same request, at the same frozen time.
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(case["endpoint"]))
        request = AWSRequest(method=case["method"], url=origin + sent["path"],
                             headers=dict(case["headers"]), data=case["body"])
        monkeypatch.setattr("botocore.auth.get_current_datetime",
                            lambda c=case: c["now"].replace(tzinfo=None))
        S3SigV4Auth(Credentials(AWS_KEY, AWS_SECRET, case["token"]), "s3",
                    case["region"]).add_auth(request)
        assert sent["headers"]["Authorization"] == request.headers["Authorization"], case
        assert sent["headers"]["x-amz-content-sha256"] == \
            request.headers["X-Amz-Content-SHA256"]


def test_object_urls_are_encoded_as_botocore_encodes_them() -> None:
    from botocore.config import Config
    from botocore.session import Session

    botocore_client = Session().create_client(
        "s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="k", aws_secret_access_key="s",
        config=Config(s3={"addressing_style": "path"}),
    )
    urls: list[str] = []

    def grab(request: Any, **_: Any) -> None:
        urls.append(request.url)
        raise _Captured

    botocore_client.meta.events.register("before-send.s3", grab)
    light = LightS3Client("http://127.0.0.1:9", region="us-east-1", access_key="k",
                          secret_key="s", fallback=lambda: None)
    for case in _generated_requests(100):
        with pytest.raises(_Captured):
            botocore_client.head_object(Bucket="results", Key=case["key"])
        assert "http://127.0.0.1:9" + light._url_path("results", case["key"]) == urls[-1]


class _Captured(Exception):
    pass


# -- a server that plays S3 ---------------------------------------------------------------------


class FakeS3(ThreadingHTTPServer):
    """Objects in a dict; ``failures`` are statuses answered (once each) before the real answer;
    ``drop_idle`` closes every connection after its answer without saying so (as a server whose
    keep-alive timeout passed)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.objects: dict[str, bytes] = {}
        self.failures: list[int] = []
        self.drop_idle = False
        self.requests: list[tuple[str, str]] = []
        self.connections = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeS3

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        if self.server.drop_idle:
            self.close_connection = True

    def _handle(self) -> None:
        assert self.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
        self.server.requests.append((self.command, self.path))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.server.failures:
            status = self.server.failures.pop(0)
            self._answer(status, b"<Error><Code>SlowDown</Code><Message>busy</Message></Error>")
            return
        data = self.server.objects.get(self.path)
        if self.command == "PUT":
            self.server.objects[self.path] = body
            self._answer(200, headers={"ETag": '"e"'})
        elif self.command == "DELETE":
            self.server.objects.pop(self.path, None)
            self._answer(204)
        elif data is None:
            self._answer(404, b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code>"
                              b"<Message>The specified key does not exist.</Message></Error>")
        else:
            first, _, last = (self.headers.get("Range") or "bytes=0-").partition("=")[2] \
                .partition("-")
            part = data[int(first): int(last) + 1 if last else None]
            self._answer(206 if self.headers.get("Range") else 200, part, {"ETag": '"e"'})

    do_GET = do_PUT = do_HEAD = do_DELETE = _handle


@pytest.fixture
def s3() -> Iterator[FakeS3]:
    server = FakeS3()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def clock(self) -> float:
        return self.now


def _store(endpoint: str, **options: Any) -> S3ResultStore:
    return S3ResultStore("results", "p", endpoint_url=endpoint, access_key_id="k",
                         secret_access_key="s", **options)


def test_objects_round_trip_on_one_kept_alive_connection(s3: FakeS3) -> None:
    store = _store(s3.endpoint)
    assert isinstance(store.client, LightS3Client)
    data = os.urandom(3 * CHUNK_SIZE)
    store.put("a/b c/ü+.bin", data)
    assert store.get("a/b c/ü+.bin") == data
    assert store.exists("a/b c/ü+.bin")
    with store.open_read("a/b c/ü+.bin") as stream:
        assert stream.read(10) == data[:10]
        store.put("other", b"y")  # a request while a body is open: the body keeps its socket
        assert stream.read() == data[10:]
    response = store.client.get_object(Bucket="results", Key="p/a/b c/ü+.bin")
    assert response["Body"].read(10) == data[:10]
    response["Body"].close()  # abandoned mid-body: that connection is not reused
    assert store.get("other") == b"y"
    store.delete("a/b c/ü+.bin")
    assert not store.exists("a/b c/ü+.bin")
    assert "/results/p/a/b%20c/%C3%BC%2B.bin" in {path for _, path in s3.requests}
    assert s3.connections == 3


def test_a_missing_key_is_result_not_found_and_head_404_is_false(s3: FakeS3) -> None:
    store = _store(s3.endpoint)
    with pytest.raises(ClientError) as caught:
        store.client.get_object(Bucket="results", Key="p/none")
    assert caught.value.response["Error"]["Code"] == "NoSuchKey"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as caught:
        store.client.head_object(Bucket="results", Key="p/none")
    assert caught.value.response["Error"]["Code"] == "404"  # no body to a HEAD, as botocore
    with pytest.raises(ResultNotFound):
        store.get("none")
    assert store.exists("none") is False


def test_a_503_is_retried_by_the_stores_loop(s3: FakeS3) -> None:
    time = FakeTime()
    store = _store(s3.endpoint, sleep=time.sleep, clock=time.clock)
    store.put("k", b"v")
    s3.failures = [503, 503]
    assert store.get("k") == b"v"
    assert time.now == pytest.approx(0.75)  # two backoffs: 0.25 s, 0.5 s


def test_a_connection_the_server_closed_is_reopened_and_the_request_resent(s3: FakeS3) -> None:
    store = _store(s3.endpoint, retry_budget_seconds=0)  # no help from the store's loop
    s3.drop_idle = True
    for index in range(5):
        store.put(f"k{index}", b"v%d" % index)
        assert store.get(f"k{index}") == b"v%d" % index
    assert s3.connections == 10


def test_a_refused_connection_is_transient_and_ends_as_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    time = FakeTime()
    store = _store(f"http://127.0.0.1:{port}", retry_budget_seconds=3, sleep=time.sleep,
                   clock=time.clock)
    with pytest.raises(EndpointConnectionError) as caught:
        store.client.get_object(Bucket="results", Key="p/k")
    assert _is_transient(caught.value)
    with pytest.raises(S3StoreUnavailable):
        store.get("k")
    assert 1.5 < time.now <= 3


def test_timeouts_and_cut_bodies_are_transient(s3: FakeS3) -> None:
    assert _is_transient(ConnectTimeoutError(endpoint_url="x"))
    assert _is_transient(ReadTimeoutError(endpoint_url="x"))
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts (in the backlog) but never answers
    try:
        client = _store(f"http://127.0.0.1:{silent.getsockname()[1]}", read_timeout=0.2).client
        with pytest.raises(ReadTimeoutError) as caught:
            client.get_object(Bucket="results", Key="p/k")
        assert _is_transient(caught.value)
    finally:
        silent.close()
    # A body cut short resumes with a ranged GET pinned to the ETag.
    store = _store(s3.endpoint)
    store.put("big", bytes(range(256)) * 40)
    response = store.client.get_object(Bucket="results", Key="p/big")
    response["Body"].read(100)
    response["Body"].close()
    reader = _ResumingReader(store, "big", response)
    reader._position = 100
    assert reader.read(20000) == (bytes(range(256)) * 40)[100:]
    assert ("GET", "/results/p/big") in s3.requests


# -- which client -------------------------------------------------------------------------------


def test_the_light_client_only_for_a_custom_endpoint_with_static_keys(
        monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = "http://127.0.0.1:9"

    def kind(store: S3ResultStore) -> str:
        return "light" if isinstance(store.client, LightS3Client) else "botocore"

    assert kind(_store(endpoint)) == "light"
    assert kind(S3ResultStore("results", endpoint_url=endpoint)) == "botocore"  # the chain
    assert kind(S3ResultStore("results", access_key_id="k", secret_access_key="s")) == "botocore"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ek")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "es")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "et")
    light = S3ResultStore("results", endpoint_url=endpoint).client
    assert isinstance(light, LightS3Client)
    assert light._credentials == ("ek", "es", "et") and light._region == "us-east-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    assert S3ResultStore("results", endpoint_url=endpoint).client._region == "eu-west-3"
    assert S3ResultStore("results", endpoint_url=endpoint,
                         region="garage").client._region == "garage"
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")  # botocore honours proxies
    assert kind(S3ResultStore("results", endpoint_url=endpoint)) == "botocore"
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv("FLOWPOD_S3_CLIENT", "botocore")
    assert kind(_store(endpoint)) == "botocore"


def test_other_calls_go_to_a_botocore_client_made_on_first_use() -> None:
    made: list[str] = []

    class Botocore:
        def create_multipart_upload(self, **kwargs: Any) -> dict[str, str]:
            return {"UploadId": kwargs["Key"]}

    def fallback() -> Botocore:
        made.append("botocore")
        return Botocore()

    client = LightS3Client("http://127.0.0.1:9", region="us-east-1", access_key="k",
                           secret_key="s", fallback=fallback)
    assert made == []
    assert client.create_multipart_upload(Bucket="b", Key="k") == {"UploadId": "k"}
    client.create_multipart_upload(Bucket="b", Key="k2")
    assert made == ["botocore"]
    real = _store("http://127.0.0.1:9", region="eu-west-3").client
    assert real.meta.region_name == "eu-west-3"  # the store's botocore client, as before


# -- what a task pod loads ----------------------------------------------------------------------


@task
def add(x: int, y: int) -> int:
    return x + y


def test_a_task_attempt_on_a_custom_endpoint_loads_no_botocore_client(
        s3: FakeS3, tmp_path: Path) -> None:
    store = _store(s3.endpoint)
    name = f"add-{uuid.uuid4().hex[:6]}"
    flow_run = FlowRunInfo(id=str(uuid.uuid4()), name="f-run", flow_name="f")
    payload = TaskPayload(task=add, parameters={"x": 1, "y": 2}, run_name="add-0",
                          task_run_id=str(uuid.uuid4()), flow_run=flow_run)
    write_payload(store, "ns", name, payload)
    heavy = ("botocore.client", "botocore.session", "botocore.endpoint", "botocore.loaders",
             "botocore.httpsession", "urllib3", "boto3")
    attempt = (
        "import json, sys\n"
        "from flowpod.pod import main\n"
        "code = main(sys.argv[1:])\n"
        f"print(json.dumps({{'exit': code, 'loaded': [m for m in {heavy!r} "
        "if m in sys.modules]}))\n"
    )
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("FLOWPOD_", "AWS_"))}
    env.update({"FLOWPOD_HOME": str(tmp_path / "home"), "FLOWPOD_S3_BUCKET": "results",
                "FLOWPOD_S3_PREFIX": "p", "FLOWPOD_S3_ENDPOINT": s3.endpoint,
                "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
    proc = subprocess.run(
        [sys.executable, "-c", attempt, "task", f"ns/{name}", "--attempt", "1"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"exit": 0, "loaded": []}
    outcome = read_outcome(store, "ns", name, 1)
    assert outcome is not None and outcome.state == "Completed"
