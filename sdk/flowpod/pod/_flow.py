"""One attempt of a FlowRun inside its flow pod: FlowRun in, flow outcome (and result) out.

``run_flow`` is what ``python -m flowpod.pod flow <ns>/<name> --attempt N`` does after choosing a
store: read the FlowRun (the pod's only Kubernetes read), load the flow (``spec.entrypoint``
imported, or ``spec.code`` unpickled from the store), validate the parameters against the flow's
type hints before anything runs, then run the flow with the Kubernetes task runner - direct task
calls run here, submitted ones become TaskRuns owned by the FlowRun - and write the outcome the
operator reads. Flow retries belong to the operator (a new flow pod per attempt), so the flow runs
with ``retries=0``; an attempt after one whose pod was lost resumes it (its TaskRuns are
adopted, see ``flowpod._kube.taskruns.FlowPodRun``). ``spec.timeoutSeconds`` is applied here,
as the flow's own timeout, and the pod's ``activeDeadlineSeconds`` (a little longer) is the
backstop.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from flowpod._contract.keys import flow_result_key
from flowpod._contract.records import FlowOutcome
from flowpod._contract.resuming import resumed_from
from flowpod._kube.taskruns import FLOWRUN_ATTEMPT_VAR, FLOWRUN_SERIES_VAR
from flowpod._storage import get_serializer
from flowpod._storage.run_files import write_flow_outcome
from flowpod.flows import Flow
from flowpod.kubernetes import FLOWRUN_NAME_VAR, FLOWRUN_UID_VAR, KubernetesTaskRunner
from flowpod.pod._task import outcome_state_name

if TYPE_CHECKING:
    from flowpod._storage import ResultStore
    from flowpod.flows import Flow

__all__ = ["FlowLoadError", "load_flow", "read_flowrun", "run_flow"]

log = logging.getLogger("flowpod.pod")

FlowRunReader = Callable[[str, str], Mapping[str, Any]]


class FlowLoadError(Exception):
    """The FlowRun names no runnable flow, or its parameters do not fit the flow."""


def read_flowrun(namespace: str, name: str) -> Mapping[str, Any]:
    """GET the FlowRun with the pod's ServiceAccount (or a kubeconfig outside a cluster)."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    api = client.CustomObjectsApi()
    obj = api.get_namespaced_custom_object("flowpod.dev", "v1alpha1", namespace, "flowruns", name)
    return cast("Mapping[str, Any]", obj)


def load_flow(spec: Any, store: ResultStore) -> Flow[Any, Any]:
    """The flow ``spec`` names; FlowLoadError with a how-to-fix message when there is none."""
    if spec.entrypoint:
        module_name, _, attr = str(spec.entrypoint).partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - any import failure means "not runnable"
            raise FlowLoadError(
                f"unknown entrypoint {spec.entrypoint!r}: cannot import module {module_name!r} "
                f"({type(exc).__name__}: {exc}); the module must be importable in the image"
            ) from exc
        target: Any = module
        for part in attr.split("."):
            target = getattr(target, part, None)
            if target is None:
                raise FlowLoadError(
                    f"unknown entrypoint {spec.entrypoint!r}: module {module_name!r} has no "
                    f"attribute {attr!r}"
                )
    else:
        import pickle

        try:
            target = pickle.loads(store.get(str(spec.code)))
        except Exception as exc:  # noqa: BLE001 - missing or unloadable code
            raise FlowLoadError(
                f"cannot load the flow stored under {spec.code!r}: {type(exc).__name__}: {exc} "
                "(submit it again with `flowpod submit`; the image needs the flow's dependencies)"
            ) from exc
    if not isinstance(target, Flow):
        raise FlowLoadError(
            f"{spec.entrypoint or spec.code!r} is a {type(target).__name__}, not a flow: "
            "decorate the function with @flow"
        )
    return target


def _validated(flow: Flow[Any, Any], parameters: Mapping[str, Any]) -> dict[str, Any]:
    import inspect

    try:
        validated = flow.validate_parameters(dict(parameters))
        # Missing or unknown names: refused here, before anything starts, not as a crash later.
        inspect.signature(flow.fn).bind(**validated)
        return validated
    except Exception as exc:  # noqa: BLE001 - ParameterTypeError, or a missing/unknown one
        raise FlowLoadError(
            f"invalid parameters for flow {flow.name!r}: {exc}"
        ) from exc


def _task_runner(flowrun: Any, namespace: str) -> Any:
    spec = flowrun.spec
    defaults = spec.task_defaults
    image = (defaults.image if defaults else None) or spec.image
    resources = defaults.resources.to_wire() if defaults and defaults.resources else None
    env = [item.to_wire() for item in spec.env] if spec.env else None
    storage = spec.storage.to_wire() if spec.storage is not None else None
    return KubernetesTaskRunner(namespace=namespace, image=image, storage=storage, env=env,
                                resources=resources, image_pull_policy=(
                                    spec.image_pull_policy.value
                                    if spec.image_pull_policy else None))


def _failed(store: ResultStore, namespace: str, name: str, attempt: int,
            message: str) -> FlowOutcome:
    log.error("%s", message)
    outcome = FlowOutcome(attempt=attempt, state="Failed", message=message[:4000])
    write_flow_outcome(store, namespace, name, outcome)
    return outcome


def run_flow(store: ResultStore, namespace: str, name: str, attempt: int,
             reader: FlowRunReader = read_flowrun) -> FlowOutcome:
    """Run attempt ``attempt`` of FlowRun ``namespace/name`` and write its outcome."""
    from flowpod._contract.resources import FlowRunResource

    try:
        flowrun = FlowRunResource.from_object(reader(namespace, name))
        flow = load_flow(flowrun.spec, store)
        parameters = _validated(flow, flowrun.spec.parameters)
    except FlowLoadError as exc:
        return _failed(store, namespace, name, attempt, str(exc))
    except Exception as exc:  # noqa: BLE001 - the FlowRun could not be read or parsed
        return _failed(store, namespace, name, attempt,
                       f"cannot start flow run {namespace}/{name}: {type(exc).__name__}: {exc}")

    series = resumed_from(flowrun.status.history, attempt)
    if series < attempt:
        log.info("Flow attempt %d resumes attempt %d, whose flow pod was lost: the task runs it "
                 "submitted are adopted, not run again", attempt, series)
    os.environ[FLOWRUN_NAME_VAR] = name
    os.environ[FLOWRUN_UID_VAR] = flowrun.metadata.uid or ""
    os.environ[FLOWRUN_ATTEMPT_VAR] = str(attempt)
    os.environ[FLOWRUN_SERIES_VAR] = str(series)
    runner = _task_runner(flowrun, namespace)
    timeout = flowrun.spec.timeout_seconds or flow.timeout_seconds
    prepared = flow.with_options(retries=0, task_runner=runner, timeout_seconds=timeout)
    state: Any
    try:
        if prepared.isasync:
            import asyncio

            state = asyncio.run(prepared(**parameters, return_state=True))
        else:
            state = prepared(**parameters, return_state=True)
    except BaseException as exc:  # noqa: BLE001 - a crash still gets an outcome
        outcome = FlowOutcome(attempt=attempt, state="Crashed",
                              message=f"Flow run crashed: {type(exc).__name__}: {exc}"[:4000])
        write_flow_outcome(store, namespace, name, outcome)
        if not isinstance(exc, Exception):
            raise
        return outcome
    state_name = outcome_state_name(state)
    result_ref: str | None = None
    message = state.message
    if state_name == "Completed":
        try:
            value = state.result()
            data = get_serializer("pickle").dumps(value)
            result_ref = flow_result_key(namespace, name, attempt)
            store.put(result_ref, data)
        except Exception as exc:  # noqa: BLE001 - an unserialisable result fails the run
            state_name = "Failed"
            message = f"Flow run could not persist its result: {type(exc).__name__}: {exc}"
            log.error("%s", message)
    outcome = FlowOutcome(attempt=attempt, state=state_name,
                          message=(message or None) and str(message)[:4000],
                          result_ref=result_ref)
    write_flow_outcome(store, namespace, name, outcome)
    return outcome
