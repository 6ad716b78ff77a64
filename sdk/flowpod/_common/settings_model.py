"""The pydantic-settings model of flowpod's settings: its sources, in order, and its validation.

``SettingsModel`` reads every ``FLOWPOD_*`` setting of the SDK from, highest first, the
environment (an empty variable counts as unset), the active profile of the profile file
(``_ProfileSource``), then the defaults of the ``Settings`` snapshot. Each value is parsed by its
rule in ``flowpod._common.settings``; ``load()`` turns the first bad value into a one-line
``SettingError``.

Only ``flowpod._common.settings`` imports this module, and only when some value is set: pydantic
costs a local run about 100 ms of start-up that nothing else in it needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from flowpod._common import profiles as _profiles
from flowpod._common.setting_values import (
    ENV_ONLY,
    ENV_PREFIX,
    LOGGING_LEVELS,
    RULES,
    SettingError,
    Settings,
    env_name,
    origin_of,
)

__all__ = ["SettingsModel", "describe", "load"]

_DEFAULTS = Settings(home=Path())  # the snapshot's defaults are the model's defaults
# The active profile's values when the caller has read them already (the file is read once).
_profile_values: ContextVar[Mapping[str, str] | None] = ContextVar("profile", default=None)


class _ProfileSource(PydanticBaseSettingsSource):
    """The active profile of the profile file, below the environment and above the defaults."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the file once for all fields

    def __call__(self) -> dict[str, Any]:
        table = _profile_values.get()
        if table is None:
            path = _profiles.profile_path()
            table = _profiles.profile_table(_profiles.read_document(path), path)
        return {
            field: value
            for field in self.settings_cls.model_fields
            if field not in ENV_ONLY and (value := table.get(env_name(field)))
        }


class SettingsModel(BaseSettings):
    """Every ``FLOWPOD_*`` setting the SDK reads; the fields of ``Settings``, with sources."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, extra="ignore"
    )

    home: Path = Field(
        default_factory=lambda: _profiles.home_from_env(None),
        description="folder of the profile file and the local result store (env only)",
    )
    profile: str | None = Field(
        default=None, description="the profile to use instead of the file's active one (env only)"
    )
    task_default_retries: int = Field(
        default=_DEFAULTS.task_default_retries,
        description="retries of a task that does not set retries= (a whole number >= 0)",
    )
    task_default_retry_delay_seconds: Annotated[float | list[float], NoDecode] = Field(
        default=_DEFAULTS.task_default_retry_delay_seconds,
        description="delay before each retry when the task sets none: seconds, or a list "
        "like 10,20,40",
    )
    logging_level: str = Field(
        default=_DEFAULTS.logging_level,
        description=f"level of flowpod's loggers ({', '.join(LOGGING_LEVELS)})",
    )
    s3_bucket: str = Field(
        default=_DEFAULTS.s3_bucket,
        description="S3 bucket of results, payloads and cache records (unset: a local folder)",
    )
    s3_prefix: str = Field(default=_DEFAULTS.s3_prefix, description="key prefix inside the bucket")
    s3_endpoint: str | None = Field(
        default=_DEFAULTS.s3_endpoint,
        description="S3 endpoint URL as this machine reaches it (unset: AWS)",
    )
    s3_region: str | None = Field(
        default=_DEFAULTS.s3_region, description="S3 region (unset: the AWS configuration's)"
    )
    s3_cluster_endpoint: str | None = Field(
        default=_DEFAULTS.s3_cluster_endpoint,
        description="S3 endpoint URL as pods in the cluster reach it, when that differs",
    )
    store_path: Path | None = Field(
        default=_DEFAULTS.store_path,
        description="a task pod's result store folder instead of S3 (tests, one machine)",
    )

    @field_validator("*", mode="before")
    @classmethod
    def _parse(cls, value: Any, info: Any) -> Any:
        if not isinstance(value, str):
            return value
        field: str = info.field_name
        parsed = RULES[field].parse(value)
        if field == "home":
            return _profiles.home_from_env(parsed)
        # An empty optional value means unset; bucket and prefix are "" when unset.
        return parsed if parsed != "" or field in ("s3_bucket", "s3_prefix") else None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # No .env file and no secrets folder: the environment and the profile are the sources.
        return init_settings, env_settings, _ProfileSource(settings_cls)


def load(profile_values: Mapping[str, str] | None = None) -> Settings:
    """The effective settings from the environment and the profile (``profile_values``: its
    active table, when already read), or a one-line SettingError."""
    token = _profile_values.set(profile_values)
    try:
        model = SettingsModel()
    except ValidationError as exc:
        error = exc.errors()[0]
        name = env_name(str(error["loc"][0]))
        raise SettingError(name, str(error["input"]), origin_of(name)) from None
    finally:
        _profile_values.reset(token)
    return Settings(**model.model_dump())


def describe() -> dict[str, str]:
    """Every setting's variable mapped to its description."""
    return {env_name(field): info.description or ""
            for field, info in SettingsModel.model_fields.items()}
