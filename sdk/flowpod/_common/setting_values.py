"""What each setting is: the ``Settings`` snapshot and its defaults, the rule that parses each
value, and ``SettingError``, the one-line message of a value that does not parse.

Plain Python on purpose: ``flowpod._common.settings`` (the cached snapshot on the hot paths) and
``flowpod._common.settings_model`` (the pydantic-settings model that resolves the sources) both
build on it, and the first must not import pydantic.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flowpod._common import profiles as _profiles
from flowpod.exceptions import ConfigurationError

__all__ = [
    "ENV_ONLY",
    "ENV_PREFIX",
    "LOGGING_LEVELS",
    "MAX_RETRY_DELAYS",
    "RULES",
    "SettingError",
    "Settings",
    "env_name",
    "field_of",
    "origin_of",
]

ENV_PREFIX = "FLOWPOD_"
MAX_RETRY_DELAYS = 50
LOGGING_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# --- parsing: one function per kind of value, shared by the model and `config set` --------------


def _whole_number(raw: str) -> int:
    value = int(raw.strip())
    if value < 0:
        raise ValueError("negative")
    return value


def _delays(raw: str) -> float | list[float]:
    values = [float(part.strip()) for part in raw.split(",")]
    if any(not math.isfinite(v) or v < 0 for v in values) or len(values) > MAX_RETRY_DELAYS:
        raise ValueError("out of range")
    return values if "," in raw else values[0]


def _level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in LOGGING_LEVELS:
        raise ValueError("unknown level")
    return level


def _url(raw: str) -> str:
    text = raw.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in text:
        raise ValueError("not a URL")
    parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    return text


def _bucket(raw: str) -> str:
    text = raw.strip()
    # S3's naming rule, as the run contract's StorageSpec checks it.
    if text and not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", text):
        raise ValueError("not a bucket name")
    return text


def _text(raw: str) -> str:
    return raw.strip()


@dataclass(frozen=True)
class _Rule:
    """How one setting is parsed, and what a user is told when a value does not parse."""

    parse: Callable[[str], Any]
    accepts: str
    """Completes "<NAME>=<value> is not ..."."""
    fix: str
    """What to write instead; ``{name}`` is the variable."""


RULES: dict[str, _Rule] = {
    "home": _Rule(_text, "a folder", "use a path, e.g. {name}=~/.flowpod"),
    "profile": _Rule(_text, "a profile name", "use e.g. {name}=default"),
    "task_default_retries": _Rule(
        _whole_number, "a whole number >= 0", "use e.g. {name}=3"),
    "task_default_retry_delay_seconds": _Rule(
        _delays,
        f"a number of seconds >= 0 or a comma-separated list of them (at most {MAX_RETRY_DELAYS})",
        "use e.g. {name}=10 or {name}=10,20,40"),
    "logging_level": _Rule(
        _level, f"one of {', '.join(LOGGING_LEVELS)}", "use e.g. {name}=INFO"),
    "s3_bucket": _Rule(
        _bucket, "an S3 bucket name (3-63 lowercase letters, digits, '.' and '-')",
        "use e.g. {name}=flowpod-results"),
    "s3_prefix": _Rule(_text, "a key prefix", "use e.g. {name}=team-a"),
    "s3_endpoint": _Rule(
        _url, "a URL", "use http(s)://host:port, e.g. {name}=http://localhost:9000"),
    "s3_region": _Rule(_text, "a region name", "use e.g. {name}=us-east-1"),
    "s3_cluster_endpoint": _Rule(
        _url, "a URL", "use http(s)://host:port, e.g. {name}=http://minio.storage:9000"),
    "store_path": _Rule(_text, "a folder", "use a path, e.g. {name}=/tmp/flowpod-store"),
}
# Read from the environment only: they decide which profile is read.
ENV_ONLY = frozenset({"home", "profile"})


class SettingError(ConfigurationError):
    """A setting's value does not parse: ``<NAME>=<value> is not <accepted> (<where>); <fix>``.

    ``what``, ``where`` and ``fix`` are the parts the command line prints as one error line.
    """

    def __init__(self, name: str, value: str, origin: str) -> None:
        rule = RULES[field_of(name)]
        self.name, self.value = name, value
        self.what = f"{name}={value!r} is not {rule.accepts}"
        self.where = f"settings: {origin}"
        self.fix = rule.fix.format(name=name)
        super().__init__(f"{self.what} ({self.where}); {self.fix}")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def field_of(name: str) -> str:
    return name[len(ENV_PREFIX):].lower()


@dataclass(frozen=True)
class Settings:
    """The effective settings of this process (one immutable snapshot).

    The defaults are here; ``flowpod._common.settings_model.SettingsModel`` declares the same
    fields with their sources and validation (a unit test keeps the two in step).
    """

    home: Path
    """FLOWPOD_HOME: the profile file and the local result store; default ~/.flowpod."""
    profile: str | None = None
    """FLOWPOD_PROFILE: the profile to use instead of the file's ``active`` one."""
    task_default_retries: int = 0
    """FLOWPOD_TASK_DEFAULT_RETRIES: retries of a task that does not set ``retries``."""
    task_default_retry_delay_seconds: float | list[float] = 0.0
    """FLOWPOD_TASK_DEFAULT_RETRY_DELAY_SECONDS: "10" -> 10.0, "10,20" -> [10.0, 20.0]."""
    logging_level: str = "INFO"
    """FLOWPOD_LOGGING_LEVEL: level of flowpod's loggers."""
    s3_bucket: str = ""
    """FLOWPOD_S3_BUCKET: the S3 result store's bucket; "" (unset): the local folder."""
    s3_prefix: str = ""
    """FLOWPOD_S3_PREFIX: key prefix inside the bucket."""
    s3_endpoint: str | None = None
    """FLOWPOD_S3_ENDPOINT: the S3 URL as this process reaches it; None: AWS."""
    s3_region: str | None = None
    """FLOWPOD_S3_REGION."""
    s3_cluster_endpoint: str | None = None
    """FLOWPOD_S3_CLUSTER_ENDPOINT: the S3 URL as pods reach it, when it differs."""
    store_path: Path | None = None
    """FLOWPOD_STORE_PATH: a task pod's local result store folder instead of S3."""



def origin_of(name: str) -> str:
    """Where the value of ``name`` comes from, for an error message."""
    if os.environ.get(name):
        return "environment"
    path = _profiles.profile_path()
    return f"profile {_profiles.active_name(_profiles.read_document(path))!r} in {path}"
