"""Pod manifests the operator creates: golden-style checks of the whole object and its variants,
and the operator settings (``OperatorConfig.from_env``) that shape them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowpod._contract.pod_settings import ImagePullPolicy
from flowpod._contract.resources import FlowRunResource, TaskRunResource
from flowpod_operator.pods import flow_pod_manifest, label_value, pod_manifest, pod_name
from flowpod_operator.settings import OperatorConfig, PodDefaults, StorageDefaults

CONFIG = OperatorConfig(
    default_image="registry.example/flowpod:1",
    storage=StorageDefaults(bucket="results", prefix="team", endpoint="http://s3:9000",
                            region="eu-west-1", credentials_secret="flowpod-s3"),
)


def taskrun(name: str = "add-abc", **spec: Any) -> TaskRunResource:
    return TaskRunResource.from_object({
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
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        "automountServiceAccountToken": False,
        "containers": [{
            "name": "task",
            "image": "registry.example/flowpod:1",
            "command": ["python", "-m", "flowpod.pod", "task", "ns/add-abc", "--attempt", "2"],
            "env": [
                {"name": "FLOWPOD_HOME", "value": "/tmp/flowpod"},
                {"name": "FLOWPOD_S3_BUCKET", "value": "results"},
                {"name": "FLOWPOD_S3_PREFIX", "value": "team"},
                {"name": "FLOWPOD_S3_ENDPOINT", "value": "http://s3:9000"},
                {"name": "FLOWPOD_S3_REGION", "value": "eu-west-1"},
                {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {
                    "name": "flowpod-s3", "key": "AWS_ACCESS_KEY_ID"}}},
                {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {
                    "name": "flowpod-s3", "key": "AWS_SECRET_ACCESS_KEY"}}},
            ],
            "securityContext": {"allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        }],
    },
}


def test_default_pod_matches_golden() -> None:
    assert pod_manifest(taskrun(), 2, CONFIG) == GOLDEN


def test_task_pods_take_the_default_task_account_without_a_token() -> None:
    from dataclasses import replace

    config = replace(CONFIG, task_service_account="flowpod-task-runner")
    spec = pod_manifest(taskrun(), 1, config)["spec"]
    assert spec["serviceAccountName"] == "flowpod-task-runner"
    assert spec["automountServiceAccountToken"] is False
    # A TaskRun's own account wins, and keeps its token (it asked for API access).
    own = pod_manifest(taskrun(serviceAccountName="runner"), 1, config)["spec"]
    assert own["serviceAccountName"] == "runner" and "automountServiceAccountToken" not in own
    assert OperatorConfig.from_env(
        {"FLOWPOD_OPERATOR_TASK_SERVICE_ACCOUNT": " tasks "}).task_service_account == "tasks"
    assert OperatorConfig.from_env({}).task_service_account == ""


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
    # ceil: never shorter than asked; then the allowance, since the pod stops the task itself
    assert spec["activeDeadlineSeconds"] == 3 + CONFIG.deadline_allowance_seconds
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
    assert [item["name"] for item in env] == ["FLOWPOD_HOME", "FLOWPOD_S3_BUCKET"]


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


# -- FLOWPOD_OPERATOR_RUN_AS_USER -----------------------------------------------------------------


def test_run_as_user_from_env_reaches_task_and_flow_pods() -> None:
    config = OperatorConfig.from_env({"FLOWPOD_OPERATOR_RUN_AS_USER": " 4242 "})
    assert config.run_as_user == 4242
    assert OperatorConfig.from_env({}).run_as_user == 1000
    assert OperatorConfig.from_env({"FLOWPOD_OPERATOR_RUN_AS_USER": ""}).run_as_user == 1000
    for manifest in (pod_manifest(taskrun(), 1, config), flow_pod_manifest(flowrun(), 1, config)):
        assert manifest["spec"]["securityContext"] == {
            "runAsNonRoot": True, "runAsUser": 4242, "seccompProfile": {"type": "RuntimeDefault"}}


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [("root", "whole number"), ("1.5", "whole number"), ("0", "non-root"), ("-3", "non-root"),
     (str(2**31), "<= 2147483647")],
)
def test_bad_run_as_user_is_refused(raw: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        OperatorConfig.from_env({"FLOWPOD_OPERATOR_RUN_AS_USER": raw})
    assert "FLOWPOD_OPERATOR_RUN_AS_USER" in str(info.value) and fragment in str(info.value)


# -- FLOWPOD_OPERATOR_POD_DEFAULTS ----------------------------------------------------------------

POD_DEFAULTS = {
    "imagePullPolicy": "Always",
    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
    "nodeSelector": {"pool": "batch"},
    "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
}


def defaults_config(value: Any = POD_DEFAULTS) -> OperatorConfig:
    return OperatorConfig.from_env({"FLOWPOD_OPERATOR_POD_DEFAULTS": json.dumps(value)})


def flowrun(**spec: Any) -> FlowRunResource:
    return FlowRunResource.from_object({
        "apiVersion": "flowpod.dev/v1alpha1", "kind": "FlowRun",
        "metadata": {"name": "etl", "namespace": "ns", "uid": "uid-2"},
        "spec": {"entrypoint": "pkg.flows:etl", **spec},
    })


def test_pod_defaults_parse_into_the_spec_types() -> None:
    defaults = defaults_config().pod_defaults
    assert defaults.image_pull_policy is ImagePullPolicy.ALWAYS
    assert defaults.resources is not None
    assert defaults.resources.requests == {"cpu": "100m", "memory": "128Mi"}
    assert defaults.resources.limits == {"memory": "1Gi"}
    assert defaults.node_selector == {"pool": "batch"}
    assert defaults.tolerations == POD_DEFAULTS["tolerations"]
    partial = defaults_config({"imagePullPolicy": "Never"}).pod_defaults
    assert partial.image_pull_policy is ImagePullPolicy.NEVER and partial.resources is None
    for unset in ({}, {"FLOWPOD_OPERATOR_POD_DEFAULTS": " "},
                  {"FLOWPOD_OPERATOR_POD_DEFAULTS": "{}"}):
        assert OperatorConfig.from_env(unset).pod_defaults == PodDefaults()


@pytest.mark.parametrize(
    ("raw", "fragments"),
    [
        ("{imagePullPolicy: Always}", ["not valid JSON"]),
        ('["Always"]', ["must be a JSON object", "got a JSON array"]),
        ('"Always"', ["must be a JSON object", "got a JSON string"]),
        ("null", ["must be a JSON object", "got a JSON null"]),
        ('{"image": "x:1", "imagePullPolicy": "Always"}',
         ["unknown key(s) 'image'", "allowed: imagePullPolicy, resources, nodeSelector"]),
        ('{"image_pull_policy": "Always"}', ["unknown key(s) 'image_pull_policy'"]),
        ('{"imagePullPolicy": "Sometimes"}', ["imagePullPolicy", "'IfNotPresent'"]),
        ('{"resources": {"limits": {"memory": "1Gi"}, "maximum": {}}}', ["resources.maximum"]),
        ('{"resources": ["1Gi"]}', ["resources"]),
        ('{"nodeSelector": {"pool": 3}}', ["nodeSelector.pool", "string"]),
        ('{"tolerations": {"key": "batch"}}', ["tolerations", "list"]),
    ],
)
def test_bad_pod_defaults_name_the_variable_and_the_problem(
    raw: str, fragments: list[str]
) -> None:
    with pytest.raises(ValueError) as info:
        OperatorConfig.from_env({"FLOWPOD_OPERATOR_POD_DEFAULTS": raw})
    message = str(info.value)
    assert message.startswith("FLOWPOD_OPERATOR_POD_DEFAULTS")
    for fragment in fragments:
        assert fragment in message, message


def test_pod_defaults_fill_what_the_spec_leaves_unset() -> None:
    config = defaults_config()
    for manifest in (pod_manifest(taskrun(), 1, config), flow_pod_manifest(flowrun(), 1, config)):
        spec = manifest["spec"]
        (container,) = spec["containers"]
        assert container["imagePullPolicy"] == "Always"
        assert container["resources"] == POD_DEFAULTS["resources"]
        assert spec["nodeSelector"] == {"pool": "batch"}
        assert spec["tolerations"] == POD_DEFAULTS["tolerations"]
    # Without defaults nothing is added: Kubernetes' own defaults apply.
    plain = pod_manifest(taskrun(), 1, CONFIG)
    assert "imagePullPolicy" not in plain["spec"]["containers"][0]
    assert "resources" not in plain["spec"]["containers"][0]
    assert "nodeSelector" not in plain["spec"] and "tolerations" not in plain["spec"]


def test_a_spec_value_replaces_the_pod_default_whole() -> None:
    config = defaults_config()
    own = {
        "imagePullPolicy": "IfNotPresent",
        "resources": {"limits": {"cpu": "2"}},
        "nodeSelector": {"gpu": "yes"},
        "tolerations": [{"key": "gpu", "operator": "Exists"}],
    }
    for manifest in (pod_manifest(taskrun(**own), 1, config),
                     flow_pod_manifest(flowrun(**own), 1, config)):
        spec = manifest["spec"]
        (container,) = spec["containers"]
        assert container["imagePullPolicy"] == "IfNotPresent"
        assert container["resources"] == {"limits": {"cpu": "2"}}  # no requests merged in
        assert spec["nodeSelector"] == {"gpu": "yes"}  # no "pool" merged in
        assert spec["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    # One field set in the spec, the others still from the defaults.
    mixed = pod_manifest(taskrun(nodeSelector={"gpu": "yes"}), 1, config)
    assert mixed["spec"]["nodeSelector"] == {"gpu": "yes"}
    assert mixed["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    # An explicitly empty value is a value: it clears the default.
    cleared = pod_manifest(taskrun(tolerations=[], nodeSelector={}), 1, config)
    assert "tolerations" not in cleared["spec"] and "nodeSelector" not in cleared["spec"]


def test_pod_manifests_do_not_share_the_defaults_objects() -> None:
    config = defaults_config()
    first = pod_manifest(taskrun(), 1, config)
    first["spec"]["nodeSelector"]["pool"] = "changed"
    first["spec"]["tolerations"][0]["key"] = "changed"
    second = pod_manifest(taskrun(), 2, config)
    assert second["spec"]["nodeSelector"] == {"pool": "batch"}
    assert second["spec"]["tolerations"] == POD_DEFAULTS["tolerations"]


# -- FLOWPOD_S3_CREATE_BUCKET ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("YES", True), (" True ", True), ("0", False),
     ("false", False), ("no", False), ("", False)],
)
def test_create_bucket_flag(raw: str, expected: bool) -> None:
    config = OperatorConfig.from_env({"FLOWPOD_S3_BUCKET": "b", "FLOWPOD_S3_CREATE_BUCKET": raw})
    assert config.storage.create_bucket is expected
    assert OperatorConfig.from_env({"FLOWPOD_S3_BUCKET": "b"}).storage.create_bucket is False


def test_create_bucket_flag_errors() -> None:
    with pytest.raises(ValueError, match="FLOWPOD_S3_CREATE_BUCKET must be one of"):
        OperatorConfig.from_env({"FLOWPOD_S3_BUCKET": "b", "FLOWPOD_S3_CREATE_BUCKET": "maybe"})
    with pytest.raises(ValueError, match="FLOWPOD_S3_BUCKET is not"):
        OperatorConfig.from_env({"FLOWPOD_S3_CREATE_BUCKET": "1"})


def test_the_deadline_allowance_comes_from_the_environment() -> None:
    assert OperatorConfig.from_env({}).deadline_allowance_seconds == 30
    config = OperatorConfig.from_env({"FLOWPOD_OPERATOR_DEADLINE_ALLOWANCE_SECONDS": "5"})
    manifest = pod_manifest(taskrun(timeoutSeconds=0.5), 1, config)
    assert manifest["spec"]["activeDeadlineSeconds"] == 1 + 5
    for bad, why in (("-1", ">= 0"), ("soon", "whole number")):
        with pytest.raises(ValueError, match=why) as excinfo:
            OperatorConfig.from_env({"FLOWPOD_OPERATOR_DEADLINE_ALLOWANCE_SECONDS": bad})
        assert "FLOWPOD_OPERATOR_DEADLINE_ALLOWANCE_SECONDS" in str(excinfo.value)


def test_a_slim_pod_keeps_a_whole_outcome_message_and_bounds_any_other() -> None:
    from flowpod._contract.records import Outcome
    from flowpod_operator.observed import outcome_told_by, slim_pod

    told = Outcome(attempt=1, state="Failed", message="m" * 1500).to_termination_message()
    assert told is not None and len(told) > 1500
    def pod(message: str) -> dict[str, object]:
        return {"metadata": {"name": "p"}, "status": {"phase": "Failed", "containerStatuses": [
            {"name": "task", "state": {"terminated": {"exitCode": 1, "message": message}}}]}}
    slim = slim_pod(pod(told))
    assert outcome_told_by(slim, 1) == Outcome.from_termination_message(told)
    assert outcome_told_by(slim, 2) is None  # another attempt's
    other = slim_pod(pod("r" * 1000))
    kept = other["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    assert kept == "r" * 300 and outcome_told_by(other, 1) is None
