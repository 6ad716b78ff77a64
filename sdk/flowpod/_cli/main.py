"""The ``flowpod`` click group: the top of the command line, which assembles the commands and
turns every failure into one ``Error:`` line (``flowpod._cli.errors``).

The commands live below it and never import it:

- ``flowpod._cli.local``: run, config set/unset/view, profile ls/use/create/delete, crds,
  version (this machine);
- ``flowpod._cli.kubernetes``: submit, get, describe, logs, cancel (flows on a cluster), which
  reach the cluster through ``flowpod._cli.access``;
- ``flowpod._cli.ui``: ui, the web dashboard (``flowpod._ui``, the ``ui`` extra);
- local and kubernetes load flow files through ``flowpod._cli.targets``; ``crds`` runs the
  generator in ``flowpod._cli.crds``.

Failures: a ``CliError`` prints itself (exit 1, or 2 for a ``CliUsageError``); a bad setting
(``ConfigurationError``) is a usage error wherever it surfaces; anything else is a bug or an
environment problem and prints one ``Error:`` line, exit 1, or its traceback under ``--debug``.

Shell completion is click's: ``eval "$(_FLOWPOD_COMPLETE=bash_source flowpod)"`` (or
``zsh_source`` / ``fish_source``). Only click is imported with this module (see the command
modules for what each imports on use), so ``flowpod --help`` and completion stay quick.
"""

from __future__ import annotations

from typing import Any

import click

from flowpod._cli import kubernetes, local, ui
from flowpod._cli.errors import CliError, settings_error, usage_error

__all__ = ["main"]


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    # A callback rather than click.version_option: the version is looked up only when asked for.
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"flowpod {local.flowpod_version()}")
    ctx.exit()


class _Group(click.Group):
    """The group whose ``invoke`` is the one place failures become ``Error:`` lines."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:  # the group's own options, an unknown command
            raise usage_error(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a command's options and arguments
            raise usage_error(exc) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click prints these itself (ours in the one-line form)
        except Exception as exc:  # noqa: BLE001 - the command line's last line of defence
            from flowpod.exceptions import ConfigurationError

            if isinstance(exc, ConfigurationError):
                raise settings_error(exc) from None
            if debug:
                import traceback

                traceback.print_exc()
            raise CliError(
                f"unexpected {type(exc).__name__}: {exc}",
                "flowpod",
                "run again with --debug for the traceback" if not debug
                else "please report this with the traceback above",
            ) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", "-V", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Print flowpod's version and exit.")
@click.option("--debug", is_flag=True, help="Print the traceback of an unexpected error.")
@kubernetes.cluster_options  # --kubeconfig, --context, -n: for every cluster command
def main(debug: bool) -> None:
    """flowpod: Prefect-style @task/@flow workflows, run locally or as Kubernetes pods.

    Settings come from FLOWPOD_* variables, else the active profile (flowpod profile ls),
    else defaults; flowpod config view shows them. Shell completion:
    eval "$(_FLOWPOD_COMPLETE=bash_source flowpod)".
    """
    del debug  # read by _Group.invoke, which wraps every command


local.register(main)
kubernetes.register(main)
main.add_command(ui.ui_command)
