"""The SDK's only Kubernetes API access: create, read, list and watch TaskRuns.

``KubernetesTaskRunner`` goes through ``TaskRunApi`` for every call, so tests replace this one
class with a fake and everything else runs for real. The ``kubernetes`` client is imported on
first use.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["AlreadyExists", "TaskRunApi", "WatchExpired", "watch_stream"]

_SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class WatchExpired(Exception):  # noqa: N818 - a signal to re-list, not an error
    """The watch's resourceVersion is too old (HTTP 410): list again and watch from there."""


class AlreadyExists(Exception):  # noqa: N818 - named for the API's own reason
    """A TaskRun of that name exists already (HTTP 409 on create)."""


class TaskRunApi:
    """Creates, lists and watches TaskRuns; nothing else in the SDK calls the Kubernetes API.

    Configuration: an explicit ``kubeconfig`` / ``context``, else the in-cluster service account
    when running in a pod, else the default kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``).
    """

    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self._client: Any = None
        self._lock = threading.Lock()
        self._context_namespace: str | None = None

    def _api(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        from kubernetes import client, config

        if self.kubeconfig is None and self.context is None and os.environ.get(
            "KUBERNETES_SERVICE_HOST"
        ):
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return client.ApiClient()
        # The client reads $KUBECONFIG once, when it is first imported; read it now instead, so a
        # KUBECONFIG set later in the process (a test fixture, a notebook) is honoured.
        config_file = self.kubeconfig or os.environ.get("KUBECONFIG") or None
        try:
            contexts, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                config_file=config_file
            )
            if self.context is not None:
                active = next((c for c in contexts if c.get("name") == self.context), active)
            self._context_namespace = (active or {}).get("context", {}).get("namespace")
        except Exception:  # noqa: BLE001 - only the default namespace depends on it
            pass
        return config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=config_file, context=self.context, persist_config=False
        )

    def default_namespace(self) -> str:
        """The kubeconfig context's namespace, the pod's own namespace, else 'default'."""
        if os.environ.get("KUBERNETES_SERVICE_HOST") and self.kubeconfig is None:
            try:
                with open(_SA_NAMESPACE_FILE) as handle:
                    found = handle.read().strip()
                if found:
                    return found
            except OSError:
                pass
        self._api()
        return self._context_namespace or "default"

    def _custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self._api())

    def create(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create the TaskRun; AlreadyExists when one of its name is there."""
        from kubernetes.client.exceptions import ApiException

        from flowpod._contract.resources import GROUP, VERSION

        try:
            created: dict[str, Any] = self._custom().create_namespaced_custom_object(
                GROUP, VERSION, namespace, "taskruns", dict(manifest)
            )
        except ApiException as exc:
            if exc.status == 409:
                raise AlreadyExists(str(manifest["metadata"]["name"])) from None
            raise
        return created

    def get_taskrun(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The TaskRun ``namespace/name``, None when there is none."""
        from kubernetes.client.exceptions import ApiException

        from flowpod._contract.resources import GROUP, VERSION

        try:
            found: dict[str, Any] = self._custom().get_namespaced_custom_object(
                GROUP, VERSION, namespace, "taskruns", name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def list(self, namespace: str, label_selector: str) -> tuple[list[dict[str, Any]], str]:
        """The matching TaskRuns and the list's resourceVersion (to watch from)."""
        from flowpod._contract.resources import GROUP, VERSION

        listed = self._custom().list_namespaced_custom_object(
            GROUP, VERSION, namespace, "taskruns", label_selector=label_selector
        )
        return list(listed.get("items", [])), str(listed["metadata"]["resourceVersion"])

    def watch(self, namespace: str, label_selector: str, resource_version: str,
              timeout_seconds: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """Events (type, object) after ``resource_version`` until the server ends the watch."""
        return self._watch(namespace, "taskruns", "TaskRun", label_selector=label_selector,
                           resource_version=resource_version, timeout_seconds=timeout_seconds,
                           allow_watch_bookmarks=True)

    def _watch(self, namespace: str | None, plural: str, kind_name: str,
               **options: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        """Watch events of ``plural`` in ``namespace`` (None: every namespace) as (type,
        object); WatchExpired on HTTP 410."""
        from flowpod._contract.resources import GROUP, VERSION

        custom = self._custom()
        args: tuple[str, ...]
        if namespace is None:
            call, args = custom.list_cluster_custom_object, (GROUP, VERSION, plural)
        else:
            call, args = custom.list_namespaced_custom_object, (GROUP, VERSION, namespace, plural)
        return watch_stream(call, args, kind_name, "object", **options)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a pool that is in use by a dead watch
                pass


def watch_stream(call: Any, args: tuple[str, ...], what: str, field: str,
                 **options: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """The events of a list ``call`` in watch mode as (type, ``event[field]``): 'object' for
    custom objects (already dicts), 'raw_object' for core kinds (the JSON as sent, without the
    client's model classes). WatchExpired on HTTP 410; another error event raises."""
    from kubernetes import watch
    from kubernetes.client.exceptions import ApiException

    stream = watch.Watch()  # type: ignore[no-untyped-call]
    try:
        for event in stream.stream(call, *args, **options):  # type: ignore[no-untyped-call]
            kind = str(event.get("type"))
            obj = event.get(field) or {}
            if kind == "ERROR":
                if isinstance(obj, dict) and obj.get("code") == 410:
                    raise WatchExpired(str(obj.get("message")))
                raise RuntimeError(f"the {what} watch failed: {obj}")
            yield kind, obj
    except ApiException as exc:
        if exc.status == 410:
            raise WatchExpired(str(exc.reason)) from None
        raise
    finally:
        stream.stop()  # type: ignore[no-untyped-call]
