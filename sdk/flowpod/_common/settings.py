"""flowpod's settings: every ``FLOWPOD_*`` setting the SDK reads, where each value comes from,
and the cached snapshot the hot paths use.

Precedence, highest first: the environment (``FLOWPOD_*``; an empty variable counts as unset),
the active profile of the profile file (``flowpod._common.profiles``; ``FLOWPOD_PROFILE`` selects
it), then the defaults of ``Settings``. ``FLOWPOD_HOME`` and ``FLOWPOD_PROFILE`` come from the
environment only: they decide which profile is read. The operator's own ``FLOWPOD_OPERATOR_*``
settings live in ``flowpod_operator.settings``.

The resolution itself is the pydantic-settings model in ``flowpod._common.settings_model``; this
module holds what must stay light: the ``Settings`` snapshot, each setting's parsing rule, and
``get_settings()``. When nothing is set (the usual local run) the defaults need no validation,
so pydantic is not imported at all.

A bad value is a ``SettingError``: one line naming the variable, the value, where it was set and
what is accepted, e.g. ``FLOWPOD_S3_ENDPOINT='localhost:9000' is not a URL (settings:
environment); use http(s)://host:port, e.g. FLOWPOD_S3_ENDPOINT=http://localhost:9000``.

``get_settings()`` sits on hot paths (every run start, every task's retry lookup), so it returns a
cached ``Settings`` unless one of the variables or the profile file (its path, mtime, size, inode)
changed since the last call; that check costs about a microsecond.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from flowpod._common import profiles as _profiles
from flowpod._common.profiles import HOME_VAR, PROFILE_VAR, home_from_env, profile_path
from flowpod._common.setting_values import (
    ENV_ONLY,
    ENV_PREFIX,
    RULES,
    SettingError,
    Settings,
    env_name,
    field_of,
)
from flowpod.exceptions import ConfigurationError

__all__ = [
    "SettingError",
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

_read_document = _profiles.read_document

Source = Literal["environment", "profile", "default"]


@dataclass(frozen=True)
class SettingValue:
    """One effective value as shown by ``flowpod config view``."""

    name: str
    value: str
    source: Source
    description: str


def known_settings() -> dict[str, str]:
    """Every setting's name mapped to a one-line description (for ``flowpod config view``)."""
    from flowpod._common.settings_model import describe

    described = describe()
    described.pop(PROFILE_VAR)  # shown as the active profile, not as a value
    return described


def canonical_name(key: str) -> str:
    """Accept the variable name in any case, with or without the FLOWPOD_ prefix."""
    name = key.strip().upper().replace("-", "_").replace(".", "_")
    if not name.startswith(ENV_PREFIX):
        name = ENV_PREFIX + name
    field = field_of(name)
    if field in ENV_ONLY:
        raise ConfigurationError(
            f"{name} cannot be stored in a profile: it decides which profile is read; "
            f"set it in the environment instead (export {name}=...)"
        )
    if field not in RULES:
        known = ", ".join(env_name(f) for f in RULES if f not in ENV_ONLY)
        raise ConfigurationError(f"unknown setting {key!r}; known settings: {known}")
    return name


def active_profile() -> str:
    """The profile in use: $FLOWPOD_PROFILE, else the file's ``active`` entry, else "default"."""
    return _profiles.active_name(_read_document(profile_path()))


def unknown_profile_keys() -> list[str]:
    """Keys in the active profile that no setting reads (typos in a hand-edited file)."""
    path = profile_path()
    table = _profiles.profile_table(_read_document(path), path)
    settable = {env_name(f) for f in RULES if f not in ENV_ONLY}
    return sorted(set(table) - settable)


def set_profile_values(values: Mapping[str, str]) -> None:
    """Validate and persist ``values`` in the active profile; nothing is written if one is bad."""
    checked: dict[str, str] = {}
    path = profile_path()
    for key, raw in values.items():
        name = canonical_name(key)
        if not isinstance(raw, str):
            raise ConfigurationError(f"{name}: profile values are strings, got {raw!r}")
        try:
            RULES[field_of(name)].parse(raw)
        except ValueError:
            raise SettingError(name, raw, f"flowpod config set, profile file {path}") from None
        checked[name] = raw.strip()
    with _profiles.editing(path):
        document = _read_document(path)
        document.setdefault("active", _profiles.active_name(document))
        _profiles.active_table(document, path, create=True).update(checked)
        _profiles.write_document(path, document)
    _invalidate()


def unset_profile_values(keys: Iterable[str]) -> None:
    """Remove ``keys`` from the active profile (keys it does not hold are ignored).

    A key no setting knows is refused, unless the profile holds it: that is how a typo in a
    hand-edited file is removed.
    """
    path = profile_path()
    with _profiles.editing(path):
        document = _read_document(path)
        table = _profiles.active_table(document, path)
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
        _profiles.write_document(path, document)
    _invalidate()


# --- resolution and the cached snapshot --------------------------------------------------------


def _load() -> Settings:
    """A fresh snapshot. Nothing set (the usual local run) needs no validation, so pydantic is
    imported only when some value is set in the environment or the profile."""
    home_raw = os.environ.get(HOME_VAR)
    profile_raw = os.environ.get(PROFILE_VAR) or None
    path = profile_path()
    table = _profiles.profile_table(_read_document(path), path)
    if not any(os.environ.get(name) or table.get(name) for name in _WATCHED[2:]):
        return Settings(home=home_from_env(home_raw), profile=profile_raw)
    settings = _resolve_plainly(table)
    if settings is not None:
        return settings
    from flowpod._common.settings_model import load

    return load(table)


def _resolve_plainly(table: Mapping[str, Any]) -> Settings | None:
    """The model's resolution without pydantic, for the usual case: every value that applies is
    a string its rule parses. None otherwise (a bad value, a TOML number in the profile, a
    variable spelt in lower case), and the pydantic-settings model decides and words the error.

    Every pod sets ``FLOWPOD_S3_*``, so this is what keeps pydantic (about 100 ms of imports)
    out of task pods; ``test_settings`` checks that both resolutions agree.
    """
    environ = os.environ
    if any(not name.isupper() and name.upper().startswith(ENV_PREFIX) for name in environ):
        return None  # pydantic-settings matches names case-insensitively
    values: dict[str, Any] = {}
    for field, rule in RULES.items():
        name = env_name(field)
        raw: Any = environ.get(name) or (None if field in ENV_ONLY else table.get(name))
        if not raw:
            continue
        if not isinstance(raw, str):
            return None
        try:
            parsed = rule.parse(raw)
        except ValueError:
            return None
        if field == "home":
            values[field] = home_from_env(parsed)
        elif parsed == "" and field not in ("s3_bucket", "s3_prefix"):
            values[field] = None  # an empty optional value means unset
        else:
            values[field] = Path(parsed) if field == "store_path" else parsed
    values.setdefault("home", home_from_env(None))
    return Settings(**values)


def describe_settings() -> list[SettingValue]:
    """Every setting's effective value and where it came from (for ``flowpod config view``)."""
    settings = _load()
    path = profile_path()
    profile = _profiles.profile_table(_read_document(path), path)
    shown = []
    for name, description in known_settings().items():
        source: Source
        if os.environ.get(name):
            value, source = os.environ[name], "environment"
        elif name in profile and profile[name] and field_of(name) not in ENV_ONLY:
            value, source = profile[name], "profile"
        else:
            default = getattr(settings, field_of(name))
            value, source = ("" if default is None else str(default)), "default"
        shown.append(SettingValue(name, value, source, description))
    return shown


_WATCHED = (HOME_VAR, PROFILE_VAR, *(env_name(f) for f in RULES if f not in ENV_ONLY))

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


def get_settings() -> Settings:
    """The effective settings; cheap when nothing changed since the last call."""
    global _cache, _profile_for_home
    env = tuple(map(_env_data.get, _WATCHED_KEYS))
    home_raw = env[0]
    if home_raw is not _profile_for_home[0]:  # the held reference keeps `is` meaningful
        home_text = os.fsdecode(home_raw) if isinstance(home_raw, bytes) else home_raw
        _profile_for_home = (home_raw, str(home_from_env(home_text) / _profiles.PROFILE_FILE_NAME))
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
    settings = _load()
    _cache = (key, settings)
    return settings
