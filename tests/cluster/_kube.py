"""A thin JSON REST client for the node agent, built on the kubeconfig resolution of `kubernetes`.

The agent works on plain dicts in the API's own camelCase shape (what it reads it patches back),
so it talks HTTP itself instead of going through the generated models: exact content types for
patches, exact timestamp formats, and a watch loop that sees 410 Gone and bookmarks as they are.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import urllib3

JSON = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class ApiError(Exception):
    """The API server answered with an error status (or could not be reached: status 0)."""

    def __init__(self, status: int, reason: str, body: JSON | None = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.body = body or {}


class KubeClient:
    """Requests against one API server with the credentials of one kubeconfig."""

    def __init__(self, kubeconfig: str, pool_size: int = 64) -> None:
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=cfg, persist_config=False
        )
        self._cfg = cfg
        self.host = cfg.host.rstrip("/")
        self.ca_file: str | None = cfg.ssl_ca_cert
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=pool_size,
            cert_reqs="CERT_REQUIRED" if cfg.verify_ssl else "CERT_NONE",
            ca_certs=cfg.ssl_ca_cert,
            cert_file=cfg.cert_file,
            key_file=cfg.key_file,
            assert_hostname=cfg.assert_hostname,
            server_hostname=cfg.tls_server_name,
        )

    def ca_bytes(self) -> bytes:
        """The CA bundle that verifies the API server, for pods' ca.crt."""
        return Path(self.ca_file).read_bytes() if self.ca_file else b""

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self._cfg.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            headers["Authorization"] = token
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def url(self, path: str, query: dict[str, Any] | None = None) -> str:
        q = {k: v for k, v in (query or {}).items() if v is not None}
        return self.host + path + ("?" + urllib.parse.urlencode(q) if q else "")

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> JSON:
        data = None if body is None else json.dumps(body).encode()
        try:
            resp = self._pool.request(
                method,
                self.url(path, query),
                body=data,
                headers=self._headers(content_type if data is not None else None),
                timeout=urllib3.Timeout(connect=5.0, read=timeout),
                retries=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise ApiError(0, f"cannot reach the API server: {exc}") from exc
        payload: JSON = {}
        if resp.data:
            try:
                payload = json.loads(resp.data)
            except ValueError:
                payload = {"message": resp.data[:500].decode(errors="replace")}
        if resp.status >= 400:
            raise ApiError(resp.status, str(payload.get("message", resp.reason)), payload)
        return payload

    def get(self, path: str, **query: Any) -> JSON:
        return self.request("GET", path, query=query)

    def watch(self, path: str, timeout_seconds: int = 240, **query: Any) -> Iterator[JSON]:
        """Yield watch events ({type, object}) until the server ends the stream."""
        q = dict(query, watch="true", timeoutSeconds=timeout_seconds)
        try:
            resp = self._pool.request(
                "GET",
                self.url(path, q),
                headers=self._headers(None),
                timeout=urllib3.Timeout(connect=5.0, read=timeout_seconds + 60),
                preload_content=False,
                retries=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise ApiError(0, f"cannot reach the API server: {exc}") from exc
        try:
            if resp.status >= 400:
                body = resp.read()
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {}
                raise ApiError(resp.status, str(payload.get("message", resp.reason)), payload)
            buf = b""
            try:
                for chunk in resp.stream(None, decode_content=False):
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if line.strip():
                            yield json.loads(line)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise ApiError(0, f"watch stream broken: {exc}") from exc
        finally:
            resp.release_conn()
