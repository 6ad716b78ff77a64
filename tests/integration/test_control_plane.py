"""The test cluster is a real control plane: schema validation, RBAC, garbage collection, service
accounts, namespaces, S3, and the pinned versions. The node that runs pods is tested in
tests/integration/test_node.py."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .harness import Cluster, S3Settings, ServiceAccountClient, pinned, wait_for


def error_message(exc: ApiException) -> str:
    """The `message` of the Status object an API error carries."""
    return str(json.loads(exc.body or "{}").get("message", ""))


def test_kubectl_and_server_report_the_pinned_version(cluster: Cluster) -> None:
    out = json.loads(cluster.kubectl("version", "--output", "json").stdout)
    assert out["clientVersion"]["gitVersion"] == pinned("KUBERNETES_VERSION")
    assert out["serverVersion"]["gitVersion"] == pinned("KUBERNETES_VERSION")


def test_helm_reports_the_pinned_version(cluster: Cluster) -> None:
    import subprocess

    proc = subprocess.run([cluster.info["binaries"]["helm"], "version", "--short"],
                          capture_output=True, text=True, check=True, timeout=60)
    assert proc.stdout.startswith(pinned("HELM_VERSION")), proc.stdout


CRD_TEMPLATE = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [replicas]
            properties:
              replicas: {{type: integer, minimum: 1, maximum: 5}}
"""


def test_crd_applied_with_kubectl_is_served_and_its_schema_enforced(
    cluster: Cluster, kube_api: Any, namespace: str, tmp_path: Path
) -> None:
    group = f"g{uuid.uuid4().hex[:8]}.flowpod-test.dev"
    manifest = tmp_path / "crd.yaml"
    manifest.write_text(CRD_TEMPLATE.format(group=group))
    cluster.kubectl("apply", "-f", str(manifest))
    try:
        cluster.kubectl("wait", "--for", "condition=Established", f"crd/widgets.{group}",
                        "--timeout", "60s")
        objects: Any = client.CustomObjectsApi(kube_api)

        def widget(name: str, spec: dict[str, Any]) -> dict[str, Any]:
            return {"apiVersion": f"{group}/v1", "kind": "Widget",
                    "metadata": {"name": name}, "spec": spec}

        # The new resource is served: a valid object round-trips.
        objects.create_namespaced_custom_object(group, "v1", namespace, "widgets",
                                                widget("good", {"replicas": 3}))
        got = objects.get_namespaced_custom_object(group, "v1", namespace, "widgets", "good")
        assert got["spec"] == {"replicas": 3}
        # Fully qualified: other tests' `widgets` CRDs may exist (or linger in discovery caches).
        listed = cluster.kubectl("get", f"widgets.{group}", "-n", namespace,
                                 "-o", "name").stdout.split()
        assert listed == [f"widget.{group}/good"]

        # The API server rejects what the schema forbids, and says why.
        with pytest.raises(ApiException) as excinfo:
            objects.create_namespaced_custom_object(group, "v1", namespace, "widgets",
                                                    widget("too-many", {"replicas": 50}))
        assert excinfo.value.status == 422
        message = error_message(excinfo.value)
        assert "spec.replicas" in message
        assert "should be less than or equal to 5" in message

        with pytest.raises(ApiException) as excinfo:
            objects.create_namespaced_custom_object(group, "v1", namespace, "widgets",
                                                    widget("wrong-type", {"replicas": "three"}))
        assert excinfo.value.status == 422
        assert 'spec.replicas: Invalid value: "string"' in error_message(excinfo.value)

        with pytest.raises(ApiException) as excinfo:
            objects.create_namespaced_custom_object(group, "v1", namespace, "widgets",
                                                    widget("missing", {}))
        assert excinfo.value.status == 422
        assert "spec.replicas: Required value" in error_message(excinfo.value)
    finally:
        cluster.kubectl("delete", "-f", str(manifest), "--wait=false", check=False)


def _pod(name: str) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            restart_policy="Never",
            containers=[client.V1Container(name="main", image="busybox", command=["true"])],
        ),
    )


def test_service_account_needs_a_role_binding_to_create_pods(
    kube_api: Any, namespace: str, service_account_client: ServiceAccountClient
) -> None:
    sa_api = service_account_client(namespace, "worker")

    # The token authenticates as the ServiceAccount.
    review: Any = client.AuthenticationV1Api(sa_api).create_self_subject_review(
        client.V1SelfSubjectReview()
    )
    assert review.status.user_info.username == f"system:serviceaccount:{namespace}:worker"

    # Server-side dry run: authorization and admission run in full, nothing is stored.
    sa_core = client.CoreV1Api(sa_api)
    with pytest.raises(ApiException) as excinfo:
        sa_core.create_namespaced_pod(namespace, _pod("denied"), dry_run="All")
    assert excinfo.value.status == 403
    message = error_message(excinfo.value)
    assert f'"system:serviceaccount:{namespace}:worker" cannot create resource "pods"' in message

    rbac = client.RbacAuthorizationV1Api(kube_api)
    rbac.create_namespaced_role(namespace, client.V1Role(
        metadata=client.V1ObjectMeta(name="pod-creator"),
        rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["create"])],
    ))
    rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="worker-creates-pods"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role",
                                  name="pod-creator"),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="worker",
                                       namespace=namespace)],
    ))

    # The RBAC authorizer sees new bindings through an informer: allowed shortly after.
    created = wait_for(
        lambda: sa_core.create_namespaced_pod(namespace, _pod("allowed"), dry_run="All"),
        timeout=30, what="the RoleBinding to allow creating pods",
    )
    assert created.metadata.name == "allowed"
    # The binding grants exactly `create`: reading pods stays forbidden.
    with pytest.raises(ApiException) as excinfo:
        sa_core.list_namespaced_pod(namespace)
    assert excinfo.value.status == 403


def test_deleting_an_owner_garbage_collects_its_dependents(kube_api: Any, namespace: str) -> None:
    core: Any = client.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner",
                                  uid=owner.metadata.uid)
    for i in range(3):
        core.create_namespaced_config_map(namespace, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=f"dependent-{i}", owner_references=[ref])
        ))
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="bystander"))
    )

    core.delete_namespaced_config_map("owner", namespace)

    def remaining() -> set[str]:
        names = {cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items}
        return names - {"kube-root-ca.crt"}

    wait_for(lambda: remaining() == {"bystander"}, timeout=60,
             what="the garbage collector to delete the owner's dependents")


def test_new_namespace_gets_default_service_account_and_deletion_completes(
    kube_api: Any,
) -> None:
    core: Any = client.CoreV1Api(kube_api)
    name = f"t-lifecycle-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        sa = wait_for(lambda: core.read_namespaced_service_account("default", name), 60,
                      "the default ServiceAccount")
        assert sa.metadata.namespace == name
        # The root-CA publisher gives every namespace the cluster CA for in-pod clients.
        ca = wait_for(lambda: core.read_namespaced_config_map("kube-root-ca.crt", name), 60,
                      "the kube-root-ca.crt ConfigMap")
        assert "BEGIN CERTIFICATE" in ca.data["ca.crt"]
        core.create_namespaced_config_map(
            name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="content"))
        )
    finally:
        core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            return bool(exc.status == 404)
        return False

    # The namespace controller empties the namespace, then the finalizer lets it go.
    wait_for(gone, timeout=90, what=f"namespace {name} to be deleted")


def test_objects_put_to_s3_read_back(s3: S3Settings, s3_client: Any) -> None:
    key = f"tests/{uuid.uuid4().hex}/blob.bin"
    payload = uuid.uuid4().bytes * 40_000  # 640 kB, distinct per run
    s3_client.put_object(Bucket=s3.bucket, Key=key, Body=payload)
    try:
        got = s3_client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()
        assert got == payload
        listed = s3_client.list_objects_v2(Bucket=s3.bucket, Prefix=key.rsplit("/", 1)[0])
        assert [o["Key"] for o in listed["Contents"]] == [key]
    finally:
        s3_client.delete_object(Bucket=s3.bucket, Key=key)
    with pytest.raises(s3_client.exceptions.NoSuchKey):
        s3_client.get_object(Bucket=s3.bucket, Key=key)
