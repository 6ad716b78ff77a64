"""The command line's one error form: ``Error: <what> (<where>); <how to fix>``.

Every command reports a failure by raising ``CliError`` (exit 1: a run failed, a cluster or a
store refused) or ``CliUsageError`` (exit 2: the command line, a setting or a parameter is
wrong). ``where`` names the subsystem at fault - ``settings``, ``store``, ``cluster``, ``flow
code``, or the option or file concerned - so a user knows where to look; ``fix`` says what to do.
The message is one line: newlines in the parts are folded.
"""

from __future__ import annotations

from typing import IO, Any

import click

__all__ = ["CliError", "CliUsageError", "one_line", "settings_error", "usage_error"]


def one_line(text: object) -> str:
    """``text`` on one line: runs of whitespace, newlines included, become one space."""
    return " ".join(str(text).split())


class CliError(click.ClickException):
    """A failure the user can act on; printed as ``Error: <what> (<where>); <fix>``, exit 1."""

    exit_code = 1

    def __init__(self, what: object, where: str | None = None, fix: str | None = None) -> None:
        self.what = one_line(what)
        self.where = one_line(where) if where else None
        self.fix = one_line(fix) if fix else None
        super().__init__(self.format_message())

    def format_message(self) -> str:
        text = self.what
        if self.where:
            text = f"{text} ({self.where})"
        if self.fix:
            text = f"{text}; {self.fix}"
        return text

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True, file=file)


class CliUsageError(CliError):
    """The command line, a setting or a parameter is wrong: the same form, exit 2."""

    exit_code = 2


def settings_error(exc: Exception) -> CliUsageError:
    """A ConfigurationError (a bad setting or profile file) as a one-line usage error."""
    what, where, fix = (getattr(exc, part, None) for part in ("what", "where", "fix"))
    if what:  # a SettingError names the value, where it was set and what is accepted
        return CliUsageError(what, str(where), fix)
    return CliUsageError(exc, "settings")


def usage_error(exc: click.UsageError) -> CliUsageError:
    """click's own usage error (a bad option value, a missing argument, an unknown command) in
    the one-line form, pointing at the command's help instead of printing its usage."""
    if isinstance(exc, CliUsageError):
        return exc
    path = exc.ctx.command_path if exc.ctx is not None else "flowpod"
    return CliUsageError(exc.format_message(), path, f"see '{path} --help'")
