"""The operator's calls to the Kubernetes API, and nothing else talks to it.

Every call returns plain JSON dicts. Calls are blocking (urllib3); the handlers run them in a
worker thread. The rules of the game:

- ``create_pod``: a 409 means the pod exists already (a repeated event, or a restart after the
  create went through): the existing pod is read and returned - adoption, never a second pod.
- ``patch_status``: a JSON merge patch of ``status`` carrying ``metadata.resourceVersion``, so a
  patch computed from an outdated view fails with ``Conflict`` instead of appending history twice;
  the caller re-reads and decides again.
- ``post_event``: best effort; an event that cannot be posted is logged, never fatal.

``KubeApi.requests`` counts the calls made, by method and kind (``PATCH taskruns/status``), for
the operator's counters (``flowpod_operator.handlers``) and the benchmarks.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from flowpod._contract.resources import API_VERSION, GROUP, VERSION

__all__ = ["ApiError", "Conflict", "KubeApi", "request_kind"]

logger = logging.getLogger("flowpod.operator.kube")

_MERGE_PATCH = "application/merge-patch+json"


def request_kind(method: str, path: str) -> str:
    """``POST pods``, ``PATCH taskruns/status``, ``GET taskruns``: a request's method and the
    kind it addresses (the path's resource plural, and its subresource if any)."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    # .../namespaces/<ns>/<plural>[/<name>[/<subresource>]]
    if "namespaces" in parts:
        rest = parts[parts.index("namespaces") + 2:]
    else:
        rest = parts[-1:]
    kind = rest[0] if rest else "?"
    if len(rest) >= 3:
        kind = f"{kind}/{rest[2]}"
    return f"{method} {kind}"


class Conflict(Exception):
    """The object changed since it was read (HTTP 409 on a patch with a resourceVersion)."""


def _api_client(max_connections: int) -> Any:
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG") or None, client_configuration=configuration
        )
    # One pooled connection per worker thread, so concurrent calls do not queue on the pool.
    configuration.connection_pool_maxsize = max_connections
    return client.ApiClient(configuration)


class ApiError(Exception):
    """The API server refused a request; ``status`` is the HTTP status, ``body`` its answer."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


class KubeApi:
    """The calls the operator makes, over one pooled HTTPS connection set.

    The official client is used for what it does well - reading kubeconfig / in-cluster
    credentials into a configured urllib3 pool - but requests go out directly: its generated
    API methods validate arguments and build models at ~3 ms of CPU per call, several times the
    cost of the request itself, and the operator makes a few calls per transition.
    """

    def __init__(self, api_client: Any = None, max_connections: int = 16,
                 timeout: float = 30.0) -> None:
        self.api_client = api_client if api_client is not None else _api_client(max_connections)
        self.configuration = self.api_client.configuration
        self.pool = self.api_client.rest_client.pool_manager
        self.host = str(self.configuration.host).rstrip("/")
        self.timeout = timeout
        self.instance = os.environ.get("HOSTNAME") or socket.gethostname()
        self.requests: Counter[str] = Counter()
        self._count_guard = threading.Lock()

    def close(self) -> None:
        self.api_client.close()

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        # auth_settings() runs the credential refresh hook (in-cluster tokens rotate).
        for setting in self.configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        return headers

    def request(self, method: str, path: str, body: Any = None,
                content_type: str | None = None) -> dict[str, Any]:
        """One API call; the decoded JSON answer, ApiError for any status >= 400."""
        with self._count_guard:
            self.requests[request_kind(method, path)] += 1
        data = None if body is None else json.dumps(body).encode("utf-8")
        if data is not None and content_type is None:
            content_type = "application/json"
        response = self.pool.request(
            method, self.host + path, body=data, headers=self._headers(content_type),
            timeout=self.timeout, retries=False,
        )
        text = response.data
        if response.status >= 400:
            raise ApiError(method, path, response.status, text.decode("utf-8", "replace"))
        decoded: dict[str, Any] = json.loads(text) if text else {}
        return decoded

    # -- pods -----------------------------------------------------------------------------------

    def create_pod(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create the pod, or return the existing one of that name (adoption)."""
        namespace = manifest["metadata"]["namespace"]
        try:
            return self.request("POST", f"/api/v1/namespaces/{namespace}/pods", manifest)
        except ApiError as exc:
            if exc.status != 409:
                raise
        existing = self.read_pod(namespace, manifest["metadata"]["name"])
        if existing is None:  # deleted between the 409 and the read: let the next event decide
            return {"metadata": dict(manifest["metadata"]), "status": {}}
        return existing

    def _get_or_none(self, path: str) -> dict[str, Any] | None:
        """GET ``path``; None when the object does not exist (404)."""
        try:
            return self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _patch_status(self, kind: str, path: str, namespace: str, name: str,
                      resource_version: str | None, status: dict[str, Any]) -> dict[str, Any]:
        """Merge ``status`` into the object's status subresource; Conflict if it changed since
        ``resource_version`` was read."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            return self.request("PATCH", path + "/status", body, _MERGE_PATCH)
        except ApiError as exc:
            if exc.status == 409:
                raise Conflict(f"{kind} {namespace}/{name} changed since it was read") from exc
            raise

    def read_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_or_none(f"/api/v1/namespaces/{namespace}/pods/{name}")

    # -- TaskRuns -------------------------------------------------------------------------------

    def _taskrun_path(self, namespace: str, name: str) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/taskruns/{name}"

    def read_taskrun(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_or_none(self._taskrun_path(namespace, name))

    def patch_status(
        self, namespace: str, name: str, resource_version: str | None, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge ``status`` into the TaskRun's status; Conflict if it changed meanwhile."""
        return self._patch_status("TaskRun", self._taskrun_path(namespace, name), namespace, name,
                                  resource_version, status)

    # -- FlowRuns and their clean-up -------------------------------------------------------------

    def _flowrun_path(self, namespace: str, name: str) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/flowruns/{name}"

    def read_flowrun(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_or_none(self._flowrun_path(namespace, name))

    def patch_flowrun_status(
        self, namespace: str, name: str, resource_version: str | None, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge ``status`` into the FlowRun's status; Conflict if it changed meanwhile."""
        return self._patch_status("FlowRun", self._flowrun_path(namespace, name), namespace, name,
                                  resource_version, status)

    def delete_flowrun(self, namespace: str, name: str) -> None:
        """Delete the FlowRun, its dependents in the background (404: already gone)."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            self.request("DELETE", self._flowrun_path(namespace, name), body)
        except ApiError as exc:
            if exc.status != 404:
                raise

    def delete_pod(self, namespace: str, name: str) -> None:
        """Delete a pod now (grace period 0: a cancelled run stops at once); 404 is fine."""
        try:
            self.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}",
                         {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
        except ApiError as exc:
            if exc.status != 404:
                raise

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        from urllib.parse import quote

        answer = self.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector={quote(label_selector)}"
        )
        return list(answer.get("items") or [])

    # -- events ---------------------------------------------------------------------------------

    def post_event(
        self, taskrun: dict[str, Any], type_: str, reason: str, message: str
    ) -> None:
        """An event on the TaskRun (or the FlowRun, by the body's kind); best effort: failures
        are logged."""
        meta = taskrun.get("metadata", {})
        namespace, name = meta.get("namespace"), meta.get("name")
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": taskrun.get("kind") or "TaskRun",
                "name": name,
                "namespace": namespace,
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "flowpod-operator"},
            "reportingComponent": "flowpod.dev/operator",
            "reportingInstance": self.instance[:128],
            "firstTimestamp": now[:19] + "Z",
            "lastTimestamp": now[:19] + "Z",
            "eventTime": now,
            "action": reason,
            "count": 1,
        }
        try:
            self.request("POST", f"/api/v1/namespaces/{namespace}/events", event)
        except Exception as exc:  # noqa: BLE001 - events are informational
            logger.warning("could not post event %s on TaskRun %s/%s: %s",
                           reason, namespace, name, exc)
