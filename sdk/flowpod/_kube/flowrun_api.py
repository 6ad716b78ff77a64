"""The Kubernetes API calls behind ``flowpod submit / get / describe / logs / cancel`` and
``submit()``.

``FlowRunApi`` creates, reads, lists, watches and patches FlowRuns, lists and watches TaskRuns (in
one namespace or all), reads a run's Events and reads or follows pod logs. For the dashboard's
shared watches it also lists and watches pods and Events (``list_core`` / ``watch_core``), as
plain camelCase dicts like the custom objects.

It reuses ``TaskRunApi``'s client configuration (explicit kubeconfig/context, in-cluster
service account, default kubeconfig). The CLI and ``flowpod.kubernetes.submit`` make every call
through this one class, so unit tests replace it with a fake. The ``kubernetes`` client is
imported on first use.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from flowpod._kube.taskrun_api import TaskRunApi, watch_stream

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

    def list_with_version(self, namespace: str | None, plural: str,
                          label_selector: str = "") -> dict[str, Any]:
        """The list as the API server returns it (``items`` and ``metadata.resourceVersion``, to
        watch from); ``namespace`` None: every namespace."""
        from flowpod._contract.resources import GROUP, VERSION

        custom = self._custom()
        if namespace is None:
            listed: dict[str, Any] = custom.list_cluster_custom_object(
                GROUP, VERSION, plural, label_selector=label_selector)
        else:
            listed = custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, label_selector=label_selector)
        return listed

    def watch_objects(self, namespace: str | None, plural: str, label_selector: str,
                      resource_version: str, timeout_seconds: int,
                      field_selector: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
        """Changes (type, object) of ``plural`` after ``resource_version`` until the server ends
        the watch; ``namespace`` None: every namespace. WatchExpired on HTTP 410."""
        return self._watch(namespace, plural, plural, label_selector=label_selector,
                           field_selector=field_selector, resource_version=resource_version,
                           timeout_seconds=timeout_seconds)

    def events_for(self, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
        """The core/v1 Events whose involvedObject is this object, as plain dicts (camelCase
        keys, as ``kubectl get events -o json`` shows them)."""
        from kubernetes import client

        core = client.CoreV1Api(self._api())
        listed = core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.kind={kind},involvedObject.name={name}")
        serialized: list[dict[str, Any]] = [
            self._api().sanitize_for_serialization(item) for item in listed.items]
        return serialized

    def _core_call(self, namespace: str | None, plural: str) -> tuple[Any, tuple[str, ...]]:
        from kubernetes import client

        core = client.CoreV1Api(self._api())
        if plural not in ("pods", "events"):
            raise ValueError(f"list_core/watch_core read pods or events, not {plural!r}")
        if namespace is None:
            return getattr(core, f"list_{plural[:-1]}_for_all_namespaces"), ()
        return getattr(core, f"list_namespaced_{plural[:-1]}"), (namespace,)

    def list_core(self, namespace: str | None, plural: str,
                  label_selector: str = "") -> dict[str, Any]:
        """Pods or Events (``plural``) as the API server returns the list (``items`` as camelCase
        dicts, ``metadata.resourceVersion`` to watch from); ``namespace`` None: every one.
        The JSON is read as is, without building the client's model objects."""
        call, args = self._core_call(namespace, plural)
        response = call(*args, label_selector=label_selector, _preload_content=False)
        try:
            listed: dict[str, Any] = json.loads(response.data)
        finally:
            response.release_conn()
        return listed

    def watch_core(self, namespace: str | None, plural: str, label_selector: str,
                   resource_version: str,
                   timeout_seconds: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """Changes (type, object as a camelCase dict) of pods or Events after
        ``resource_version`` until the server ends the watch; WatchExpired on HTTP 410."""
        call, args = self._core_call(namespace, plural)
        return watch_stream(call, args, plural, "raw_object", label_selector=label_selector,
                            resource_version=resource_version,
                            timeout_seconds=timeout_seconds, allow_watch_bookmarks=True)

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

    def pod_log(self, namespace: str, pod: str, *, timestamps: bool = False,
                tail_lines: int | None = None) -> str | None:
        """The pod's current log, or None when the pod is gone or has not started.
        ``timestamps``: each line starts with the kubelet's RFC3339 time of the line."""
        from kubernetes import client

        options: dict[str, Any] = {"timestamps": timestamps}
        if tail_lines is not None:
            options["tail_lines"] = tail_lines
        try:
            text = client.CoreV1Api(self._api()).read_namespaced_pod_log(
                pod, namespace, **options)
        except Exception as exc:  # noqa: BLE001 - gone, pending, or the node is unreachable
            if _not_found(exc) or getattr(exc, "status", None) == 400:
                return None
            raise
        return str(text)

    def follow_pod_log(self, namespace: str, pod: str, *, since_seconds: int | None = None,
                       tail_lines: int | None = None) -> Iterator[str] | None:
        """The pod's log lines (with RFC3339 timestamps) as they are written, until the
        container ends; None when the pod is gone or its container has not started."""
        from kubernetes import client

        options: dict[str, Any] = {"timestamps": True, "follow": True,
                                   "_preload_content": False}
        if since_seconds is not None:
            options["since_seconds"] = since_seconds
        if tail_lines is not None:
            options["tail_lines"] = tail_lines
        try:
            response: Any = client.CoreV1Api(self._api()).read_namespaced_pod_log(
                pod, namespace, **options)
        except Exception as exc:  # noqa: BLE001 - gone or still waiting to start
            if _not_found(exc) or getattr(exc, "status", None) == 400:
                return None
            raise

        def lines() -> Iterator[str]:
            pending = b""
            try:
                for chunk in response.stream(4096):
                    pending += chunk
                    *complete, pending = pending.split(b"\n")
                    for line in complete:
                        yield line.decode("utf-8", "replace")
                if pending:
                    yield pending.decode("utf-8", "replace")
            finally:
                response.release_conn()

        return lines()
