"""The node's images, as scripts/cluster.d/images.sh archives them (docker-archive tarballs).

Reads the archives and runs nothing: each archive names the reference the kubelet resolves, the
flowpod image runs `flowpod-operator` as uid 1000 without an ENTRYPOINT, the base has its Python
where python:3.11-slim-bookworm has it, pause and MinIO are what the node and the chart expect,
and every module of the venv and the standard library comes with valid bytecode (task pods run
read-only and cannot write it).

An image whose archive is not built (for the current sources and pins) skips its tests; with
FLOWPOD_IMAGES_TESTS=1 missing archives are built first (root and buildah; minutes when cold).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging_support import REPO

from flowpod_operator.settings import OperatorConfig

CLUSTER_D = REPO / "scripts" / "cluster.d"
BUILD = os.environ.get("FLOWPOD_IMAGES_TESTS") == "1"
# Read now: tests/conftest.py scrubs FLOWPOD_* from each test's environment.
CACHE = {k: v for k, v in os.environ.items() if k == "FLOWPOD_CLUSTER_CACHE"}

pytestmark = pytest.mark.timeout(3600 if BUILD else 120)


def cluster_shell(snippet: str) -> str:
    """Run `snippet` with scripts/cluster's settings and image functions loaded."""
    script = f'source "{CLUSTER_D}/lib.sh"; source "{CLUSTER_D}/images.sh"; {snippet}'
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env={**os.environ, **CACHE},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"{snippet!r} failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip()


def kubelet_ref(name: str) -> str:
    """The reference the kubelet pulls for a name: bare names live in docker.io/library."""
    first = name.split("/", 1)[0]
    if "/" not in name:
        return f"docker.io/library/{name}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{name}"
    return name


@dataclass
class Archive:
    path: Path
    repo_tags: list[str]
    config: dict[str, Any]
    layers: list[str]

    def _members(self) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo, str]]:
        """(layer, entry, path without ./) for every entry, layer by layer."""
        with tarfile.open(self.path) as outer:
            for name in self.layers:
                with tarfile.open(fileobj=outer.extractfile(name)) as layer:
                    for member in layer:
                        yield layer, member, member.name.removeprefix("./").lstrip("/")

    def files(self) -> dict[str, tarfile.TarInfo]:
        """Every path in the image; a later layer's entry wins."""
        return {path: member for _, member, path in self._members()}

    def read(self, wanted: str) -> bytes:
        found = None
        for layer, member, path in self._members():
            if path == wanted and member.isfile():
                found = layer.extractfile(member).read()  # type: ignore[union-attr]
        if found is None:
            raise FileNotFoundError(wanted)
        return found

    def env(self, name: str) -> str:
        env = self.config["config"]["Env"]
        values = [entry.split("=", 1)[1] for entry in env if entry.startswith(f"{name}=")]
        return values[-1] if values else ""


def load_archive(name: str) -> Archive:
    args = ' "$FLOWPOD_IMAGE"' if name == "flowpod" else ""
    if BUILD:
        path = Path(cluster_shell(f"image_archive {name}{args}"))
    else:
        path = Path(cluster_shell(f"image_dir {name}{args}")) / f"{name}.tar"
        if not path.is_file():
            pytest.skip(f"no {name} archive for the current sources and pins (see module doc)")
    with tarfile.open(path) as tar:
        (manifest,) = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = json.load(tar.extractfile(manifest["Config"]))  # type: ignore[arg-type]
    return Archive(path, manifest["RepoTags"], config, manifest["Layers"])


@pytest.mark.parametrize("name", ["pause", "python-base", "minio", "flowpod"])
def test_archive_names_the_reference_the_kubelet_resolves(name: str) -> None:
    archive = load_archive(name)
    pins = dict(
        line.split("=", 1)
        for line in cluster_shell(
            'printf "%s\\n" "pause=$PAUSE_IMAGE" "python-base=$PYTHON_BASE_IMAGE" '
            '"flowpod=$FLOWPOD_IMAGE"'
        ).splitlines()
    )
    minio = yaml.safe_load((REPO / "charts/flowpod/values.yaml").read_text())["minio"]["image"]
    pins["minio"] = f"{minio['repository']}:{minio['tag']}"
    # Exactly one name: `ctr images import` creates every name an archive lists.
    assert archive.repo_tags == [kubelet_ref(pins[name])]
    assert (archive.config["os"], archive.config["architecture"]) == ("linux", "amd64")


def test_flowpod_image_runs_the_operator_as_the_pods_uid() -> None:
    archive = load_archive("flowpod")
    config = archive.config["config"]
    uid = OperatorConfig().run_as_user
    assert config["User"] == f"{uid}:{uid}"
    # The chart and the operator set `command`; an ENTRYPOINT would prefix it.
    assert not config.get("Entrypoint")
    assert config["Cmd"] == ["flowpod-operator"]
    assert archive.env("PATH").startswith("/opt/flowpod/bin:")


# The packages a task pod imports; the test checks the whole venv and standard library, these
# must be among them.
POD_PACKAGES = ("flowpod", "botocore", "cloudpickle", "urllib3")


def stale_or_missing_bytecode(archive: Archive, roots: tuple[str, ...]) -> tuple[int, list[str]]:
    """(modules checked, modules under ``roots`` whose .pyc is missing or does not match).

    A timestamp .pyc is valid when its header holds the source's mtime and size (PEP 552); a
    hash-based one is taken as valid.
    """
    sources: dict[str, tuple[int, int]] = {}
    headers: dict[str, bytes] = {}
    tag = ".cpython-311.pyc"
    for layer, member, path in archive._members():
        if not path.startswith(roots) or not member.isfile():
            continue
        if path.endswith(".py"):
            sources[path] = (int(member.mtime), member.size)
        elif path.endswith(tag) and "/__pycache__/" in path:
            folder, _, name = path.rpartition("/__pycache__/")
            data = layer.extractfile(member).read(16)  # type: ignore[union-attr]
            headers[f"{folder}/{name.removesuffix(tag)}.py"] = data
    bad = []
    for path, (mtime, size) in sources.items():
        header = headers.get(path)
        if header is None or len(header) < 16:
            bad.append(path)
            continue
        flags = int.from_bytes(header[4:8], "little")
        if flags == 0 and (int.from_bytes(header[8:12], "little") != mtime & 0xFFFFFFFF
                           or int.from_bytes(header[12:16], "little") != size & 0xFFFFFFFF):
            bad.append(path)
    return len(sources), sorted(bad)


def test_flowpod_image_has_valid_bytecode_for_every_module() -> None:
    archive = load_archive("flowpod")
    site = "opt/flowpod/lib/python3.11/site-packages/"
    roots = (site, "usr/local/lib/python3.11/", "usr/lib/python3.11/")
    checked, bad = stale_or_missing_bytecode(archive, roots)
    assert checked > 1000
    # Test suites shipped by some packages may hold files that do not compile; none of ours.
    bad = [path for path in bad if "/test" not in path and "lib2to3" not in path]
    assert not bad, f"{len(bad)} modules would be compiled in every pod, e.g. {bad[:10]}"
    for package in POD_PACKAGES:
        assert f"{site}{package}/__init__.py" in archive.files()


def test_base_has_python_where_the_official_image_has_it() -> None:
    archive = load_archive("python-base")
    assert archive.env("PATH").startswith("/usr/local/bin:")
    assert archive.env("LANG") == "C.UTF-8"
    files = archive.files()
    # A venv's bin/python points at /usr/local/bin/python: it must lead to the interpreter.
    python = files["usr/local/bin/python"]
    interpreter = files[python.linkname.lstrip("/")] if python.issym() else python
    assert interpreter.isfile() and interpreter.mode & stat.S_IXOTH
    assert {"usr/local/bin/python3", "usr/local/bin/pip"} <= files.keys()
    assert "usr/lib/python3.11/ensurepip/__init__.py" in files  # `python -m venv` gets pip
    assert "usr/lib/python3.11/EXTERNALLY-MANAGED" not in files
    assert not [p for p, m in files.items() if p.startswith("var/lib/apt/lists/") and m.isfile()]


def test_pause_is_a_static_program_run_as_the_entrypoint() -> None:
    archive = load_archive("pause")
    assert archive.config["config"]["Entrypoint"] == ["/pause"]
    assert archive.config["config"]["User"] == "65535:65535"
    binary = archive.read("pause")
    assert binary[:5] == b"\x7fELF\x02"  # ELF, 64-bit
    # Static: no PT_INTERP program header asks for a dynamic loader (FROM scratch has none).
    offset = int.from_bytes(binary[32:40], "little")
    size, count = (int.from_bytes(binary[n : n + 2], "little") for n in (54, 56))
    headers = [binary[offset + i * size : offset + i * size + 4] for i in range(count)]
    assert headers and (3).to_bytes(4, "little") not in headers


def test_minio_image_runs_as_the_chart_runs_it() -> None:
    archive = load_archive("minio")
    config = archive.config["config"]
    assert config["User"] == "1000:1000"
    assert not config.get("Entrypoint")
    assert config["Cmd"][0] == "minio"
    files = archive.files()
    assert files["usr/bin/minio"].mode & stat.S_IXOTH
    assert files["tmp"].mode & 0o1777 == 0o1777
    # MinIO resolves "localhost" at start-up, with no DNS to ask.
    assert b"localhost" in archive.read("etc/hosts")
