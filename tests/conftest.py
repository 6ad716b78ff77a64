"""Test-wide fixtures: every test gets its own flowpod home and a clean flowpod environment.

Settings that a developer's shell (or `eval "$(scripts/cluster env)"`) may carry are removed for
the in-process tiers, so they never reach a cluster or a bucket by accident; tests marked
`cluster` (all of tests/integration) keep the cluster's settings that their fixtures set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

_LEAKY_PREFIXES = ("FLOWPOD_", "AWS_")

# The README's quickstart makes and deletes its own cluster (`kind create cluster` there is
# `scripts/cluster up` here), and one node runs per machine, so it cannot share a session with the
# integration tier: `scripts/test` runs it on its own after the rest, with FLOWPOD_QUICKSTART=1.
collect_ignore = [] if os.environ.get("FLOWPOD_QUICKSTART") == "1" else ["quickstart"]


@pytest.fixture(autouse=True)
def flowpod_home(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Path]:
    if request.node.get_closest_marker("cluster") is None:
        _scrub_environment(monkeypatch)
    home = tmp_path_factory.mktemp("flowpod-home")
    monkeypatch.setenv("FLOWPOD_HOME", str(home))
    yield home


def _scrub_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.startswith(_LEAKY_PREFIXES) and var not in (
                "FLOWPOD_SKIP_CLUSTER", "FLOWPOD_CLUSTER_STATE", "FLOWPOD_QUICKSTART"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
