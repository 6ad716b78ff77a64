"""How the cluster commands reach the cluster and the store: which cluster and namespace, the API
seam, the store, one error form.

- ``cluster_options`` puts ``--kubeconfig``, ``--context`` and ``-n/--namespace`` on the
  ``flowpod`` group; their values travel in ``ctx.meta[CLUSTER_KEY]`` (``ClusterOptions``), so
  every command below the group sees them without the group's function taking parameters
  (``ctx.meta`` rather than ``ctx.obj``: other group options may own the object).
  ``namespace_option`` gives each command its own ``-n`` too, which wins over the group's.
- ``make_api`` builds the ``FlowRunApi`` for those options: the seam unit tests replace.
  ``make_store`` is this process's view of the result store.
- ``api_error`` turns an API exception into one ``CliError`` naming the cluster as the place at
  fault (or the object that is not there).
- ``resolve_kind`` maps what a user types (``fr``, ``flowrun``, ``taskruns`` ...) to a plural.

Only click is imported here; the Kubernetes client and boto3 are imported when a command runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import click

from flowpod._cli.errors import CliError, CliUsageError, settings_error
from flowpod._contract.attempts import parse_time

if TYPE_CHECKING:
    from flowpod._kube.flowrun_api import FlowRunApi
    from flowpod._storage import ResultStore

__all__ = [
    "parse_time",
    "CLUSTER_KEY",
    "ClusterOptions",
    "api_error",
    "cluster_options",
    "current_options",
    "make_api",
    "make_store",
    "namespace_of",
    "namespace_option",
    "resolve_kind",
]

CLUSTER_KEY = "flowpod.cluster"
"""The key of ``ClusterOptions`` in ``click.Context.meta``."""

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ClusterOptions:
    """Where the cluster commands talk to: the kubeconfig file, its context, the namespace."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None


def current_options() -> ClusterOptions:
    """The options of the command being run (defaults outside a click command)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return ClusterOptions()
    found = ctx.meta.get(CLUSTER_KEY)
    return found if isinstance(found, ClusterOptions) else ClusterOptions()


def _remember(field: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def store(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        found = ctx.meta.get(CLUSTER_KEY)
        options = found if isinstance(found, ClusterOptions) else ClusterOptions()
        ctx.meta[CLUSTER_KEY] = replace(options, **{field: value})
        return value

    return store


def cluster_options(group: F) -> F:
    """``--kubeconfig``, ``--context`` and ``-n/--namespace`` for the ``flowpod`` group; the
    values go to ``ctx.meta`` (``expose_value=False``: the group's function is unchanged)."""
    for decorator in reversed((
        click.option("--kubeconfig", metavar="PATH", default=None, expose_value=False,
                     callback=_remember("kubeconfig"),
                     help="Kubeconfig file of the cluster commands (default: $KUBECONFIG, "
                          "~/.kube/config, or the pod's service account)."),
        click.option("--context", metavar="NAME", default=None, expose_value=False,
                     callback=_remember("context"),
                     help="Kubeconfig context to use (default: its current context)."),
        click.option("--namespace", "-n", metavar="NS", default=None, expose_value=False,
                     callback=_remember("namespace"),
                     help="Namespace of the cluster commands (default: the context's)."),
    )):
        group = decorator(group)
    return group


namespace_option = click.option(
    "--namespace", "-n", metavar="NS", default=None,
    help="Namespace (default: flowpod -n, else the kubeconfig context's).")


def make_api() -> FlowRunApi:
    """The API access of the running command, for its cluster options (tests replace this)."""
    from flowpod._kube.flowrun_api import FlowRunApi

    options = current_options()
    return FlowRunApi(options.kubeconfig, options.context)


def namespace_of(api: FlowRunApi, namespace: str | None) -> str:
    """The command's ``-n``, else the group's ``-n``, else the kubeconfig context's namespace."""
    return namespace or current_options().namespace or api.default_namespace()


def make_store(storage: Mapping[str, Any] | None) -> ResultStore | None:
    """This process's view of the result store: FLOWPOD_S3_* first, else the run's storage.
    A malformed setting is a usage error naming the settings."""
    from flowpod._kube.storage_views import reader_store

    try:
        return reader_store(storage)
    except ValueError as exc:  # pydantic's ValidationError and ConfigurationError among them
        if getattr(exc, "what", None):
            raise settings_error(exc) from None  # a setting that says itself what is wrong
        raise CliUsageError(
            f"the result store settings are not valid: {_first_line(exc)}", "settings",
            "fix FLOWPOD_S3_BUCKET / FLOWPOD_S3_ENDPOINT / FLOWPOD_S3_PREFIX") from None


def _first_line(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):  # a pydantic ValidationError: each field and what is wrong with it
        try:
            return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors())
        except Exception:  # noqa: BLE001 - fall back to the text
            pass
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _body_message(exc: BaseException) -> str:
    try:
        message = json.loads(getattr(exc, "body", "") or "{}").get("message")
    except (TypeError, ValueError, AttributeError):
        return ""
    return f": {message}" if message else ""


def api_error(exc: BaseException) -> CliError:
    """One line for a failed API call: absent object, refusal (with the server's message), or a
    cluster that cannot be reached."""
    from flowpod._kube.flowrun_api import NotFound

    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, NotFound):
        return CliError(str(exc), "cluster",
                        "check the name and namespace (flowpod get flowruns -A lists them all)")
    status = getattr(exc, "status", None)
    if status is not None:
        reason = getattr(exc, "reason", None) or ""
        fix = {401: "renew the kubeconfig's credentials (kubectl get pods should work)",
               403: "ask for RBAC on flowruns/taskruns.flowpod.dev there, or use another "
                    "namespace (-n)",
               404: "install the flowpod CRDs (flowpod crds | kubectl apply -f -) or check "
                    "the namespace"}.get(int(status), "see the API server's message")
        return CliError(f"the Kubernetes API refused the call: {status} {reason}"
                        f"{_body_message(exc)}", "cluster", fix)
    options = current_options()
    where = "cluster" + (f" context {options.context}" if options.context else "")
    return CliError(f"cannot reach the cluster: {type(exc).__name__}: {exc}", where,
                    "check --kubeconfig / KUBECONFIG and its context "
                    "(kubectl config current-context)")


_KINDS = {"flowrun": "flowruns", "flowruns": "flowruns", "fr": "flowruns",
          "taskrun": "taskruns", "taskruns": "taskruns", "tr": "taskruns"}
_KINDS.update({f"{key}.flowpod.dev": value for key, value in list(_KINDS.items())})


def resolve_kind(kind: str) -> str:
    """'flowruns' or 'taskruns' for what the user typed; a usage error otherwise."""
    plural = _KINDS.get(kind.lower())
    if plural is None:
        raise CliUsageError(f"{kind!r} is not a kind flowpod knows", "KIND",
                            "use flowruns (fr) or taskruns (tr)")
    return plural
