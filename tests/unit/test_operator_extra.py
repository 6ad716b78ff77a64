"""The operator is the `operator` extra: without kopf, `flowpod-operator` says how to install it,
in one line, and the base install's dependencies do not include kopf."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())

# Makes `import kopf` fail as it does where the extra is not installed.
_NO_KOPF = (
    "import sys\n"
    "class NoKopf:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'kopf' or name.startswith('kopf.'):\n"
    "            raise ModuleNotFoundError(\"No module named 'kopf'\", name='kopf')\n"
    "sys.meta_path.insert(0, NoKopf())\n"
    "sys.argv = ['flowpod-operator']\n"
    "from flowpod_operator.__main__ import main\n"
    "main()\n"
)


def test_flowpod_operator_without_kopf_names_the_extra() -> None:
    done = subprocess.run([sys.executable, "-c", _NO_KOPF], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: the operator needs kopf")
    assert "pip install 'flowpod[operator]'" in lines[0]


def test_kopf_is_the_operator_extra_and_dev_includes_it() -> None:
    project = PYPROJECT["project"]
    assert not any(dep.startswith("kopf") for dep in project["dependencies"])
    assert any(dep.startswith("kopf") for dep in project["optional-dependencies"]["operator"])
    assert "flowpod[operator]" in project["optional-dependencies"]["dev"]
