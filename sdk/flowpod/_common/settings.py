"""flowpod's settings: what they are, where each value comes from, and the profile file.

Precedence, highest first: the environment (``FLOWPOD_*`` variables), the active profile in
``$FLOWPOD_HOME/profiles.toml`` (written by ``flowpod config set``), then the defaults below.

``get_settings()`` sits on hot paths (every ``Task()`` creation, every run start), so it returns a
cached ``Settings`` unless one of the relevant environment variables or the profile file (its path,
mtime, size, inode) changed since the last call; that check costs about a microsecond.

The profile file looks like::

    active = "default"

    [profiles.default]
    FLOWPOD_TASK_DEFAULT_RETRIES = "2"

It is read with ``tomllib`` and rewritten whole (atomically) by a small TOML writer of our own,
so comments in a hand-edited file do not survive ``flowpod config set``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from flowpod.exceptions import ConfigurationError

__all__ = [
    "SettingValue",
    "Settings",
    "active_profile",
    "canonical_name",
    "describe_settings",
    "get_settings",
    "known_settings",
    "profile_path",
    "set_profile_values",
    "unknown_profile_keys",
    "unset_profile_values",
]

HOME_VAR = "FLOWPOD_HOME"
PROFILE_VAR = "FLOWPOD_PROFILE"
DEFAULT_PROFILE = "default"
PROFILE_FILE_NAME = "profiles.toml"
MAX_RETRY_DELAYS = 50
LOGGING_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

Source = Literal["environment", "profile", "default"]


@dataclass(frozen=True)
class Settings:
    """The effective settings of this process (one immutable snapshot)."""

    home: Path
    """FLOWPOD_HOME: where the profile file and the local result store live; default ~/.flowpod."""

    task_default_retries: int
    """FLOWPOD_TASK_DEFAULT_RETRIES: retries of a task that does not set ``retries``; default 0."""

    task_default_retry_delay_seconds: float | list[float]
    """FLOWPOD_TASK_DEFAULT_RETRY_DELAY_SECONDS:
    "10" -> 10.0, "10,20" -> [10.0, 20.0]; default 0."""

    logging_level: str
    """FLOWPOD_LOGGING_LEVEL: level of flowpod's loggers; default "INFO"."""


@dataclass(frozen=True)
class SettingValue:
    """One effective value as shown by ``flowpod config view``."""

    name: str
    value: str
    source: Source
    description: str


# --- parsing -----------------------------------------------------------------------------------


def _parse_retries(name: str, raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigurationError(
            f"{name}={raw!r} is not valid: expected a whole number >= 0, e.g. {name}=3"
        )
    return value


def _parse_delay(name: str, raw: str) -> float | list[float]:
    form = (
        f"expected a number of seconds >= 0 or a comma-separated list of them "
        f"(at most {MAX_RETRY_DELAYS}), e.g. {name}=10 or {name}=10,20,40"
    )
    parts = [part.strip() for part in raw.split(",")]
    try:
        values = [float(part) for part in parts]
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not valid: {form}") from None
    if any(not math.isfinite(v) or v < 0 for v in values) or len(values) > MAX_RETRY_DELAYS:
        raise ConfigurationError(f"{name}={raw!r} is not valid: {form}")
    return values if "," in raw else values[0]


def _parse_level(name: str, raw: str) -> str:
    level = raw.strip().upper()
    if level not in LOGGING_LEVELS:
        raise ConfigurationError(
            f"{name}={raw!r} is not valid: expected one of {', '.join(LOGGING_LEVELS)}"
        )
    return level


@dataclass(frozen=True)
class _Spec:
    name: str
    field: str
    default: str
    description: str
    parse: Callable[[str, str], Any]


# FLOWPOD_HOME is not here: it decides where the profile lives, so only the environment sets it.
_SPECS: tuple[_Spec, ...] = (
    _Spec(
        "FLOWPOD_TASK_DEFAULT_RETRIES",
        "task_default_retries",
        "0",
        "retries of a task that does not set retries= (a whole number >= 0)",
        _parse_retries,
    ),
    _Spec(
        "FLOWPOD_TASK_DEFAULT_RETRY_DELAY_SECONDS",
        "task_default_retry_delay_seconds",
        "0",
        "delay before each retry when the task sets none: seconds, or a list like 10,20,40",
        _parse_delay,
    ),
    _Spec(
        "FLOWPOD_LOGGING_LEVEL",
        "logging_level",
        "INFO",
        f"level of flowpod's loggers ({', '.join(LOGGING_LEVELS)})",
        _parse_level,
    ),
)
_SPECS_BY_NAME = {spec.name: spec for spec in _SPECS}


def known_settings() -> dict[str, str]:
    """Every setting's name mapped to a one-line description (for ``flowpod config view``)."""
    described = {HOME_VAR: "folder of the profile file and the local result store (env only)"}
    described.update({spec.name: spec.description for spec in _SPECS})
    return described


def canonical_name(key: str) -> str:
    """Accept the variable name in any case, with or without the FLOWPOD_ prefix."""
    name = key.strip().upper().replace("-", "_").replace(".", "_")
    if not name.startswith("FLOWPOD_"):
        name = "FLOWPOD_" + name
    if name == HOME_VAR or name == PROFILE_VAR:
        raise ConfigurationError(
            f"{name} cannot be stored in a profile: it decides which profile is read; "
            f"set it in the environment instead (export {name}=...)"
        )
    if name not in _SPECS_BY_NAME:
        raise ConfigurationError(
            f"unknown setting {key!r}; known settings: {', '.join(_SPECS_BY_NAME)}"
        )
    return name


# --- the profile file ------------------------------------------------------------------------


def _home_from_env(raw: str | None) -> Path:
    if raw:
        return Path(raw).expanduser()
    return Path("~/.flowpod").expanduser()


def profile_path() -> Path:
    """``$FLOWPOD_HOME/profiles.toml`` (``~/.flowpod/profiles.toml`` by default)."""
    return _home_from_env(os.environ.get(HOME_VAR)) / PROFILE_FILE_NAME


def _read_document(path: Path) -> dict[str, Any]:
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


def active_profile() -> str:
    """The profile in use: $FLOWPOD_PROFILE, else the file's ``active`` entry, else "default"."""
    return _active_profile_name(_read_document(profile_path()))


def _active_profile_name(document: Mapping[str, Any]) -> str:
    name = os.environ.get(PROFILE_VAR) or document.get("active") or DEFAULT_PROFILE
    return str(name)


def _active_table(document: dict[str, Any], path: Path, create: bool = False) -> dict[str, Any]:
    """The active profile's table inside ``document`` (added to it when ``create``)."""
    profiles = document.get("profiles")
    if profiles is None:
        profiles = {}
        if create:
            document["profiles"] = profiles
    name = _active_profile_name(document)
    table = profiles.get(name) if isinstance(profiles, dict) else None
    if table is None and isinstance(profiles, dict):
        table = {}
        if create:
            profiles[name] = table
    if not isinstance(table, dict):
        raise ConfigurationError(
            f"the profile file {path} is malformed: 'profiles' and each [profiles.NAME] must be "
            "tables; fix it by hand or delete it"
        )
    return table


def _profile_table(document: dict[str, Any], path: Path) -> dict[str, str]:
    """The active profile's values as strings, the same form the environment gives."""
    table = _active_table(document, path)
    values: dict[str, str] = {}
    for key, raw in table.items():
        if isinstance(raw, bool):
            raise ConfigurationError(f"{key} in {path}: booleans are not accepted, use a string")
        if isinstance(raw, list):
            values[key] = ",".join(str(item) for item in raw)
        else:
            values[key] = str(raw)
    return values


def unknown_profile_keys() -> list[str]:
    """Keys in the active profile that no setting reads (typos in a hand-edited file)."""
    path = profile_path()
    return sorted(set(_profile_table(_read_document(path), path)) - set(_SPECS_BY_NAME))


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


def _dump_toml(document: Mapping[str, Any]) -> str:
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


def _write_document(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        text = "# flowpod profiles, written by `flowpod config set`\n" + _dump_toml(document)
    except TypeError as exc:  # a hand-edited file with TOML types we never write (dates, ...)
        raise ConfigurationError(
            f"cannot rewrite {path}: {exc}; edit that entry by hand (use a string)"
        ) from None
    import tempfile

    # A temp file in the same folder + os.replace: readers never see a half-written profile.
    fd, tmp = tempfile.mkstemp(prefix=".profiles-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _invalidate()


@contextmanager
def _editing(path: Path) -> Iterator[None]:
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


def set_profile_values(values: Mapping[str, str]) -> None:
    """Validate and persist ``values`` in the active profile; nothing is written if one is bad."""
    checked: dict[str, str] = {}
    for key, raw in values.items():
        name = canonical_name(key)
        if not isinstance(raw, str):
            raise ConfigurationError(f"{name}: profile values are strings, got {raw!r}")
        _SPECS_BY_NAME[name].parse(name, raw)
        checked[name] = raw.strip()
    path = profile_path()
    with _editing(path):
        document = _read_document(path)
        document.setdefault("active", _active_profile_name(document))
        _active_table(document, path, create=True).update(checked)
        _write_document(path, document)


def unset_profile_values(keys: Iterable[str]) -> None:
    """Remove ``keys`` from the active profile (keys it does not hold are ignored).

    A key no setting knows is refused, unless the profile holds it: that is how a typo in a
    hand-edited file is removed.
    """
    path = profile_path()
    with _editing(path):
        document = _read_document(path)
        table = _active_table(document, path)
        names = []
        for key in keys:
            try:
                names.append(canonical_name(key))
            except ConfigurationError:
                if key not in table:
                    raise
                names.append(key)
        if not any(name in table for name in names):
            return
        for name in names:
            table.pop(name, None)
        _write_document(path, document)


# --- resolution and the cached snapshot --------------------------------------------------------

_WATCHED = (HOME_VAR, PROFILE_VAR, *(spec.name for spec in _SPECS))

# os.environ.get() decodes on every call (~0.6 us each); the underlying bytes dict is ~10x
# cheaper. It is CPython's POSIX layout, so fall back to os.environ when it is not there.
_env_data: Any = getattr(os.environ, "_data", None)
if isinstance(_env_data, dict) and os.name == "posix":
    _WATCHED_KEYS: tuple[Any, ...] = tuple(os.fsencode(name) for name in _WATCHED)
else:  # pragma: no cover - non-POSIX
    _env_data = os.environ
    _WATCHED_KEYS = _WATCHED

_cache: tuple[tuple[Any, ...], Settings] | None = None
_profile_for_home: tuple[Any, str] = (object(), "")


def _invalidate() -> None:
    global _cache
    _cache = None


def _resolve() -> tuple[Settings, list[SettingValue]]:
    home = _home_from_env(os.environ.get(HOME_VAR))
    path = home / PROFILE_FILE_NAME
    profile = _profile_table(_read_document(path), path)
    fields: dict[str, Any] = {"home": home}
    shown = [
        SettingValue(
            HOME_VAR,
            str(home),
            "environment" if os.environ.get(HOME_VAR) else "default",
            known_settings()[HOME_VAR],
        )
    ]
    for spec in _SPECS:
        source: Source
        env_raw = os.environ.get(spec.name)
        if env_raw:  # an empty variable counts as unset, as `FLOWPOD_X= cmd` intends
            raw, source = env_raw, "environment"
        elif spec.name in profile:
            raw, source = profile[spec.name], "profile"
        else:
            raw, source = spec.default, "default"
        try:
            fields[spec.field] = spec.parse(spec.name, raw)
        except ConfigurationError as exc:
            where = "the environment" if source == "environment" else f"profile file {path}"
            raise ConfigurationError(f"{exc} (set in {where})") from None
        shown.append(SettingValue(spec.name, raw, source, spec.description))
    return Settings(**fields), shown


# Unpacked into names so the hot path below reads them without a loop; adding a setting without
# updating get_settings() fails right here, at import.
_K_HOME, _K_PROFILE, _K_RETRIES, _K_DELAY, _K_LEVEL = _WATCHED_KEYS


def get_settings() -> Settings:
    """The effective settings; cheap when nothing changed since the last call."""
    global _cache, _profile_for_home
    get = _env_data.get
    home_raw = get(_K_HOME)
    env = (home_raw, get(_K_PROFILE), get(_K_RETRIES), get(_K_DELAY), get(_K_LEVEL))
    if home_raw is not _profile_for_home[0]:  # the held reference keeps `is` meaningful
        home_text = os.fsdecode(home_raw) if isinstance(home_raw, bytes) else home_raw
        _profile_for_home = (home_raw, str(_home_from_env(home_text) / PROFILE_FILE_NAME))
    try:
        # mtime alone can miss two writes within one timestamp tick; size and inode (a new one
        # per atomic replace) catch those.
        st = os.stat(_profile_for_home[1])
        key: tuple[Any, ...] = (env, st.st_mtime_ns, st.st_size, st.st_ino)
    except OSError:
        key = (env, None, None, None)
    cached = _cache
    if cached is not None and cached[0] == key:
        return cached[1]
    # Stat before reading: if the file changes in between, the next call sees a new stamp.
    settings, _ = _resolve()
    _cache = (key, settings)
    return settings


def describe_settings() -> list[SettingValue]:
    """Every setting's effective value and where it came from (for ``flowpod config view``)."""
    return _resolve()[1]
