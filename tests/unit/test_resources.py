"""The TaskRun/FlowRun models: what they accept, what they refuse, and how objects round-trip."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from flowpod._contract.resources import (
    API_VERSION,
    FlowRunResource,
    FlowRunSpec,
    TaskRunResource,
    TaskRunSpec,
    from_object,
)
from flowpod._contract.states import StateName, StateType, state_type_of


def task_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "taskName": "add",
        "taskKey": "add-0123456789abcdef",
        "runName": "add-0",
        "payload": "runs/default/fr-1/add-0/payload",
        "retries": 2,
        "retryDelaySeconds": [1, 2.5],
        "timeoutSeconds": 30,
        "image": "flowpod:dev",
        "env": [
            {"name": "MODE", "value": "fast"},
            {
                "name": "AWS_SECRET_ACCESS_KEY",
                "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": "secret"}},
            },
        ],
        "resources": {"requests": {"cpu": "500m", "memory": "128Mi"}, "limits": {"cpu": 1}},
        "storage": {
            "bucket": "flowpod-results",
            "prefix": "team-a",
            "endpoint": "http://minio.storage:9000",
            "credentialsSecret": {"name": "s3-creds"},
        },
    }
    spec.update(overrides)
    return spec


def flow_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "entrypoint": "examples.etl:pipeline",
        "parameters": {"n": 3, "nested": {"a": [1, 2, None]}},
        "taskDefaults": {"image": "flowpod:dev", "resources": {"limits": {"memory": "1Gi"}}},
        "ttlSecondsAfterFinished": 3600,
    }
    spec.update(overrides)
    return spec


def error_text(spec_model: type[TaskRunSpec] | type[FlowRunSpec], data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        spec_model.model_validate(data)
    return str(info.value)


def test_task_run_manifest_round_trips() -> None:
    spec = TaskRunSpec.model_validate(task_spec())
    manifest = spec.to_manifest("add-0", "default", labels={"flowpod.dev/flow-run": "fr-1"})
    assert manifest["apiVersion"] == API_VERSION
    assert manifest["kind"] == "TaskRun"
    assert manifest["metadata"] == {
        "name": "add-0",
        "namespace": "default",
        "labels": {"flowpod.dev/flow-run": "fr-1"},
    }
    wire = manifest["spec"]
    assert wire["taskName"] == "add" and wire["retryDelaySeconds"] == [1.0, 2.5]
    assert wire["storage"]["credentialsSecret"] == {
        "name": "s3-creds",
        "accessKeyIdKey": "AWS_ACCESS_KEY_ID",
        "secretAccessKeyKey": "AWS_SECRET_ACCESS_KEY",
    }
    assert "cacheKey" not in wire  # unset optionals are omitted, not sent as null

    parsed = TaskRunResource.from_object(manifest)
    assert parsed.spec == spec
    assert parsed.metadata.name == "add-0"
    assert parsed.status.state is None and parsed.status.history == []


@pytest.mark.parametrize(("name", "namespace"), [("Add_0", "default"), ("add-0", "No")])
def test_manifest_refuses_names_kubernetes_would_refuse(name: str, namespace: str) -> None:
    spec = TaskRunSpec.model_validate(task_spec())
    with pytest.raises(ValueError, match="lower-case letters, digits"):
        spec.to_manifest(name, namespace)


def test_snake_case_names_are_accepted_in_python() -> None:
    spec = TaskRunSpec(task_name="t", task_key="t-1", run_name="t-0", payload="p", retries=1)
    assert spec.to_wire()["taskKey"] == "t-1"


def test_status_parses_operator_fields_and_ignores_foreign_keys() -> None:
    obj = TaskRunSpec.model_validate(task_spec()).to_manifest("add-0", "default")
    obj["status"] = {
        "state": "AwaitingRetry",
        "stateType": "SCHEDULED",
        "attempt": 1,
        "nextRetryAt": "2026-01-01T00:00:10Z",
        "history": [
            {"state": "Pending", "type": "PENDING", "timestamp": "2026-01-01T00:00:00Z"},
            {
                "state": "Failed",
                "type": "FAILED",
                "timestamp": "2026-01-01T00:00:05Z",
                "message": "ValueError: boom",
                "attempt": 1,
            },
        ],
        "kopf": {"progress": {"handler": {"retries": 1}}},
    }
    run = from_object(obj)
    assert isinstance(run, TaskRunResource)
    assert run.status.state is StateName.AWAITING_RETRY
    assert [h.state for h in run.status.history] == [StateName.PENDING, StateName.FAILED]
    assert run.status.next_retry_at is not None and run.status.next_retry_at.tzinfo is not None


def test_unknown_spec_field_is_refused() -> None:
    text = error_text(TaskRunSpec, task_spec(retryes=3))
    assert "retryes" in text and "Extra inputs are not permitted" in text


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("timeoutSeconds", -1, "greater than 0"),
        ("retries", -1, "greater than or equal to 0"),
        ("retryDelaySeconds", [-1], "greater than or equal to 0"),
        ("retryDelaySeconds", [1] * 51, "at most 50 items"),
        ("retryJitterFactor", -0.5, "greater than or equal to 0"),
        ("serviceAccountName", "Not_A_Name", "should match pattern"),
        ("imagePullPolicy", "Sometimes", "'Always', 'IfNotPresent' or 'Never'"),
        ("taskName", "", "at least 1 character"),
    ],
)
def test_bad_values_are_refused(field: str, value: object, expected: str) -> None:
    assert expected in error_text(TaskRunSpec, task_spec(**{field: value}))


def test_missing_required_field_is_refused() -> None:
    data = task_spec()
    del data["payload"]
    assert "payload" in error_text(TaskRunSpec, data)


@pytest.mark.parametrize(
    "credential_field", ["accessKeyId", "secretAccessKey", "aws_secret_access_key", "password"]
)
def test_credentials_in_storage_are_refused_with_a_pointer_to_secrets(
    credential_field: str,
) -> None:
    storage = {"bucket": "results", credential_field: "hunter2"}
    text = error_text(TaskRunSpec, task_spec(storage=storage))
    assert "must not contain credentials" in text
    assert "credentialsSecret" in text
    assert "hunter2" not in text.split("input_value")[0]  # the message itself does not echo it


def test_unknown_storage_field_is_refused() -> None:
    text = error_text(TaskRunSpec, task_spec(storage={"bucket": "results", "colour": "red"}))
    assert "colour" in text


def test_literal_aws_credentials_in_env_are_refused() -> None:
    env = [{"name": "AWS_SECRET_ACCESS_KEY", "value": "hunter2"}]
    text = error_text(TaskRunSpec, task_spec(env=env))
    assert "valueFrom.secretKeyRef" in text


def test_env_value_and_value_from_are_exclusive() -> None:
    env = [
        {
            "name": "MODE",
            "value": "x",
            "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}},
        }
    ]
    assert "not both" in error_text(TaskRunSpec, task_spec(env=env))
    both_refs = [
        {
            "name": "MODE",
            "valueFrom": {
                "configMapKeyRef": {"name": "cfg", "key": "mode"},
                "secretKeyRef": {"name": "s", "key": "mode"},
            },
        }
    ]
    assert "exactly one of secretKeyRef and configMapKeyRef" in error_text(
        TaskRunSpec, task_spec(env=both_refs)
    )


def test_flow_run_needs_exactly_one_of_entrypoint_and_code() -> None:
    assert FlowRunSpec.model_validate(flow_spec()).entrypoint == "examples.etl:pipeline"
    assert FlowRunSpec.model_validate(flow_spec(entrypoint=None, code="flows/abc")).code
    both = error_text(FlowRunSpec, flow_spec(code="flows/abc"))
    assert "exactly one of spec.entrypoint and spec.code" in both
    neither = flow_spec()
    del neither["entrypoint"]
    assert "exactly one of spec.entrypoint and spec.code" in error_text(FlowRunSpec, neither)


def test_flow_run_entrypoint_must_name_a_function() -> None:
    assert "should match pattern" in error_text(FlowRunSpec, flow_spec(entrypoint="etl.py"))


def test_flow_run_round_trips_free_form_parameters() -> None:
    spec = FlowRunSpec.model_validate(flow_spec())
    manifest = spec.to_manifest("etl-1", "jobs")
    assert manifest["spec"]["parameters"] == {"n": 3, "nested": {"a": [1, 2, None]}}
    run = from_object(manifest)
    assert isinstance(run, FlowRunResource)
    assert run.spec == spec


def test_from_object_refuses_other_kinds() -> None:
    with pytest.raises(ValueError, match="not a flowpod object"):
        from_object({"kind": "Pod", "spec": {}})
    with pytest.raises(ValueError, match="expected a TaskRun"):
        TaskRunResource.from_object({"kind": "FlowRun", "spec": {}})


def test_state_types_follow_prefect() -> None:
    assert state_type_of("AwaitingRetry") is StateType.SCHEDULED
    assert state_type_of(StateName.RETRYING) is StateType.RUNNING
    assert state_type_of("Cached") is StateType.COMPLETED
    assert state_type_of("TimedOut") is StateType.FAILED
    assert state_type_of("Crashed") is StateType.CRASHED
    assert {state_type_of(name) for name in StateName} <= set(StateType)
    with pytest.raises(ValueError):
        state_type_of("Sleeping")
