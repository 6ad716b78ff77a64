"""CRD generation: structural schemas, the CRD's shape, determinism, and crds/ being current."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

import flowpod._cli.crds as _crdgen
from flowpod._cli.crds import (
    HEADER,
    SchemaConversionError,
    check_crds,
    crd_manifests,
    render_crds,
    structural_schema,
    write_crds,
)

REPO_CRDS = Path(__file__).resolve().parents[2] / "crds"


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}.*")


def crd_schema(filename: str) -> dict[str, Any]:
    crd = crd_manifests()[filename]
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("filename", ["taskruns.flowpod.dev.yaml", "flowruns.flowpod.dev.yaml"])
def test_schema_is_structural(filename: str) -> None:
    for path, node in walk(crd_schema(filename)):
        assert "$ref" not in node and "$defs" not in node, path
        assert "title" not in node and "anyOf" not in node and "oneOf" not in node, path
        has_type = "type" in node
        assert has_type or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        if "properties" in node:
            assert "additionalProperties" not in node, path
        if node.get("type") == "object":
            assert (
                "properties" in node
                or "additionalProperties" in node
                or node.get("x-kubernetes-preserve-unknown-fields")
                or path == ".metadata"
            ), f"{path}: an object with no schema for its contents would prune everything"
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert node.get(bound, True) is True, f"{path}: {bound} must be a flag in OpenAPI v3.0"


def test_task_run_schema_keeps_the_validation() -> None:
    spec = crd_schema("taskruns.flowpod.dev.yaml")["properties"]["spec"]
    props = spec["properties"]
    assert spec["required"] == ["payload", "runName", "taskKey", "taskName"]
    def without_description(node: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in node.items() if k != "description"}

    assert without_description(props["timeoutSeconds"]) == {
        "type": "number", "minimum": 0, "exclusiveMinimum": True, "nullable": True,
    }
    assert without_description(props["retries"]) == {
        "type": "integer", "minimum": 0, "default": 0,
    }
    assert props["retryDelaySeconds"]["maxItems"] == 50
    assert props["retryDelaySeconds"]["items"] == {"type": "number", "minimum": 0}
    assert props["imagePullPolicy"]["enum"] == ["Always", "IfNotPresent", "Never"]
    assert props["resources"]["properties"]["limits"]["additionalProperties"] == {
        "x-kubernetes-int-or-string": True
    }
    assert props["tolerations"]["items"]["x-kubernetes-preserve-unknown-fields"] is True
    storage = props["storage"]["properties"]
    assert set(storage) == {"bucket", "prefix", "endpoint", "region", "credentialsSecret"}
    assert set(storage["credentialsSecret"]["properties"]) == {
        "name", "accessKeyIdKey", "secretAccessKeyKey",
    }
    env_rules = props["env"]["items"]["x-kubernetes-validations"]
    assert any("AWS_SECRET_ACCESS_KEY" in rule["rule"] for rule in env_rules)

    status = crd_schema("taskruns.flowpod.dev.yaml")["properties"]["status"]["properties"]
    assert status["state"]["enum"] == [
        "Pending", "Running", "AwaitingRetry", "Retrying", "Completed", "Cached", "Failed",
        "TimedOut", "Crashed", "Cancelled",
    ]
    assert status["history"]["items"]["properties"]["timestamp"]["format"] == "date-time"
    assert status["kopf"]["x-kubernetes-preserve-unknown-fields"] is True


def test_flow_run_schema_enforces_entrypoint_xor_code() -> None:
    spec = crd_schema("flowruns.flowpod.dev.yaml")["properties"]["spec"]
    rules = spec["x-kubernetes-validations"]
    assert rules == [
        {
            "rule": "has(self.entrypoint) != has(self.code)",
            "message": "exactly one of spec.entrypoint and spec.code must be set",
        }
    ]
    assert spec["properties"]["parameters"] == {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "description": "The flow's parameters (any JSON values).",
    }


def test_crd_shape() -> None:
    crds = crd_manifests()
    task = crds["taskruns.flowpod.dev.yaml"]
    assert task["metadata"]["name"] == "taskruns.flowpod.dev"
    assert task["spec"]["scope"] == "Namespaced"
    assert task["spec"]["names"]["shortNames"] == ["tr"]
    assert task["spec"]["names"]["categories"] == ["flowpod"]
    version = task["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Task"] == ".spec.taskName"
    assert columns["State"] == ".status.state"
    assert columns["Attempt"] == ".status.attempt"
    assert columns["Age"] == ".metadata.creationTimestamp"
    assert columns["Duration"] == ".status.duration"
    flow = crds["flowruns.flowpod.dev.yaml"]
    assert flow["spec"]["names"]["shortNames"] == ["fr"]
    flow_columns = [c["name"] for c in flow["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert flow_columns[:5] == ["Flow", "State", "Tasks", "Age", "Duration"]


def test_converter_maps_json_schema_to_openapi() -> None:
    schema = {
        "type": "object",
        "title": "X",
        "properties": {
            "a": {"anyOf": [{"$ref": "#/$defs/Color"}, {"type": "null"}], "default": None},
            "b": {"type": "number", "exclusiveMinimum": 0},
            "c": {"const": "only", "type": "string"},
            "d": {"type": "object", "additionalProperties": True},
        },
        "$defs": {"Color": {"enum": ["red", "blue"], "type": "string", "title": "Color"}},
    }
    assert structural_schema(schema) == {
        "type": "object",
        "properties": {
            "a": {"enum": ["red", "blue"], "type": "string", "nullable": True},
            "b": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
            "c": {"enum": ["only"], "type": "string"},
            "d": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }


@pytest.mark.parametrize(
    "schema",
    [
        {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        {"type": "object", "patternProperties": {"^x": {"type": "string"}}},
        {"$ref": "#/$defs/Missing"},
        {"minimum": 3},
    ],
)
def test_converter_refuses_what_crds_cannot_express(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaConversionError):
        structural_schema(schema)


def test_rendering_is_deterministic_and_parses() -> None:
    first = render_crds()
    second = render_crds()
    assert first == second
    for filename, text in first.items():
        assert text.startswith(HEADER)
        assert yaml.safe_load(text) == crd_manifests()[filename]


def test_checked_in_crds_are_current() -> None:
    problems = check_crds(REPO_CRDS)
    assert problems == [], (
        "crds/ is stale; regenerate it with `flowpod crds`:\n" + "\n".join(problems)
    )


def test_check_reports_missing_stale_and_extra_files(tmp_path: Path) -> None:
    assert any("missing" in p for p in check_crds(tmp_path))
    assert len(write_crds(tmp_path)) == 2
    assert write_crds(tmp_path) == []  # nothing changed the second time
    assert check_crds(tmp_path) == []

    path = tmp_path / "taskruns.flowpod.dev.yaml"
    path.write_text(path.read_text().replace("shortNames:\n    - tr", "shortNames:\n    - t"))
    (tmp_path / "cronruns.flowpod.dev.yaml").write_text("{}\n")
    problems = check_crds(tmp_path)
    assert any("taskruns.flowpod.dev.yaml: stale" in p and "-    - t" in p for p in problems)
    assert any("cronruns.flowpod.dev.yaml: not generated" in p for p in problems)


def test_cli_crds_check_exit_codes(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from flowpod._cli.main import main

    runner = CliRunner()
    stale = runner.invoke(main, ["crds", "--check", "--out", str(tmp_path)])
    assert stale.exit_code == 1
    assert "is stale" in stale.output
    assert runner.invoke(main, ["crds", "--out", str(tmp_path)]).exit_code == 0
    current = runner.invoke(main, ["crds", "--check", "--out", str(tmp_path)])
    assert current.exit_code == 0
    assert "up to date" in current.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(_crdgen.render_crds())
