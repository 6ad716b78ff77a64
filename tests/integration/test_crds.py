"""The generated CRDs on a real API server: they install, serve objects, show the printer
columns, reject what the schema forbids with a readable message, and keep status separate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from flowpod._cli.crds import default_output_dir
from flowpod._contract.resources import (
    GROUP,
    VERSION,
    FlowRunResource,
    FlowRunSpec,
    TaskRunResource,
    TaskRunSpec,
)

from .harness import Cluster

CRD_NAMES = ("taskruns.flowpod.dev", "flowruns.flowpod.dev")


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> Iterator[None]:
    """The CRDs from crds/, applied server-side (left installed: other tests use them too)."""
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager", "flowpod-tests",
        "-f", str(default_output_dir()),
    )
    for name in CRD_NAMES:
        cluster.kubectl("wait", "--for", "condition=Established", f"crd/{name}", "--timeout", "60s")
    yield


def task_run(name: str, namespace: str, **overrides: Any) -> dict[str, Any]:
    spec = TaskRunSpec(
        task_name="add",
        task_key="add-0123456789abcdef",
        run_name="add-0",
        payload=f"runs/{namespace}/fr/{name}/payload",
        retries=2,
        retry_delay_seconds=[1.0, 5.0],
        timeout_seconds=30,
        image="flowpod:dev",
    )
    manifest = spec.to_manifest(name, namespace)
    manifest["spec"].update(overrides)
    return manifest


def flow_run(name: str, namespace: str, **overrides: Any) -> dict[str, Any]:
    spec = FlowRunSpec(
        entrypoint="examples.etl:pipeline",
        flow_name="pipeline",
        parameters={"n": 3, "tags": ["a", "b"], "options": {"deep": {"x": None}}},
        ttl_seconds_after_finished=600,
    )
    manifest = spec.to_manifest(name, namespace)
    manifest["spec"].update(overrides)
    return manifest


def objects(kube_api: Any) -> Any:
    return client.CustomObjectsApi(kube_api)


def create(kube_api: Any, manifest: dict[str, Any], strict: bool = True) -> dict[str, Any]:
    plural = "taskruns" if manifest["kind"] == "TaskRun" else "flowruns"
    created: dict[str, Any] = objects(kube_api).create_namespaced_custom_object(
        GROUP, VERSION, manifest["metadata"]["namespace"], plural, manifest,
        field_validation="Strict" if strict else None,
    )
    return created


def rejection(kube_api: Any, manifest: dict[str, Any]) -> str:
    """The API server's message refusing ``manifest`` (the test fails if it is accepted)."""
    with pytest.raises(ApiException) as info:
        create(kube_api, manifest)
    assert info.value.status in (400, 422), info.value.body
    return str(json.loads(info.value.body or "{}").get("message", ""))


def test_valid_objects_round_trip_through_the_api_server(
    crds: None, kube_api: Any, namespace: str
) -> None:
    created = create(kube_api, task_run("add-0", namespace))
    parsed = TaskRunResource.from_object(created)
    assert parsed.spec == TaskRunResource.from_object(task_run("add-0", namespace)).spec
    assert parsed.metadata.uid and parsed.metadata.generation == 1
    # The schema's defaults were applied by the server.
    assert created["spec"]["refreshCache"] is False

    flow = FlowRunResource.from_object(create(kube_api, flow_run("etl-1", namespace)))
    assert flow.spec.parameters == {"n": 3, "tags": ["a", "b"], "options": {"deep": {"x": None}}}


def test_kubectl_get_shows_the_printer_columns(
    crds: None, cluster: Cluster, kube_api: Any, namespace: str
) -> None:
    create(kube_api, task_run("add-0", namespace))
    objects(kube_api).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "taskruns", "add-0",
        {"status": {"state": "Running", "stateType": "RUNNING", "attempt": 1,
                    "duration": "3s", "pod": "add-0-1"}},
    )
    out = cluster.kubectl("get", "taskruns", "-n", namespace).stdout.splitlines()
    assert out[0].split() == ["NAME", "TASK", "STATE", "ATTEMPT", "AGE", "DURATION"]
    row = out[1].split()
    assert row[:4] == ["add-0", "add", "Running", "1"] and row[-1] == "3s"
    wide = cluster.kubectl("get", "tr", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert "POD" in wide[0].split() and "add-0-1" in wide[1].split()

    create(kube_api, flow_run("etl-1", namespace))
    objects(kube_api).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "flowruns", "etl-1",
        {"status": {"state": "Running", "tasksSummary": "3/5",
                    "taskRuns": {"total": 5, "completed": 3, "running": 2}}},
    )
    flows = cluster.kubectl("get", "fr", "-n", namespace).stdout.splitlines()
    assert flows[0].split() == ["NAME", "FLOW", "STATE", "TASKS", "AGE", "DURATION"]
    assert flows[1].split()[:4] == ["etl-1", "pipeline", "Running", "3/5"]
    # Both kinds are in the `flowpod` category.
    names = cluster.kubectl("get", "flowpod", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(names) == ["flowrun.flowpod.dev/etl-1", "taskrun.flowpod.dev/add-0"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"imagePullPolicy": "Sometimes"}, 'spec.imagePullPolicy: Unsupported value: "Sometimes"'),
        ({"timeoutSeconds": -1}, "spec.timeoutSeconds in body should be greater than 0"),
        ({"retries": -2}, "spec.retries in body should be greater than or equal to 0"),
        ({"retryDelaySeconds": [1] * 51}, "spec.retryDelaySeconds: Too many: 51"),
        ({"serviceAccountName": "Bad_Name"}, "spec.serviceAccountName in body should match"),
        ({"taskName": None}, "spec.taskName: Required value"),
        (
            {"env": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "hunter2"}]},
            "credentials must not be written into a spec",
        ),
        (
            {"storage": {"bucket": "results", "secretAccessKey": "hunter2"}},
            'unknown field "spec.storage.secretAccessKey"',
        ),
    ],
    ids=["bad-enum", "negative-timeout", "negative-retries", "too-many-delays", "bad-name",
         "missing-field", "literal-credential-env", "credential-in-storage"],
)
def test_invalid_task_runs_are_rejected_with_a_readable_message(
    crds: None, kube_api: Any, namespace: str, overrides: dict[str, Any], expected: str
) -> None:
    manifest = task_run("bad", namespace, **overrides)
    manifest["spec"] = {k: v for k, v in manifest["spec"].items() if v is not None}
    assert expected in rejection(kube_api, manifest)


def test_flow_run_needs_exactly_one_of_entrypoint_and_code(
    crds: None, kube_api: Any, namespace: str
) -> None:
    both = flow_run("both", namespace, code="flows/abc")
    assert "exactly one of spec.entrypoint and spec.code must be set" in rejection(kube_api, both)
    neither = flow_run("neither", namespace)
    del neither["spec"]["entrypoint"]
    assert "exactly one of spec.entrypoint and spec.code must be set" in rejection(
        kube_api, neither
    )
    code_only = flow_run("code-only", namespace, code="flows/abc")
    del code_only["spec"]["entrypoint"]
    assert create(kube_api, code_only)["spec"]["code"] == "flows/abc"


def test_kubectl_apply_rejects_credentials_in_a_spec(
    crds: None, cluster: Cluster, namespace: str
) -> None:
    manifest = task_run("creds", namespace, storage={"bucket": "results", "accessKeyId": "AKIA"})
    proc = cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest), check=False)
    assert proc.returncode != 0
    assert 'unknown field "spec.storage.accessKeyId"' in proc.stderr


def test_a_lax_client_still_cannot_store_credentials(
    crds: None, kube_api: Any, namespace: str
) -> None:
    # Without strict field validation the server prunes unknown fields instead of refusing them:
    # the credential is dropped, never stored.
    manifest = task_run("lax", namespace, storage={"bucket": "results", "secretAccessKey": "x"})
    created = create(kube_api, manifest, strict=False)
    assert created["spec"]["storage"] == {"bucket": "results", "prefix": ""}


def test_status_subresource_keeps_spec_and_status_apart(
    crds: None, kube_api: Any, namespace: str
) -> None:
    api = objects(kube_api)
    create(kube_api, task_run("add-0", namespace))
    patched = api.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "taskruns", "add-0",
        {"spec": {"retries": 9}, "status": {"state": "Completed", "stateType": "COMPLETED",
                                             "attempt": 1, "resultRef": "runs/x/result"}},
    )
    assert patched["spec"]["retries"] == 2  # the status endpoint ignores spec changes
    assert patched["status"]["state"] == "Completed"
    assert patched["metadata"]["generation"] == 1

    # ... and the main endpoint ignores status changes.
    updated = api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "taskruns", "add-0",
        {"spec": {"retries": 3}, "status": {"state": "Failed"}},
    )
    assert updated["spec"]["retries"] == 3 and updated["status"]["state"] == "Completed"
    assert updated["metadata"]["generation"] == 2
    parsed = TaskRunResource.from_object(updated)
    assert parsed.status.result_ref == "runs/x/result"

    with pytest.raises(ApiException) as info:
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "taskruns", "add-0", {"status": {"state": "Sleeping"}}
        )
    message = json.loads(info.value.body)["message"]
    assert 'status.state: Unsupported value: "Sleeping"' in message
