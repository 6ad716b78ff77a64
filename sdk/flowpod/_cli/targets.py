"""Turning the command line's TARGET and ``--param`` arguments into a flow and its parameters.

Shared by ``flowpod run`` (``flowpod._cli.local``) and ``flowpod submit``
(``flowpod._cli.kubernetes``): ``split_target`` parses ``path/to/file.py[:flow_name]``,
``load_flow`` executes that file the way ``python path`` would and picks the flow out of it, and
``parse_params`` decodes ``KEY=VALUE`` parameters. Every usage error is a ``click.BadParameter``
(exit code 2) saying how to fix it.

Only click is imported with this module; the engine (``flowpod.flows``) is imported on use.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import click

__all__ = ["find_flow", "load_flow", "load_module", "parse_param", "parse_params", "split_target"]


def parse_param(text: str) -> tuple[str, Any]:
    """``key=value`` -> (key, value): the value JSON-decoded when it parses, else the raw string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise click.BadParameter(
            f"{text!r} is not KEY=VALUE; write e.g. --param n=3 or --param 'names=[\"a\", \"b\"]'",
            param_hint="--param",
        )
    if not key.isidentifier():
        raise click.BadParameter(
            f"{key!r} is not a valid parameter name (it must be a Python identifier)",
            param_hint="--param",
        )
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw  # not JSON: a plain string (the flow's validate_parameters may coerce it)
    return key, value


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, value = parse_param(item)
        if key in params:
            raise click.BadParameter(f"{key!r} is given more than once", param_hint="--param")
        params[key] = value
    return params


def split_target(target: str) -> tuple[Path, str | None]:
    """``path/to/file.py:flow`` -> (path, "flow"); the flow name is optional."""
    path_text, sep, name = target.rpartition(":")
    if not sep or not path_text.endswith(".py"):
        # No ':', or a ':' inside the path itself (e.g. "C:\\x.py"): the whole thing is the path.
        path_text, name = target, ""
    path = Path(path_text)
    if path.suffix != ".py":
        raise click.BadParameter(
            f"{target!r} is not PATH.py:FLOW_NAME, e.g. flows/etl.py:my_flow",
            param_hint="TARGET",
        )
    if not path.is_file():
        raise click.BadParameter(f"no such file: {path}", param_hint="TARGET")
    return path, (name or None)


def load_module(path: Path) -> ModuleType:
    """Execute the file as a module the way ``python path`` would see its neighbours."""
    import importlib.util

    path = path.resolve()
    name = path.stem if path.stem.isidentifier() else "_flowpod_target"
    if name in sys.modules:
        # A module of that name is already imported (e.g. a file called json.py): do not shadow it.
        name = f"_flowpod_target_{name}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise click.BadParameter(f"cannot load {path} as a Python module", param_hint="TARGET")
    module = importlib.util.module_from_spec(spec)
    # Like `python file.py`: sibling modules of the flow file are importable.
    sys.path.insert(0, str(path.parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def find_flow(module: ModuleType, name: str | None, path: Path) -> Any:
    from flowpod.flows import Flow

    flows = {attr: obj for attr, obj in vars(module).items() if isinstance(obj, Flow)}
    listed = ", ".join(sorted(flows)) or "none"
    if name is None:
        if len(flows) == 1:
            return next(iter(flows.values()))
        raise click.BadParameter(
            f"{path} defines {len(flows)} flows ({listed}); name one as {path}:FLOW_NAME",
            param_hint="TARGET",
        )
    obj = getattr(module, name, None)
    if obj is None:
        raise click.BadParameter(
            f"{path} has no flow named {name!r} (flows found: {listed})", param_hint="TARGET"
        )
    if not isinstance(obj, Flow):
        raise click.BadParameter(
            f"{name!r} in {path} is a {type(obj).__name__}, not a flow; decorate it with @flow",
            param_hint="TARGET",
        )
    return obj


def load_flow(path: Path, name: str | None) -> Any:
    """The flow ``name`` (or the only flow) of the file at ``path``. When the file's own code fails
    at import, that is one ``Error:`` line naming the file and line (exit 1); the traceback is
    printed too under ``flowpod --debug``."""
    try:
        module = load_module(path)
    except (click.ClickException, SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        import traceback

        from flowpod._cli.errors import CliError

        context = click.get_current_context(silent=True)
        if context is not None and context.find_root().params.get("debug"):
            traceback.print_exc()
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if Path(f.filename).resolve() == path.resolve()]
        where = f"{path}:{frames[-1].lineno}" if frames else str(path)
        raise CliError(f"importing {path} failed: {type(exc).__name__}: {exc}", where,
                       "fix the flow file (flowpod --debug run ... shows the traceback)"
                       ) from None
    return find_flow(module, name, path)
