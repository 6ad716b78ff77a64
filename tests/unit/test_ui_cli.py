"""``flowpod ui``: its help, the app it builds from the options, and the message without the
``ui`` extra. No server is started: ``serve`` is replaced."""

from __future__ import annotations

import builtins
from typing import Any

import pytest
from click.testing import CliRunner

import flowpod._cli.ui as ui
from flowpod._cli.main import main


def test_help_names_the_options() -> None:
    result = CliRunner().invoke(main, ["ui", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--namespace", "--allow-cancel", "--in-cluster"):
        assert option in result.output
    assert "127.0.0.1" in result.output and "8080" in result.output
    listed = CliRunner().invoke(main, ["--help"]).output
    assert "ui " in listed.split("Commands:")[1]


def test_the_command_builds_the_app_with_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("starlette")
    served: dict[str, Any] = {}
    monkeypatch.setattr(ui, "serve", lambda app, host, port: served.update(
        app=app, host=host, port=port))
    result = CliRunner().invoke(main, ["--kubeconfig", "/tmp/kc", "--context", "lab", "ui",
                                       "--host", "0.0.0.0", "--port", "9000", "-n", "a",
                                       "-n", "b", "--allow-cancel"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "flowpod dashboard: http://0.0.0.0:9000/"
    assert served["host"] == "0.0.0.0" and served["port"] == 9000
    board = served["app"].state.board
    assert board.allow_cancel is True
    assert board.hub.namespaces == ("a", "b")
    assert (board.hub.api.kubeconfig, board.hub.api.context) == ("/tmp/kc", "lab")


def test_defaults_are_local_and_read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("starlette")
    served: dict[str, Any] = {}
    monkeypatch.setattr(ui, "serve", lambda app, host, port: served.update(app=app))
    result = CliRunner().invoke(main, ["-n", "team", "ui"])
    assert result.output.strip() == "flowpod dashboard: http://127.0.0.1:8080/"
    board = served["app"].state.board
    assert board.allow_cancel is False and board.hub.namespaces == ("team",)


def test_without_the_extra_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_starlette(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] in ("starlette", "uvicorn"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_starlette)
    result = CliRunner().invoke(main, ["ui"])
    assert result.exit_code == 1
    assert "pip install 'flowpod[ui]'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_package_data_ships_every_template_and_asset() -> None:
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["flowpod"]
    package = root / "sdk" / "flowpod"
    files = [path.relative_to(package).as_posix() for folder in ("templates", "static")
             for path in (package / "_ui" / folder).iterdir()]
    assert files and all(any(fnmatch.fnmatch(name, glob) for glob in globs) for name in files)
