"""Pod manifests the operator creates: golden-style checks of the whole object and its variants."""

from __future__ import annotations

from typing import Any

import pytest

from flowpod._resources import TaskRun
from flowpod_operator.pods import label_value, pod_manifest, pod_name
from flowpod_operator.settings import OperatorConfig, StorageDefaults

CONFIG = OperatorConfig(
    default_image="registry.example/flowpod:1",
    storage=StorageDefaults(bucket="results", prefix="team", endpoint="http://s3:9000",
                            region="eu-west-1", credentials_secret="flowpod-s3"),
)


def taskrun(name: str = "add-abc", **spec: Any) -> TaskRun:
    return TaskRun.from_object({
        "apiVersion": "flowpod.dev/v1alpha1", "kind": "TaskRun",
        "metadata": {"name": name, "namespace": "ns", "uid": "uid-1"},
        "spec": {"taskName": "add", "taskKey": "k", "runName": "add-0", "payload": "p", **spec},
    })


GOLDEN: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "add-abc-2",
        "namespace": "ns",
        "labels": {
            "flowpod.dev/taskrun": "add-abc",
            "flowpod.dev/attempt": "2",
            "flowpod.dev/flowrun": "",
            "app.kubernetes.io/managed-by": "flowpod-operator",
        },
        "ownerReferences": [{
            "apiVersion": "flowpod.dev/v1alpha1", "kind": "TaskRun", "name": "add-abc",
            "uid": "uid-1", "controller": True, "blockOwnerDeletion": True,
        }],
    },
    "spec": {
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
        "automountServiceAccountToken": False,
        "containers": [{
            "name": "task",
            "image": "registry.example/flowpod:1",
            "command": ["python", "-m", "flowpod.pod", "task", "ns/add-abc", "--attempt", "2"],
            "env": [
                {"name": "FLOWPOD_S3_BUCKET", "value": "results"},
                {"name": "FLOWPOD_S3_PREFIX", "value": "team"},
                {"name": "FLOWPOD_S3_ENDPOINT", "value": "http://s3:9000"},
                {"name": "FLOWPOD_S3_REGION", "value": "eu-west-1"},
                {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {
                    "name": "flowpod-s3", "key": "AWS_ACCESS_KEY_ID"}}},
                {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {
                    "name": "flowpod-s3", "key": "AWS_SECRET_ACCESS_KEY"}}},
            ],
            "securityContext": {"allowPrivilegeEscalation": False},
        }],
    },
}


def test_default_pod_matches_golden() -> None:
    assert pod_manifest(taskrun(), 2, CONFIG) == GOLDEN


def test_spec_settings_reach_the_pod() -> None:
    manifest = pod_manifest(taskrun(
        image="mine:2", imagePullPolicy="IfNotPresent", timeoutSeconds=2.2,
        serviceAccountName="runner", nodeSelector={"pool": "cpu"},
        tolerations=[{"key": "k", "operator": "Exists"}],
        resources={"limits": {"memory": "1Gi"}}, flowRun="flow-x",
        env=[{"name": "A", "value": "1"}, {"name": "FLOWPOD_S3_PREFIX", "value": "other"}],
        storage={"bucket": "bucket-2",
                 "credentialsSecret": {"name": "creds", "accessKeyIdKey": "id",
                                       "secretAccessKeyKey": "key"}},
    ), 1, CONFIG)
    spec = manifest["spec"]
    (container,) = spec["containers"]
    assert container["image"] == "mine:2" and container["imagePullPolicy"] == "IfNotPresent"
    assert spec["activeDeadlineSeconds"] == 3  # ceil: never shorter than asked
    assert spec["serviceAccountName"] == "runner" and "automountServiceAccountToken" not in spec
    assert spec["nodeSelector"] == {"pool": "cpu"}
    assert spec["tolerations"] == [{"key": "k", "operator": "Exists"}]
    assert container["resources"] == {"limits": {"memory": "1Gi"}}
    assert manifest["metadata"]["labels"]["flowpod.dev/flowrun"] == "flow-x"
    env = {item["name"]: item for item in container["env"]}
    assert env["FLOWPOD_S3_BUCKET"]["value"] == "bucket-2"
    assert "FLOWPOD_S3_ENDPOINT" not in env  # the spec's storage replaces the defaults whole
    assert env["FLOWPOD_S3_PREFIX"]["value"] == "other"  # spec.env wins
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "creds", "key": "id"}
    assert env["A"] == {"name": "A", "value": "1"}
    assert not any("value" in item and item["name"].startswith("AWS_")
                   for item in container["env"])


def test_no_default_secret_means_no_credential_env() -> None:
    config = OperatorConfig(storage=StorageDefaults(bucket="b", credentials_secret=None))
    env = pod_manifest(taskrun(), 1, config)["spec"]["containers"][0]["env"]
    assert [item["name"] for item in env] == ["FLOWPOD_S3_BUCKET"]


def test_pod_names_are_deterministic_and_short() -> None:
    assert pod_name("add-abc", 1) == "add-abc-1"
    long = "t" * 60
    name = pod_name(long, 12)
    assert len(name) <= 63 and name.endswith("-12")
    assert name == pod_name(long, 12)
    assert pod_name(long, 12) != pod_name(long + "x", 12)
    assert pod_name(long, 1) != pod_name(long, 2)
    with pytest.raises(ValueError, match="from 1"):
        pod_name("x", 0)


def test_long_taskrun_names_give_valid_labels() -> None:
    long = "a" * 70 + ".b"
    value = label_value(long)
    assert len(value) <= 63 and value[0].isalnum() and value[-1].isalnum()
    assert value == label_value(long) and value != label_value(long + "c")
    manifest = pod_manifest(taskrun(name=long), 1, CONFIG)
    assert len(manifest["metadata"]["name"]) <= 63
    assert manifest["metadata"]["ownerReferences"][0]["name"] == long


def test_taskrun_without_uid_cannot_own_a_pod() -> None:
    run = taskrun()
    run.metadata.uid = None
    with pytest.raises(ValueError, match="uid"):
        pod_manifest(run, 1, CONFIG)


def test_config_from_env() -> None:
    config = OperatorConfig.from_env({
        "FLOWPOD_S3_BUCKET": "b", "FLOWPOD_OPERATOR_NAMESPACES": "a, b",
        "FLOWPOD_OPERATOR_IMAGE": "img", "FLOWPOD_OPERATOR_CREDENTIALS_SECRET": "",
    })
    assert config.storage.bucket == "b" and config.namespaces == ("a", "b")
    assert config.default_image == "img" and config.storage.credentials_secret is None
    assert OperatorConfig.from_env({}).storage.credentials_secret == "flowpod-s3"
    with pytest.raises(ValueError, match="FLOWPOD_OPERATOR_API_WORKERS"):
        OperatorConfig.from_env({"FLOWPOD_OPERATOR_API_WORKERS": "many"})
