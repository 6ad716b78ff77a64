"""The ``flowpod`` commands that work on this machine: run a flow from a file, edit the profile,
generate the CRDs, show the version.

    flowpod run path/to/flows.py:my_flow --param n=3 --param name=world
    flowpod config set FLOWPOD_TASK_DEFAULT_RETRIES=2
    flowpod config unset FLOWPOD_TASK_DEFAULT_RETRIES
    flowpod config view
    flowpod crds [--check] [--out DIR]
    flowpod version

``register(main)`` adds them to the click group of ``flowpod._cli.main``. Only click is imported
with this module; the engine, the settings and the CRD generator (``flowpod._cli.crds``, which
needs pydantic) are imported when a command needs them, so ``flowpod --help`` and
``flowpod config ...`` stay quick. Exit codes: 0 success, 1 the flow run failed (its own logs say
why) or ``crds --check`` found stale files, 2 a usage error (bad target, missing file, malformed
--param or setting), with a message saying how to fix it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from flowpod._cli.targets import load_flow, parse_params, split_target

__all__ = ["config", "crds", "format_result", "register", "run", "version"]


# --- run -----------------------------------------------------------------------------------------


def format_result(result: Any) -> str:
    """Strings as they are, JSON-able values as JSON, anything else as its repr."""
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result)
    except (TypeError, ValueError):
        return repr(result)


@click.command()
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
    flow_obj = load_flow(path, name)

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


@click.group()
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


@click.command()
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


@click.command()
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


# --- registration --------------------------------------------------------------------------------


def register(main: click.Group) -> None:
    """Add run, config, crds and version to the ``flowpod`` group."""
    for command in (run, config, crds, version):
        main.add_command(command)
