"""The ``flowpod`` command line: run a flow from a file, edit the profile, show the version.

    flowpod run path/to/flows.py:my_flow --param n=3 --param name=world
    flowpod config set FLOWPOD_TASK_DEFAULT_RETRIES=2
    flowpod config unset FLOWPOD_TASK_DEFAULT_RETRIES
    flowpod config view
    flowpod version

Only click is imported with this module; the engine is imported when a command needs it, so
``flowpod --help`` and ``flowpod config ...`` stay quick. Exit codes: 0 success, 1 the flow run
failed (its own logs say why), 2 a usage error (bad target, missing file, malformed --param or
setting), with a message saying how to fix it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import click

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """flowpod: Prefect-style @task/@flow workflows, run locally or as Kubernetes pods."""


# --- run -----------------------------------------------------------------------------------------


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


def format_result(result: Any) -> str:
    """Strings as they are, JSON-able values as JSON, anything else as its repr."""
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result)
    except (TypeError, ValueError):
        return repr(result)


@main.command()
@click.argument("target")
@click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A flow parameter; VALUE is parsed as JSON when it is JSON, else kept as a string.",
)
def run(target: str, params: tuple[str, ...]) -> None:
    """Run the flow TARGET (path/to/file.py:flow_name) in this process."""
    path, name = split_target(target)
    parameters = parse_params(params)
    try:
        module = load_module(path)
    except (click.ClickException, SystemExit, KeyboardInterrupt):
        raise
    except BaseException:
        # The file's own code failed at import: show its traceback, as `python file.py` would.
        import traceback

        traceback.print_exc()
        sys.exit(1)
    flow_obj = find_flow(module, name, path)

    from flowpod.exceptions import ParameterTypeError, SignatureMismatchError

    try:
        result = flow_obj(**parameters)
        import inspect

        if inspect.isawaitable(result):
            import asyncio

            async def finish(awaitable: Any) -> Any:
                return await awaitable

            result = asyncio.run(finish(result))
    except (ParameterTypeError, SignatureMismatchError) as exc:
        raise click.BadParameter(str(exc), param_hint="--param") from None
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception:
        # The run failed: its own log (the final Failed state) already says why.
        sys.exit(1)
    if result is not None:
        click.echo(format_result(result))


# --- config --------------------------------------------------------------------------------------


@main.group()
def config() -> None:
    """Show or change settings stored in the profile ($FLOWPOD_HOME/profiles.toml)."""


def _parse_assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise click.BadParameter(
            f"{text!r} is not KEY=VALUE, e.g. FLOWPOD_TASK_DEFAULT_RETRIES=2",
            param_hint="KEY=VALUE",
        )
    return key.strip(), value


@config.command("set")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
def config_set(assignments: tuple[str, ...]) -> None:
    """Persist settings in the active profile, e.g. FLOWPOD_TASK_DEFAULT_RETRIES=2."""
    import os

    import flowpod._common.settings as _settings
    from flowpod.exceptions import ConfigurationError

    values = dict(_parse_assignment(item) for item in assignments)
    try:
        _settings.set_profile_values(values)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="KEY=VALUE") from None
    path = _settings.profile_path()
    for key, value in values.items():
        name = _settings.canonical_name(key)
        click.echo(f"Set {name}={value.strip()!r} in {path}")
        if os.environ.get(name):
            click.echo(
                f"Note: {name} is also set in the environment, which takes precedence",
                err=True,
            )


@config.command("unset")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
def config_unset(keys: tuple[str, ...]) -> None:
    """Remove settings from the active profile."""
    import flowpod._common.settings as _settings
    from flowpod.exceptions import ConfigurationError

    try:
        _settings.unset_profile_values(keys)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="KEY") from None
    for key in keys:
        try:
            name = _settings.canonical_name(key)
        except ConfigurationError:
            name = key  # an unknown key the profile held: removed as written
        click.echo(f"Unset {name} in {_settings.profile_path()}")


@config.command("view")
@click.option("--descriptions", "-d", is_flag=True, help="Also describe each setting.")
def config_view(descriptions: bool) -> None:
    """Show each setting's effective value and where it comes from."""
    import flowpod._common.settings as _settings
    from flowpod.exceptions import ConfigurationError

    try:
        shown = _settings.describe_settings()
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"profile file: {_settings.profile_path()} (profile {_settings.active_profile()!r})")
    for item in shown:
        click.echo(f"{item.name}={item.value!r} (from {item.source})")
        if descriptions:
            click.echo(f"    {item.description}")
    unknown = _settings.unknown_profile_keys()
    if unknown:
        click.echo(
            f"Warning: the profile holds unknown keys, ignored: {', '.join(unknown)} "
            f"(remove them with: flowpod config unset ..., or edit the file)",
            err=True,
        )


# --- crds ----------------------------------------------------------------------------------------


@main.command()
@click.option("--check", is_flag=True, help="Exit 1 if the files differ from the models.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of the CRD files (default: crds/ of this checkout and the Helm "
    "chart's copy in charts/flowpod/files/crds/).",
)
def crds(check: bool, out_dir: Path | None) -> None:
    """Generate the TaskRun and FlowRun CRD YAML from the pydantic models."""
    import flowpod._cli.crds as _crdgen
    outs = [out_dir] if out_dir is not None else _crdgen.default_output_dirs()
    if check:
        problems = [problem for out in outs for problem in _crdgen.check_crds(out)]
        for problem in problems:
            click.echo(problem, err=True)
        if problems:
            where = " and ".join(str(out) for out in outs)
            raise click.ClickException(f"{where} is stale: regenerate it with `flowpod crds`.")
        for out in outs:
            click.echo(f"{out}: up to date")
        return
    for out in outs:
        changed = _crdgen.write_crds(out)
        for path in changed:
            click.echo(f"wrote {path}")
        if not changed:
            click.echo(f"{out}: up to date")


# --- version -------------------------------------------------------------------------------------


@main.command()
def version() -> None:
    """Print the versions of flowpod and Python."""
    import platform
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        flowpod_version = dist_version("flowpod")
    except PackageNotFoundError:  # running from a source tree that is not installed
        flowpod_version = "unknown"
    click.echo(f"flowpod {flowpod_version}")
    click.echo(f"Python {platform.python_version()} ({sys.executable})")


# --- flows on Kubernetes: submit, get, logs, cancel (flowpod._cli.kubernetes) ------------------

def _register_kubernetes_commands() -> None:
    from flowpod._cli.kubernetes import register

    register(main)


_register_kubernetes_commands()
