"""Fail fast on configuration: is the cluster reachable, and the result store, before any run?

``KubernetesTaskRunner`` (``flowpod._kube.runner``) and ``submit()`` (``flowpod._kube.submit``)
check once, before their first TaskRun or FlowRun, that the Kubernetes configuration loads and the
namespace answers (one cheap API call their RBAC allows) and that the result store answers with
the credentials in use (one ``exists()`` of a key that is not there, with a retry budget of a few
seconds, so a dead endpoint fails in seconds rather than after a minute of retries). A failure is
one ``ConfigurationError`` that names what failed and how to fix it. ``Verdict`` keeps the answer,
so a flow that maps 200 tasks over a broken configuration checks once and reports once.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from flowpod.exceptions import ConfigurationError

if TYPE_CHECKING:
    from flowpod._storage import ResultStore

__all__ = [
    "PROBE_BUDGET_SECONDS",
    "Verdict",
    "check_cluster",
    "check_store",
    "cluster_problem",
]

PROBE_BUDGET_SECONDS = 20.0
"""How long the store check retries a transient failure (a dead endpoint) before it gives up."""
_PROBE_TIMEOUTS = (5.0, 10.0)  # connect, read: a dead endpoint fails in seconds, not a minute


class Verdict:
    """The cached outcome of one configuration check, shared by every thread that asks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False
        self._error: ConfigurationError | None = None
        self._reported = False

    def check(self, run_check: Callable[[], None]) -> tuple[ConfigurationError | None, bool]:
        """Run ``run_check`` the first time only; (the error or None, whether this caller is the
        first to get that error: the one that reports it)."""
        with self._lock:
            if not self._done:
                try:
                    run_check()
                except ConfigurationError as exc:
                    self._error = exc
                finally:
                    self._done = True
            if self._error is None:
                return None, False
            first, self._reported = not self._reported, True
            return self._error, first


def cluster_problem(exc: BaseException, what: str, namespace: str | None) -> str:
    """Why a Kubernetes API call failed and what to do about it, in one sentence or two."""
    where = f"in namespace {namespace!r}" if namespace else "(the namespace is not known yet)"
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None) or ""
    if status == 401:
        return (f"the Kubernetes API server refused the credentials (401 {reason}) when "
                f"listing {what} {where}: renew the kubeconfig's token or certificate "
                "(kubectl get pods should work)")
    if status == 403:
        return (f"the identity in use may not list {what} {where} (403 {reason}): give the "
                "kubeconfig user, or the pod's ServiceAccount, create/get/list/watch on "
                f"{what}.flowpod.dev there (the chart's RBAC does), or choose another namespace")
    if status == 404:
        return (f"{what} cannot be listed {where} (404 {reason}): the namespace does not exist, "
                "or the flowpod CRDs are not installed (install the chart, or "
                "flowpod crds | kubectl apply -f -)")
    if status is not None:
        return f"the Kubernetes API answered {status} {reason} when listing {what} {where}"
    return (f"cannot load the Kubernetes configuration or reach the API server "
            f"({type(exc).__name__}: {exc}): check KUBECONFIG (or kubeconfig=/context=) and its "
            "current context (kubectl config current-context), or run in a pod with a "
            "ServiceAccount")


def check_cluster(call: Callable[[], object], what: str,
                  namespace: Callable[[], str | None], failed: str) -> None:
    """Make the one cheap API call ``call``; ConfigurationError '<failed>: <the problem and its
    fix>' when it fails (``namespace()``: the namespace, once known)."""
    try:
        call()
    except ConfigurationError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure here is the configuration's
        raise ConfigurationError(
            f"{failed}: {cluster_problem(exc, what, namespace())}"
        ) from exc


def check_store(store: ResultStore, key: str, failed: str) -> None:
    """One ``exists(key)`` on a quick view of ``store``; ConfigurationError '<failed>: <why>'
    when it fails."""
    try:
        _quick(store).exists(key)
    except Exception as exc:  # noqa: BLE001 - every failure here is the configuration's
        raise ConfigurationError(
            f"{failed}: {exc}"
            + ("" if "Check" in str(exc) or "check" in str(exc) else
               ". Check the storage endpoint (FLOWPOD_S3_ENDPOINT / storage.endpoint), the "
               "bucket, and the AWS credentials in use")
        ) from exc


def _quick(store: ResultStore) -> ResultStore:
    """``store`` with a short retry budget (S3: a copy with short timeouts; others: itself)."""
    from flowpod._storage.s3 import S3ResultStore

    if not isinstance(store, S3ResultStore):
        return store
    probe = copy.copy(store)
    probe.retry_budget_seconds = min(store.retry_budget_seconds, PROBE_BUDGET_SECONDS)
    if store._client is None:  # noqa: SLF001 - a client of its own, with short timeouts
        probe._timeouts = _PROBE_TIMEOUTS  # noqa: SLF001
        probe._client_lock = threading.Lock()  # noqa: SLF001
    return probe
