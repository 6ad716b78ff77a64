"""The profile file: ``$FLOWPOD_HOME/profiles.toml``, its profiles, and safe rewrites of it.

It looks like::

    active = "default"

    [profiles.default]
    FLOWPOD_TASK_DEFAULT_RETRIES = "2"

    [profiles.ci]
    FLOWPOD_S3_BUCKET = "ci-results"

``FLOWPOD_PROFILE`` in the environment overrides ``active``. The file is read with ``tomllib`` and
rewritten whole (atomically, under a lock) by a small TOML writer of our own, so comments in a
hand-edited file do not survive ``flowpod config set``. This module knows nothing of what the
settings mean: ``flowpod._common.settings`` validates values before they are written here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flowpod.exceptions import ConfigurationError

__all__ = [
    "DEFAULT_PROFILE",
    "HOME_VAR",
    "PROFILE_VAR",
    "active_name",
    "active_table",
    "create_profile",
    "delete_profile",
    "dump_toml",
    "editing",
    "home_from_env",
    "list_profiles",
    "profile_path",
    "profile_table",
    "read_document",
    "use_profile",
    "write_document",
]

HOME_VAR = "FLOWPOD_HOME"
PROFILE_VAR = "FLOWPOD_PROFILE"
DEFAULT_PROFILE = "default"
PROFILE_FILE_NAME = "profiles.toml"
# Names a shell and a TOML bare key both take without quoting (kubectl contexts are as plain).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def home_from_env(raw: str | None) -> Path:
    """``FLOWPOD_HOME`` as a path; ``~/.flowpod`` when unset or empty."""
    if raw:
        return Path(raw).expanduser()
    return Path("~/.flowpod").expanduser()


def profile_path() -> Path:
    """``$FLOWPOD_HOME/profiles.toml`` (``~/.flowpod/profiles.toml`` by default)."""
    return home_from_env(os.environ.get(HOME_VAR)) / PROFILE_FILE_NAME


def read_document(path: Path) -> dict[str, Any]:
    """The parsed file; ``{}`` when there is none."""
    try:
        file = open(path, "rb")
    except (FileNotFoundError, NotADirectoryError):
        return {}
    # Imported only once a profile exists: it costs milliseconds of a first flow run's start-up.
    import tomllib

    with file:
        try:
            return tomllib.load(file)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(
                f"the profile file {path} is not valid TOML ({exc}); fix it by hand or delete it"
            ) from None


def active_name(document: Mapping[str, Any]) -> str:
    """$FLOWPOD_PROFILE, else the file's ``active`` entry, else "default"."""
    name = os.environ.get(PROFILE_VAR) or document.get("active") or DEFAULT_PROFILE
    return str(name)


def _profiles(document: dict[str, Any], path: Path, create: bool = False) -> dict[str, Any]:
    profiles = document.get("profiles")
    if profiles is None:
        profiles = {}
        if create:
            document["profiles"] = profiles
    if not isinstance(profiles, dict) or not all(isinstance(t, dict) for t in profiles.values()):
        raise ConfigurationError(
            f"the profile file {path} is malformed: 'profiles' and each [profiles.NAME] must be "
            "tables; fix it by hand or delete it"
        )
    return profiles


def active_table(document: dict[str, Any], path: Path, create: bool = False) -> dict[str, Any]:
    """The active profile's table inside ``document`` (added to it when ``create``)."""
    profiles = _profiles(document, path, create)
    name = active_name(document)
    table = profiles.get(name)
    if table is None:
        table = {}
        if create:
            profiles[name] = table
    return table


def profile_table(document: dict[str, Any], path: Path) -> dict[str, str]:
    """The active profile's values as strings, the same form the environment gives."""
    values: dict[str, str] = {}
    for key, raw in active_table(document, path).items():
        if isinstance(raw, bool):
            raise ConfigurationError(f"{key} in {path}: booleans are not accepted, use a string")
        if isinstance(raw, list):
            values[key] = ",".join(str(item) for item in raw)
        else:
            values[key] = str(raw)
    return values


# --- profiles as a whole (flowpod profile ls/use/create/delete) --------------------------------


def list_profiles() -> tuple[list[str], str]:
    """Every profile's name, sorted, and the active one's. The active one and the file's own
    ``active`` entry are listed even before they hold values (``config set`` creates them)."""
    path = profile_path()
    document = read_document(path)
    active = active_name(document)
    own = str(document.get("active") or DEFAULT_PROFILE)
    return sorted({*_profiles(document, path), active, own}), active


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ConfigurationError(
            f"{name!r} is not a valid profile name: use letters, digits, '_', '-' and '.' "
            "(at most 63, starting with a letter or digit)"
        )


def create_profile(name: str, copy_from: str | None = None) -> None:
    """Add an empty profile (or a copy of ``copy_from``); an existing name is refused."""
    _check_name(name)
    path = profile_path()
    with editing(path):
        document = read_document(path)
        profiles = _profiles(document, path, create=True)
        if name in profiles:
            raise ConfigurationError(f"profile {name!r} already exists in {path}")
        source: dict[str, Any] = {}
        if copy_from is not None:
            if copy_from not in profiles:
                raise ConfigurationError(f"no profile named {copy_from!r} in {path} to copy")
            source = dict(profiles[copy_from])
        document.setdefault("active", DEFAULT_PROFILE)
        profiles[name] = source
        write_document(path, document)


def use_profile(name: str) -> None:
    """Make ``name`` the file's active profile; it must exist (or be "default")."""
    path = profile_path()
    with editing(path):
        document = read_document(path)
        profiles = _profiles(document, path, create=True)
        if name not in profiles and name != DEFAULT_PROFILE:
            raise ConfigurationError(f"no profile named {name!r} in {path}")
        profiles.setdefault(name, {})
        document["active"] = name
        write_document(path, document)


def delete_profile(name: str) -> None:
    """Remove profile ``name``; the active one is refused (switch away from it first)."""
    path = profile_path()
    with editing(path):
        document = read_document(path)
        profiles = _profiles(document, path)
        if name not in profiles:
            raise ConfigurationError(f"no profile named {name!r} in {path}")
        if name == active_name(document):
            raise ConfigurationError(f"profile {name!r} is the active profile")
        del profiles[name]
        write_document(path, document)


# --- writing -----------------------------------------------------------------------------------


def _toml_key(key: str) -> str:
    if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key):
        return key
    return _toml_string(key)


def _toml_string(text: str) -> str:
    out = ['"']
    for char in text:
        if char == '"' or char == "\\":
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to the profile file")


def dump_toml(document: Mapping[str, Any]) -> str:
    """Serialise scalars and (nested) tables: all the profile file ever needs."""
    lines: list[str] = []

    def table(prefix: list[str], data: Mapping[str, Any]) -> None:
        scalars = [(k, v) for k, v in data.items() if not isinstance(v, dict)]
        tables = [(k, v) for k, v in data.items() if isinstance(v, dict)]
        if prefix and (scalars or not tables):
            if lines:
                lines.append("")
            lines.append("[" + ".".join(_toml_key(p) for p in prefix) + "]")
        for key, value in scalars:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        for key, value in tables:
            table([*prefix, key], value)

    table([], document)
    return "\n".join(lines) + "\n"


def write_document(path: Path, document: Mapping[str, Any]) -> None:
    """Replace the file with ``document`` atomically (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        text = "# flowpod profiles, written by `flowpod config set`\n" + dump_toml(document)
    except TypeError as exc:  # a hand-edited file with TOML types we never write (dates, ...)
        raise ConfigurationError(
            f"cannot rewrite {path}: {exc}; edit that entry by hand (use a string)"
        ) from None
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=".profiles-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def editing(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of the profile between processes (two `config set` at once
    would otherwise each write back the file without the other's key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(path.parent / ".profiles.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
