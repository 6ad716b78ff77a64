"""Starting and stopping FlowRuns: ``flowpod submit`` and ``flowpod cancel``, both able to follow
the run to its end with the progress view (``flowpod._cli.progress``).

``submit`` checks everything it can before it writes anything, each failure naming its place:
the flow's parameters against its signature (``--param``, the messages of ``flowpod run``), the
result store's settings (``settings``), whether the store answers with the credentials in use
(``store``, within seconds: ``flowpod._kube.preflight.check_store``), and whether the cluster
answers (``cluster``). Only then does ``flowpod._kube.submit.submit`` upload the flow and create
the FlowRun. Exit codes: 0 success, 1 the run did not complete or a cluster or store failed,
2 a usage error.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from flowpod._cli import access
from flowpod._cli.errors import CliError, CliUsageError
from flowpod._cli.progress import RunProgress
from flowpod._cli.targets import load_flow, parse_params, split_target
from flowpod._contract.labels import FLOWRUN_LABEL, label_value

if TYPE_CHECKING:
    from flowpod._kube.flowrun_api import FlowRunApi
    from flowpod._kube.submit import FlowRunHandle
    from flowpod._storage import ResultStore
    from flowpod.flows import Flow

__all__ = ["cancel_command", "check_parameters", "submit_command"]

_PARAM_FIX = "pass the flow's parameters as --param NAME=VALUE"


def _parse_env(items: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliUsageError(f"{item!r} is not NAME=VALUE", "--env",
                                "write e.g. --env LOG_LEVEL=debug")
        env[key.strip()] = value
    return env


def check_parameters(flow: Flow[..., Any], parameters: Mapping[str, Any]) -> None:
    """Refuse parameters the flow would refuse - missing, unknown, of the wrong type - with
    the messages ``flowpod run`` gives, and values a FlowRun cannot carry (not JSON)."""
    import json

    from flowpod.exceptions import ParameterTypeError, SignatureMismatchError

    try:
        bound = flow._spec.bind((), dict(parameters))  # noqa: SLF001 - the engine's own check
        if flow.should_validate_parameters:
            flow.validate_parameters(bound)
    except (ParameterTypeError, SignatureMismatchError) as exc:
        raise CliUsageError(str(exc), "--param", _PARAM_FIX) from None
    for key, value in parameters.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise CliUsageError(f"parameter {key!r} is not a JSON value", "--param",
                                "FlowRun parameters are JSON values") from None


def _store_for_submit() -> ResultStore:
    store = access.make_store(None)
    if store is None:
        raise CliUsageError(
            "flowpod submit stores the flow where the flow pod reads it, and no result store "
            "is configured", "settings",
            "set FLOWPOD_S3_BUCKET and FLOWPOD_S3_ENDPOINT (and AWS credentials) to the "
            "operator's storage")
    return store


def _check_store(store: ResultStore, key: str) -> None:
    from flowpod._kube.preflight import check_store
    from flowpod.exceptions import ConfigurationError

    try:
        check_store(store, key, f"the result store {store!r} does not answer")
    except ConfigurationError as exc:
        raise CliError(str(exc), "store",
                       "check FLOWPOD_S3_ENDPOINT, the bucket and the AWS credentials "
                       "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or a profile)") from None


def _check_cluster(api: FlowRunApi, namespace: str | None, run_name: str,
                   reach: bool) -> str:
    """The namespace (``reach`` False: only the kubeconfig is read), or, with ``reach``, one
    list of FlowRuns that matches nothing: the API answers and FlowRuns exist there."""
    from flowpod._kube.preflight import cluster_problem

    ns = namespace
    try:
        ns = access.namespace_of(api, namespace)
        if reach:
            api.list_objects(ns, "flowruns", f"{FLOWRUN_LABEL}={label_value(run_name)}")
    except Exception as exc:  # noqa: BLE001 - every failure here is the configuration's
        raise CliError(f"cannot submit to the cluster: {cluster_problem(exc, 'flowruns', ns)}",
                       "cluster") from None
    return ns


def _submit_error(exc: Exception) -> CliError:
    """A failure after the checks passed, placed by what raised it."""
    from flowpod.exceptions import ConfigurationError, SerializationError

    if isinstance(exc, SerializationError):
        return CliUsageError(str(exc), "flow code",
                             "keep what the flow references at module level picklable")
    if isinstance(exc, ConfigurationError):
        where = "store" if "store" in str(exc) else "cluster"
        return CliError(str(exc), where)
    if type(exc).__module__.startswith(("flowpod._storage", "botocore", "boto3")):
        return CliError(f"the result store failed: {type(exc).__name__}: {exc}", "store",
                        "check the bucket and the credentials' rights to write to it")
    return access.api_error(exc)


def _follow(handle: FlowRunHandle, timeout: float | None, verb: str) -> str:
    """Wait for the run with the progress view; the final state."""
    selector = f"{FLOWRUN_LABEL}={label_value(handle.name)}"
    progress = RunProgress(handle.name, handle.namespace,
                           tasks=lambda: handle.api.list_objects(handle.namespace, "taskruns",
                                                                 selector))
    try:
        with progress:
            return handle.wait(timeout, on_change=progress)
    except TimeoutError as exc:
        raise CliError(str(exc), "--timeout", f"wait longer, or see flowpod describe flowrun "
                                              f"{handle.name}") from None
    except KeyboardInterrupt:
        click.echo(f"Stopped following; the run goes on ({verb} {handle.name})", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the watch failed: the API's answer
        raise access.api_error(exc) from None


def _finished_line(handle: FlowRunHandle, state: str) -> str:
    message, reason = handle.message, handle.reason
    return (f"FlowRun {handle.name} finished in state {state}"
            + (f" ({reason})" if reason and state != "Completed" else "")
            + (f": {message}" if message else ""))


_SUBMIT_EXAMPLES = """
\b
Examples:
  # Run the flow etl of flows/etl.py on the cluster and follow it
  flowpod submit flows/etl.py:etl --param day=2026-01-01 --wait
\b
  # In namespace etl, with another image and an environment variable
  flowpod -n etl submit flows/etl.py:etl --image registry/etl:2 -e LOG_LEVEL=debug
"""


@click.command("submit", short_help="Run a flow on the cluster as a FlowRun.",
               epilog=_SUBMIT_EXAMPLES)
@click.argument("target")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
              help="A flow parameter; VALUE is parsed as JSON when it is JSON.")
@access.namespace_option
@click.option("--image", default=None, help="Image of the flow pod (default: the operator's).")
@click.option("--env", "-e", "env", multiple=True, metavar="NAME=VALUE",
              help="An environment variable for the flow pod.")
@click.option("--wait", "-w", is_flag=True, help="Follow the run; exit 1 unless Completed.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="With --wait: give up after this long.")
@click.option("--pending-timeout", "pending_timeout", type=click.FloatRange(min=0, min_open=True),
              default=None, metavar="SECONDS",
              help="How long the flow pod may wait to start (scheduling, image pull) before the "
                   "attempt ends Crashed (PendingTimeout); default: the operator's.")
def submit_command(target: str, params: tuple[str, ...], namespace: str | None,
                   image: str | None, env: tuple[str, ...], wait: bool,
                   timeout: float | None, pending_timeout: float | None) -> None:
    """Run the flow TARGET (path/to/file.py:flow_name) on the cluster as a FlowRun.

    The flow is checked, then pickled to the result store (FLOWPOD_S3_*) where its flow pod
    reads it: no image build is needed, only the flow's dependencies in the image."""
    path, name = split_target(target)
    parameters = parse_params(params)
    env_vars = _parse_env(env)
    flow_obj = load_flow(path, name)
    check_parameters(flow_obj, parameters)

    from flowpod._contract.keys import flow_code_key
    from flowpod._kube.submit import flowrun_object_name, submit

    store = _store_for_submit()
    api = access.make_api()
    run_name = flowrun_object_name(flow_obj.name)
    ns = _check_cluster(api, namespace, run_name, reach=False)
    # The store before the cluster's API: its check fails within seconds, naming the store.
    _check_store(store, flow_code_key(ns, run_name))
    _check_cluster(api, ns, run_name, reach=True)
    try:
        handle = submit(flow_obj, parameters, namespace=ns, image=image, name=run_name,
                        env=env_vars or None, api=api, store=store,
                        pending_timeout_seconds=pending_timeout)
    except Exception as exc:  # noqa: BLE001 - placed by _submit_error
        raise _submit_error(exc) from None
    click.echo(f"flowrun.flowpod.dev/{handle.name} created in namespace {handle.namespace}")
    if not wait:
        return
    state = _follow(handle, timeout, "flowpod cancel")
    click.echo(_finished_line(handle, state))
    if state != "Completed":
        sys.exit(1)


_CANCEL_EXAMPLES = """
\b
Examples:
  # Stop a FlowRun and wait until its pods are gone
  flowpod cancel etl-x7k2qp --wait
"""


@click.command("cancel", short_help="Stop a FlowRun and all its pods.", epilog=_CANCEL_EXAMPLES)
@click.argument("flowrun")
@access.namespace_option
@click.option("--wait", "-w", is_flag=True, help="Wait until the run is Cancelled.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="With --wait: give up after this long.")
def cancel_command(flowrun: str, namespace: str | None, wait: bool,
                   timeout: float | None) -> None:
    """Stop a FlowRun: its flow pod and every task pod (state Cancelled)."""
    from flowpod._contract.states import FINAL_STATES
    from flowpod._kube.submit import FlowRunHandle

    api = access.make_api()
    try:
        ns = access.namespace_of(api, namespace)
        handle = FlowRunHandle(flowrun, ns, api=api)
        state = handle.state
        if state in FINAL_STATES:
            click.echo(f"FlowRun {flowrun} already finished in state {state}; nothing to cancel")
            return
        handle.cancel()
    except Exception as exc:  # noqa: BLE001 - shown as the API's answer
        raise access.api_error(exc) from None
    click.echo(f"flowrun.flowpod.dev/{flowrun} cancel requested")
    if wait:
        final = _follow(handle, timeout, "flowpod get flowrun")
        click.echo(f"FlowRun {flowrun} finished in state {final}")
        if final != "Cancelled":
            sys.exit(1)
