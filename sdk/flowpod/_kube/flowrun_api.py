"""The Kubernetes API calls behind ``flowpod submit / get / logs / cancel`` and ``submit()``.

``FlowRunApi`` creates, reads, lists, watches and patches FlowRuns, lists TaskRuns and reads pod
logs. It reuses ``TaskRunApi``'s client configuration (explicit kubeconfig/context, in-cluster
service account, default kubeconfig). The CLI and ``flowpod.kubernetes.submit`` make every call
through this one class, so unit tests replace it with a fake. The ``kubernetes`` client is
imported on first use.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from flowpod._kube.taskrun_api import TaskRunApi

__all__ = ["FlowRunApi", "NotFound"]


class NotFound(LookupError):
    """The object does not exist (HTTP 404)."""


def _not_found(exc: Exception) -> bool:
    return getattr(exc, "status", None) == 404


class FlowRunApi(TaskRunApi):
    """FlowRun, TaskRun and pod-log access for the CLI and ``flowpod.kubernetes.submit``."""

    def create_flowrun(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        from flowpod._contract.resources import GROUP, VERSION

        created: dict[str, Any] = self._custom().create_namespaced_custom_object(
            GROUP, VERSION, namespace, "flowruns", dict(manifest)
        )
        return created

    def get(self, namespace: str, plural: str, name: str) -> dict[str, Any]:
        """One FlowRun or TaskRun (``plural`` 'flowruns' / 'taskruns'); NotFound if absent."""
        from flowpod._contract.resources import GROUP, VERSION

        try:
            found: dict[str, Any] = self._custom().get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name
            )
        except Exception as exc:
            if _not_found(exc):
                raise NotFound(f"{plural[:-1]} {namespace}/{name} not found") from None
            raise
        return found

    def list_objects(self, namespace: str, plural: str,
                     label_selector: str = "") -> list[dict[str, Any]]:
        from flowpod._contract.resources import GROUP, VERSION

        listed = self._custom().list_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, label_selector=label_selector
        )
        return list(listed.get("items", []))

    def watch_flowrun(self, namespace: str, name: str,
                      timeout_seconds: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """The FlowRun's current object, then its changes until the server ends the watch."""
        return self._watch(namespace, "flowruns", "FlowRun",
                           field_selector=f"metadata.name={name}",
                           timeout_seconds=timeout_seconds)

    def patch_flowrun_spec(self, namespace: str, name: str,
                           spec: Mapping[str, Any]) -> dict[str, Any]:
        from flowpod._contract.resources import GROUP, VERSION

        try:
            patched: dict[str, Any] = self._custom().patch_namespaced_custom_object(
                GROUP, VERSION, namespace, "flowruns", name, {"spec": dict(spec)}
            )
        except Exception as exc:
            if _not_found(exc):
                raise NotFound(f"flowrun {namespace}/{name} not found") from None
            raise
        return patched

    def pod_names(self, namespace: str, label_selector: str) -> list[str]:
        """Names of the pods matching the selector that still exist."""
        from kubernetes import client

        pods = client.CoreV1Api(self._api()).list_namespaced_pod(
            namespace, label_selector=label_selector
        )
        return [str(pod.metadata.name) for pod in pods.items if pod.metadata is not None]

    def pod_log(self, namespace: str, pod: str) -> str | None:
        """The pod's current log, or None when the pod is gone or has not started."""
        from kubernetes import client

        try:
            text = client.CoreV1Api(self._api()).read_namespaced_pod_log(pod, namespace)
        except Exception as exc:  # noqa: BLE001 - gone, pending, or the node is unreachable
            if _not_found(exc) or getattr(exc, "status", None) == 400:
                return None
            raise
        return str(text)
