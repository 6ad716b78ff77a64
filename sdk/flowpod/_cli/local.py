"""The ``flowpod`` commands that work on this machine: run a flow from a file, edit the settings
and the profiles, generate the CRDs, show the version.

    flowpod run path/to/flows.py:my_flow --param n=3 --param name=world
    flowpod config set FLOWPOD_TASK_DEFAULT_RETRIES=2
    flowpod config unset FLOWPOD_TASK_DEFAULT_RETRIES
    flowpod config view
    flowpod profile ls | use NAME | create NAME [--from OTHER] | delete NAME
    flowpod crds [--check] [--out DIR]
    flowpod version

``register(main)`` adds them to the click group of ``flowpod._cli.main``. Only click is imported
with this module; the engine, the settings and the CRD generator (``flowpod._cli.crds``, which
needs pydantic) are imported when a command needs them, so ``flowpod --help`` and
``flowpod config ...`` stay quick. Every failure is one ``Error:`` line (``flowpod._cli.errors``):
exit 1 when the flow run failed (its own logs say more) or ``crds --check`` found stale files,
2 for a usage error (bad target, missing file, malformed or mistyped --param, bad setting).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from flowpod._cli.errors import CliError, CliUsageError, settings_error
from flowpod._cli.targets import load_flow, parse_params, split_target

__all__ = [
    "config",
    "crds",
    "flowpod_version",
    "format_result",
    "profile",
    "register",
    "run",
    "version",
]


def _usage(exc: click.BadParameter, fix: str | None = None) -> CliUsageError:
    """A click.BadParameter of the shared target/--param parsing, as our one-line form."""
    return CliUsageError(exc.message, exc.param_hint if isinstance(exc.param_hint, str) else None,
                         fix)


# --- run -----------------------------------------------------------------------------------------


def format_result(result: Any) -> str:
    """Strings as they are, JSON-able values as JSON, anything else as its repr."""
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result)
    except (TypeError, ValueError):
        return repr(result)


def _check_call(flow_obj: Any, parameters: dict[str, Any]) -> None:
    """Refuse parameters the flow cannot take before it runs: a usage error, not a failed run."""
    import inspect

    from flowpod.exceptions import ParameterTypeError

    try:
        inspect.signature(flow_obj.fn).bind(**parameters)
    except TypeError as exc:
        raise CliUsageError(f"{exc} for flow {flow_obj.name!r}", "--param",
                            "pass each parameter as --param NAME=VALUE") from None
    if getattr(flow_obj, "should_validate_parameters", True):
        try:
            flow_obj.validate_parameters(dict(parameters))
        except ParameterTypeError as exc:
            raise CliUsageError(exc, "--param", "pass a value of the parameter's type") from None


@click.command(short_help="Run a flow from a file in this process.")
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
    try:
        path, name = split_target(target)
        parameters = parse_params(params)
    except click.BadParameter as exc:
        raise _usage(exc) from None
    from flowpod._common.settings import get_settings
    from flowpod.exceptions import ConfigurationError

    try:
        get_settings()  # a bad setting is a usage error now, not a silent failure mid-run
    except ConfigurationError as exc:
        raise settings_error(exc) from None
    try:
        flow_obj = load_flow(path, name)
    except click.BadParameter as exc:
        raise _usage(exc) from None
    _check_call(flow_obj, parameters)
    try:
        result = flow_obj(**parameters)
        import inspect

        if inspect.isawaitable(result):
            import asyncio

            async def finish(awaitable: Any) -> Any:
                return await awaitable

            result = asyncio.run(finish(result))
    except KeyboardInterrupt:
        sys.exit(130)
    except ConfigurationError as exc:
        raise settings_error(exc) from None
    except Exception as exc:
        # The run's own log (its final Failed state) has the details and the traceback.
        raise CliError(f"flow run failed: {type(exc).__name__}: {exc}", "flow code",
                       "see the flow run's log above") from None
    if result is not None:
        click.echo(format_result(result))


# --- config --------------------------------------------------------------------------------------


@click.group(short_help="Show or change settings in the active profile.")
def config() -> None:
    """Show or change settings stored in the active profile ($FLOWPOD_HOME/profiles.toml).

    The environment (FLOWPOD_* variables) takes precedence over the profile.
    """


def _parse_assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise CliUsageError(f"{text!r} is not KEY=VALUE", "KEY=VALUE",
                            "write e.g. flowpod config set FLOWPOD_TASK_DEFAULT_RETRIES=2")
    return key.strip(), value


@config.command("set", short_help="Store settings in the active profile.")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
def config_set(assignments: tuple[str, ...]) -> None:
    """Store settings in the active profile, e.g. FLOWPOD_TASK_DEFAULT_RETRIES=2."""
    import os

    import flowpod._common.settings as _settings
    from flowpod.exceptions import ConfigurationError

    values = dict(_parse_assignment(item) for item in assignments)
    try:
        _settings.set_profile_values(values)
    except ConfigurationError as exc:
        raise settings_error(exc) from None
    path = _settings.profile_path()
    for key, value in values.items():
        name = _settings.canonical_name(key)
        click.echo(f"Set {name}={value.strip()!r} in {path}")
        if os.environ.get(name):
            click.echo(
                f"Note: {name} is also set in the environment, which takes precedence",
                err=True,
            )


@config.command("unset", short_help="Remove settings from the active profile.")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
def config_unset(keys: tuple[str, ...]) -> None:
    """Remove settings from the active profile."""
    import flowpod._common.settings as _settings
    from flowpod.exceptions import ConfigurationError

    try:
        _settings.unset_profile_values(keys)
    except ConfigurationError as exc:
        raise settings_error(exc) from None
    for key in keys:
        try:
            name = _settings.canonical_name(key)
        except ConfigurationError:
            name = key  # an unknown key the profile held: removed as written
        click.echo(f"Unset {name} in {_settings.profile_path()}")


@config.command("view", short_help="Show every setting's value and its source.")
@click.option("--descriptions", "-d", is_flag=True, help="Also describe each setting.")
def config_view(descriptions: bool) -> None:
    """Show each setting's effective value and where it comes from."""
    import flowpod._common.settings as _settings
    from flowpod.exceptions import ConfigurationError

    try:
        shown = _settings.describe_settings()
        active = _settings.active_profile()
        unknown = _settings.unknown_profile_keys()
    except ConfigurationError as exc:
        raise settings_error(exc) from None
    click.echo(f"profile file: {_settings.profile_path()} (profile {active!r})")
    for item in shown:
        click.echo(f"{item.name}={item.value!r} (from {item.source})")
        if descriptions:
            click.echo(f"    {item.description}")
    if unknown:
        click.echo(
            f"Warning: the profile holds unknown keys, ignored: {', '.join(unknown)} "
            f"(remove them with: flowpod config unset ..., or edit the file)",
            err=True,
        )


# --- profile -------------------------------------------------------------------------------------


@click.group(short_help="List, switch, create or delete settings profiles.")
def profile() -> None:
    """Named sets of settings in $FLOWPOD_HOME/profiles.toml; one is active.

    FLOWPOD_PROFILE in the environment overrides the active one for one shell or command.
    """


def _profile_error(exc: Exception, fix: str | None = None) -> CliUsageError:
    return CliUsageError(exc, "profile", fix)


@profile.command("ls", short_help="List the profiles; * marks the active one.")
def profile_ls() -> None:
    """List the profiles; * marks the active one."""
    import os

    from flowpod._common import profiles
    from flowpod.exceptions import ConfigurationError

    try:
        names, active = profiles.list_profiles()
    except ConfigurationError as exc:
        raise settings_error(exc) from None
    for name in names:
        click.echo(f"{'*' if name == active else ' '} {name}")
    if os.environ.get(profiles.PROFILE_VAR):
        click.echo(f"Note: {profiles.PROFILE_VAR}={active} in the environment selects the "
                   "active profile", err=True)


@profile.command("use", short_help="Make a profile the active one.")
@click.argument("name")
def profile_use(name: str) -> None:
    """Make the profile NAME the active one."""
    import os

    from flowpod._common import profiles
    from flowpod.exceptions import ConfigurationError

    try:
        profiles.use_profile(name)
    except ConfigurationError as exc:
        raise _profile_error(exc, f"create it with: flowpod profile create {name}") from None
    click.echo(f"Now using profile {name!r}")
    selected = os.environ.get(profiles.PROFILE_VAR)
    if selected and selected != name:
        click.echo(f"Note: {profiles.PROFILE_VAR}={selected} in the environment takes "
                   "precedence", err=True)


@profile.command("create", short_help="Create a new, empty profile.")
@click.argument("name")
@click.option("--from", "copy_from", metavar="PROFILE", default=None,
              help="Start from a copy of this profile's settings.")
def profile_create(name: str, copy_from: str | None) -> None:
    """Create the profile NAME (empty, or a copy of --from PROFILE)."""
    from flowpod._common import profiles
    from flowpod.exceptions import ConfigurationError

    try:
        profiles.create_profile(name, copy_from)
    except ConfigurationError as exc:
        raise _profile_error(exc, "choose another name, or see them with: flowpod profile ls"
                             ) from None
    click.echo(f"Created profile {name!r}; switch to it with: flowpod profile use {name}")


@profile.command("delete", short_help="Delete a profile (not the active one).")
@click.argument("name")
def profile_delete(name: str) -> None:
    """Delete the profile NAME; the active profile cannot be deleted."""
    from flowpod._common import profiles
    from flowpod.exceptions import ConfigurationError

    try:
        _, active = profiles.list_profiles()
        if name == active:
            raise CliUsageError(f"profile {name!r} is the active profile", "profile",
                                "switch to another first: flowpod profile use OTHER")
        profiles.delete_profile(name)
    except ConfigurationError as exc:
        raise _profile_error(exc, "see the profiles with: flowpod profile ls") from None
    click.echo(f"Deleted profile {name!r}")


# --- crds ----------------------------------------------------------------------------------------


@click.command(short_help="Generate the TaskRun and FlowRun CRDs.")
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
            raise CliError(f"{where} is stale", "crds", "regenerate it with: flowpod crds")
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


def flowpod_version() -> str:
    """The installed distribution's version ("unknown" in a source tree that is not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("flowpod")
    except PackageNotFoundError:
        return "unknown"


@click.command(short_help="Print the versions of flowpod and Python.")
def version() -> None:
    """Print the versions of flowpod and Python."""
    import platform

    click.echo(f"flowpod {flowpod_version()}")
    click.echo(f"Python {platform.python_version()} ({sys.executable})")


# --- registration --------------------------------------------------------------------------------


def register(main: click.Group) -> None:
    """Add run, config, profile, crds and version to the ``flowpod`` group."""
    for command in (run, config, profile, crds, version):
        main.add_command(command)
