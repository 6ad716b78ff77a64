"""The Helm chart's source files, checked without helm: every values key is documented and typed,
every RBAC rule carries a comment saying why, and the chart's CRD copies are the generated ones.
(Rendering, linting and the API server's validation are in tests/integration/test_chart.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import flowpod._cli.crds as _crdgen

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "flowpod"
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][\w.-]*):(?:\s|$)")


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return schema


def _schema_paths(node: dict[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every key the schema declares (the chart's settings; free-form maps stop the walk)."""
    paths: set[tuple[str, ...]] = set()
    for key, child in (node.get("properties") or {}).items():
        paths.add((*prefix, key))
        if child.get("type") == "object" and "properties" in child:
            paths |= _schema_paths(child, (*prefix, key))
    return paths


def _documented_keys(text: str) -> dict[tuple[str, ...], bool]:
    """Key path in values.yaml -> whether a comment sits right above it."""
    found: dict[tuple[str, ...], bool] = {}
    stack: list[tuple[int, str]] = []
    previous = ""
    for line in text.splitlines():
        match = KEY_LINE.match(line)
        if match:
            indent = len(match["indent"])
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match["key"]))
            found[tuple(key for _, key in stack)] = previous.lstrip().startswith("#")
        if line.strip():
            previous = line
    return found


def test_every_chart_setting_in_values_yaml_has_a_comment() -> None:
    documented = _documented_keys((CHART / "values.yaml").read_text())
    settings = _schema_paths(_schema()) - {("global",)}
    missing = sorted(".".join(path) for path in settings if path not in documented)
    assert not missing, f"in values.schema.json but not in values.yaml: {missing}"
    silent = sorted(".".join(path) for path in settings if not documented[path])
    assert not silent, f"values.yaml keys without a comment above them: {silent}"


def test_values_yaml_has_no_key_the_schema_does_not_declare() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = _schema()

    def walk(value: Any, node: dict[str, Any], path: str) -> list[str]:
        if not isinstance(value, dict) or "properties" not in node:
            return []
        unknown = [f"{path}{key}" for key in value if key not in node["properties"]]
        for key, child in value.items():
            if key in node["properties"]:
                unknown += walk(child, node["properties"][key], f"{path}{key}.")
        return unknown

    assert walk(values, schema, "") == []


def test_schema_refuses_unknown_keys_at_every_level() -> None:
    def closed(node: dict[str, Any], path: str) -> list[str]:
        open_ = [] if node.get("additionalProperties") is False else [path or "<top>"]
        for key, child in node.get("properties", {}).items():
            if child.get("type") == "object" and "properties" in child:
                open_ += closed(child, f"{path}{key}.")
        return open_

    assert closed(_schema(), "") == []


RBAC_TEMPLATES = ("operator-rbac.yaml", "flow-runner-rbac.yaml", "ui-rbac.yaml")


@pytest.mark.parametrize("template", RBAC_TEMPLATES)
def test_every_rbac_rule_says_why(template: str) -> None:
    lines = (CHART / "templates" / template).read_text().splitlines()
    rules = [n for n, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
    assert rules, f"no rules found in {template}"
    for n in rules:
        assert lines[n - 1].strip().startswith("#"), (
            f"{template}:{n + 1}: the rule has no comment saying why it is needed")


def test_no_rbac_rule_grants_secrets_or_wildcards() -> None:
    for template in RBAC_TEMPLATES:
        text = (CHART / "templates" / template).read_text()
        for line in text.splitlines():
            if line.strip().startswith(("resources:", "verbs:", "- apiGroups:")):
                assert "secrets" not in line and '"*"' not in line, f"{template}: {line}"


def test_the_charts_crd_copies_are_the_generated_ones() -> None:
    copy = CHART / "files" / "crds"
    assert copy in _crdgen.default_output_dirs()
    assert _crdgen.check_crds(copy) == []
