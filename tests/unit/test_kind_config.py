"""kind-config.yaml (the README's quickstart cluster) is checked with kind's own config loader.

`scripts/cluster check-kind-config` builds the small Go program in scripts/cluster.d/kindcheck
against sigs.k8s.io/kind at KIND_VERSION (cached after the first build) and loads each file as
`kind create cluster --config FILE` would: strict decoding, apiVersion/kind, defaults and
validation. No Docker, no kind binary; it needs `go`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "scripts" / "cluster"
KIND_CONFIG = REPO / "kind-config.yaml"
# Read at import, before the autouse fixture scrubs FLOWPOD_* from the environment, so the
# checker is built into (and reused from) the same cache as the rest of scripts/cluster.
_CLUSTER_CACHE = os.environ.get("FLOWPOD_CLUSTER_CACHE")

pytestmark = [
    pytest.mark.skipif(
        shutil.which("go") is None,
        reason="`go` is not on PATH: scripts/cluster check-kind-config builds its checker with it",
    ),
    # The first call builds the checker (seconds with a warm Go module cache; longer when the
    # module cache must first download sigs.k8s.io/kind).
    pytest.mark.timeout(600),
]


def _check(*files: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if _CLUSTER_CACHE:
        env["FLOWPOD_CLUSTER_CACHE"] = _CLUSTER_CACHE
    return subprocess.run(
        [str(CLUSTER), "check-kind-config", *map(str, files)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def _broken_copy(tmp_path: Path, old: str, new: str) -> Path:
    """kind-config.yaml with exactly one `old` replaced by `new`, written to tmp_path."""
    text = KIND_CONFIG.read_text()
    assert text.count(old) == 1, f"kind-config.yaml no longer has exactly one {old!r}"
    path = tmp_path / "kind-config.yaml"
    path.write_text(text.replace(old, new))
    return path


def test_repository_kind_config_is_accepted_by_kind() -> None:
    result = _check()  # no argument: the repository's kind-config.yaml
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.fullmatch(rf"ok: {re.escape(str(KIND_CONFIG))} \(\d+ nodes?\)\n", result.stdout), (
        result.stdout
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        pytest.param(
            "extraPortMappings:",
            "extraPortMapings:",
            "field extraPortMapings not found in type v1alpha4.Node",
            id="misspelled-field",
        ),
        pytest.param(
            "hostPort: 30900",
            "hostPort: 70000",
            "invalid hostPort: invalid port number: 70000",
            id="invalid-port",
        ),
        pytest.param(
            "role: control-plane",
            "role: controlplane",
            '"controlplane" is not a valid node role',
            id="unknown-node-role",
        ),
        pytest.param(
            "apiVersion: kind.x-k8s.io/v1alpha4",
            "apiVersion: kind.x-k8s.io/v1alpha3",
            "unknown apiVersion: kind.x-k8s.io/v1alpha3",
            id="wrong-apiversion",
        ),
    ],
)
def test_broken_kind_config_fails_with_kinds_message(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = _broken_copy(tmp_path, old, new)
    result = _check(path)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), result.stdout
    assert message in lines[0], result.stdout


def test_every_file_is_reported_and_any_failure_fails(tmp_path: Path) -> None:
    broken = _broken_copy(tmp_path, "kind: Cluster", "kind: Clustr")
    result = _check(KIND_CONFIG, broken)
    assert result.returncode == 1, result.stdout + result.stderr
    ok, error = result.stdout.splitlines()
    assert ok.startswith(f"ok: {KIND_CONFIG} ("), result.stdout
    assert error == (
        f"error: {broken}: unknown kind Clustr for apiVersion: kind.x-k8s.io/v1alpha4"
    ), result.stdout
