"""Settings: precedence (env > profile > defaults), parsing, the profile file, the cache."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import flowpod._common.profiles as _profiles
import flowpod._common.settings as _settings
from flowpod._common.settings import (
    active_profile,
    describe_settings,
    get_settings,
    known_settings,
    profile_path,
    set_profile_values,
    unset_profile_values,
)
from flowpod.exceptions import ConfigurationError


def test_defaults(flowpod_home: Path) -> None:
    settings = get_settings()
    assert settings.home == flowpod_home
    assert settings.task_default_retries == 0
    assert settings.task_default_retry_delay_seconds == 0.0
    assert settings.logging_level == "INFO"
    assert profile_path() == flowpod_home / "profiles.toml"


def test_home_defaults_to_dot_flowpod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWPOD_HOME")
    assert get_settings().home == Path("~/.flowpod").expanduser()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("10", 10.0), ("2.5", 2.5), ("10,20", [10.0, 20.0]), (" 1 , 2 ,3", [1.0, 2.0, 3.0])],
)
def test_retry_delay_forms(monkeypatch: pytest.MonkeyPatch, raw: str, expected: object) -> None:
    monkeypatch.setenv("FLOWPOD_TASK_DEFAULT_RETRY_DELAY_SECONDS", raw)
    assert get_settings().task_default_retry_delay_seconds == expected


def test_environment_values_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWPOD_TASK_DEFAULT_RETRIES", "3")
    monkeypatch.setenv("FLOWPOD_LOGGING_LEVEL", "debug")
    settings = get_settings()
    assert settings.task_default_retries == 3
    assert settings.logging_level == "DEBUG"


@pytest.mark.parametrize(
    ("name", "raw", "fragment"),
    [
        ("FLOWPOD_TASK_DEFAULT_RETRIES", "two", "whole number >= 0"),
        ("FLOWPOD_TASK_DEFAULT_RETRIES", "-1", "whole number >= 0"),
        ("FLOWPOD_TASK_DEFAULT_RETRY_DELAY_SECONDS", "ten", "comma-separated list"),
        ("FLOWPOD_TASK_DEFAULT_RETRY_DELAY_SECONDS", "1,-2", "comma-separated list"),
        ("FLOWPOD_TASK_DEFAULT_RETRY_DELAY_SECONDS", ",".join(["1"] * 51), "at most 50"),
        ("FLOWPOD_LOGGING_LEVEL", "LOUD", "DEBUG, INFO, WARNING"),
    ],
)
def test_bad_environment_value_names_key_and_form(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, fragment: str
) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigurationError) as info:
        get_settings()
    message = str(info.value)
    assert name in message and fragment in message and "environment" in message


def test_empty_environment_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    set_profile_values({"FLOWPOD_TASK_DEFAULT_RETRIES": "4"})
    monkeypatch.setenv("FLOWPOD_TASK_DEFAULT_RETRIES", "")
    assert get_settings().task_default_retries == 4


def test_profile_values_apply_and_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    set_profile_values(
        {"FLOWPOD_TASK_DEFAULT_RETRIES": "2", "FLOWPOD_TASK_DEFAULT_RETRY_DELAY_SECONDS": "1,2"}
    )
    settings = get_settings()
    assert settings.task_default_retries == 2
    assert settings.task_default_retry_delay_seconds == [1.0, 2.0]

    monkeypatch.setenv("FLOWPOD_TASK_DEFAULT_RETRIES", "5")
    settings = get_settings()
    assert settings.task_default_retries == 5  # environment beats the profile
    assert settings.task_default_retry_delay_seconds == [1.0, 2.0]  # profile beats the default

    sources = {item.name: item.source for item in describe_settings()}
    assert sources["FLOWPOD_HOME"] == "environment"
    assert sources["FLOWPOD_TASK_DEFAULT_RETRIES"] == "environment"
    assert sources["FLOWPOD_TASK_DEFAULT_RETRY_DELAY_SECONDS"] == "profile"
    assert sources["FLOWPOD_LOGGING_LEVEL"] == "default"
    assert sources["FLOWPOD_S3_BUCKET"] == "default"


def test_profile_values_apply_in_a_fresh_process(flowpod_home: Path) -> None:
    set_profile_values({"task_default_retries": "7", "logging_level": "warning"})
    code = (
        "from flowpod._common.settings import get_settings; s = get_settings(); "
        "print(s.task_default_retries, s.logging_level, s.home)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWPOD_")}
    env["FLOWPOD_HOME"] = str(flowpod_home)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["7", "WARNING", str(flowpod_home)]

    env["FLOWPOD_TASK_DEFAULT_RETRIES"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "1"


def test_key_spellings_are_accepted() -> None:
    set_profile_values({"task-default-retries": "1", "flowpod_logging_level": "ERROR"})
    table = tomllib.loads(profile_path().read_text())["profiles"]["default"]
    assert table == {"FLOWPOD_TASK_DEFAULT_RETRIES": "1", "FLOWPOD_LOGGING_LEVEL": "ERROR"}


def test_set_rejects_unknown_and_bad_values_without_writing() -> None:
    set_profile_values({"FLOWPOD_TASK_DEFAULT_RETRIES": "1"})
    before = profile_path().read_bytes()
    with pytest.raises(ConfigurationError, match="unknown setting 'NOPE'.*known settings"):
        set_profile_values({"NOPE": "1"})
    with pytest.raises(ConfigurationError, match="FLOWPOD_TASK_DEFAULT_RETRIES='x'"):
        # The valid first entry must not be written either: validation happens before writing.
        set_profile_values({"FLOWPOD_LOGGING_LEVEL": "DEBUG", "FLOWPOD_TASK_DEFAULT_RETRIES": "x"})
    with pytest.raises(ConfigurationError, match="FLOWPOD_HOME cannot be stored"):
        set_profile_values({"FLOWPOD_HOME": "/elsewhere"})
    assert profile_path().read_bytes() == before


def test_unset_removes_only_named_keys() -> None:
    set_profile_values({"FLOWPOD_TASK_DEFAULT_RETRIES": "3", "FLOWPOD_LOGGING_LEVEL": "ERROR"})
    unset_profile_values(["FLOWPOD_TASK_DEFAULT_RETRIES"])
    settings = get_settings()
    assert settings.task_default_retries == 0
    assert settings.logging_level == "ERROR"
    unset_profile_values(["FLOWPOD_TASK_DEFAULT_RETRIES"])  # already gone: no error
    with pytest.raises(ConfigurationError):
        unset_profile_values(["NOT_A_SETTING"])


def test_hand_written_profile_with_toml_types(flowpod_home: Path) -> None:
    profile_path().write_text(
        'active = "work"\n'
        "[profiles.default]\nFLOWPOD_TASK_DEFAULT_RETRIES = 9\n"
        "[profiles.work]\nFLOWPOD_TASK_DEFAULT_RETRIES = 2\n"
        "FLOWPOD_TASK_DEFAULT_RETRY_DELAY_SECONDS = [1, 2.5]\n"
    )
    assert active_profile() == "work"
    settings = get_settings()
    assert settings.task_default_retries == 2
    assert settings.task_default_retry_delay_seconds == [1.0, 2.5]


def test_flowpod_profile_selects_profile_and_others_survive_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_profile_values({"FLOWPOD_TASK_DEFAULT_RETRIES": "1"})
    monkeypatch.setenv("FLOWPOD_PROFILE", "ci")
    assert get_settings().task_default_retries == 0  # the "ci" profile is empty
    set_profile_values({"FLOWPOD_TASK_DEFAULT_RETRIES": "4"})
    assert get_settings().task_default_retries == 4
    monkeypatch.delenv("FLOWPOD_PROFILE")
    assert get_settings().task_default_retries == 1
    profiles = tomllib.loads(profile_path().read_text())["profiles"]
    assert profiles["default"] == {"FLOWPOD_TASK_DEFAULT_RETRIES": "1"}
    assert profiles["ci"] == {"FLOWPOD_TASK_DEFAULT_RETRIES": "4"}


def test_invalid_toml_is_a_clear_error() -> None:
    profile_path().write_text("this is = = not toml")
    with pytest.raises(ConfigurationError, match="not valid TOML.*fix it by hand or delete it"):
        get_settings()


def test_bad_profile_value_names_the_file() -> None:
    profile_path().write_text('[profiles.default]\nFLOWPOD_LOGGING_LEVEL = "LOUD"\n')
    with pytest.raises(ConfigurationError, match="FLOWPOD_LOGGING_LEVEL.*profiles.toml"):
        get_settings()


def test_toml_writer_round_trips_awkward_text() -> None:
    document = {
        "active": 'we"ird\\name\n\ttab\x01',
        "n": 3,
        "x": 1.5,
        "flag": True,
        "items": ["a", 1, 2.0],
        "profiles": {"spaced name": {"KEY": "é ünïcode ☃"}, "p.dot": {"A": "b"}},
    }
    assert tomllib.loads(_profiles.dump_toml(document)) == document


def test_cache_returns_same_object_until_something_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads = 0
    real_read = _settings._read_document

    def counting_read(path: Path) -> dict[str, object]:
        nonlocal reads
        reads += 1
        return real_read(path)

    monkeypatch.setattr(_settings, "_read_document", counting_read)
    first = get_settings()
    assert get_settings() is first and get_settings() is first
    assert reads == 1

    monkeypatch.setenv("FLOWPOD_LOGGING_LEVEL", "ERROR")
    assert get_settings().logging_level == "ERROR"
    assert reads == 2

    # An edit by another process (not through set_profile_values) is noticed via the file stamp.
    profile_path().write_text('[profiles.default]\nFLOWPOD_TASK_DEFAULT_RETRIES = "6"\n')
    assert get_settings().task_default_retries == 6
    profile_path().unlink()
    assert get_settings().task_default_retries == 0


def test_changing_home_switches_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_profile_values({"FLOWPOD_TASK_DEFAULT_RETRIES": "2"})
    monkeypatch.setenv("FLOWPOD_HOME", str(tmp_path / "other"))
    settings = get_settings()
    assert settings.home == tmp_path / "other"
    assert settings.task_default_retries == 0


def test_known_settings_describe_every_field() -> None:
    known = known_settings()
    assert set(known) == {
        "FLOWPOD_HOME",
        "FLOWPOD_TASK_DEFAULT_RETRIES",
        "FLOWPOD_TASK_DEFAULT_RETRY_DELAY_SECONDS",
        "FLOWPOD_LOGGING_LEVEL",
        "FLOWPOD_S3_BUCKET",
        "FLOWPOD_S3_PREFIX",
        "FLOWPOD_S3_ENDPOINT",
        "FLOWPOD_S3_REGION",
        "FLOWPOD_S3_CLUSTER_ENDPOINT",
        "FLOWPOD_STORE_PATH",
    }
    assert all(description for description in known.values())


def test_concurrent_config_set_from_two_processes_loses_nothing(flowpod_home: Path) -> None:
    code = (
        "import sys; from flowpod._common.settings import set_profile_values\n"
        "for i in range(30): set_profile_values({sys.argv[1]: str(i)})\n"
    )
    env = {**os.environ, "FLOWPOD_HOME": str(flowpod_home)}
    keys = ("FLOWPOD_TASK_DEFAULT_RETRIES", "FLOWPOD_TASK_DEFAULT_RETRY_DELAY_SECONDS")
    writers = [subprocess.Popen([sys.executable, "-c", code, key], env=env) for key in keys]
    for writer in writers:
        assert writer.wait(timeout=120) == 0
    table = tomllib.loads(profile_path().read_text())["profiles"]["default"]
    # Each process's last write survives: neither rewrote the file from a stale read.
    assert table == {key: "29" for key in keys}


def test_a_profile_value_we_cannot_rewrite_is_a_clear_error() -> None:
    profile_path().write_text("[profiles.default]\nwhen = 1979-05-27T07:32:00Z\n")
    with pytest.raises(ConfigurationError, match="cannot rewrite.*edit that entry by hand"):
        set_profile_values({"FLOWPOD_TASK_DEFAULT_RETRIES": "1"})
    assert "1979" in profile_path().read_text()  # left as it was


@pytest.mark.parametrize("text", ["profiles = 3\n", "[profiles]\ndefault = 'x'\n"])
def test_malformed_profile_structure_is_a_clear_error(text: str) -> None:
    profile_path().write_text(text)
    with pytest.raises(ConfigurationError, match="malformed.*must be tables"):
        get_settings()
    with pytest.raises(ConfigurationError, match="malformed"):
        set_profile_values({"FLOWPOD_TASK_DEFAULT_RETRIES": "1"})


def test_snapshot_and_model_declare_the_same_settings_and_defaults(flowpod_home: Path) -> None:
    import dataclasses

    from flowpod._common.settings import Settings
    from flowpod._common.settings_model import SettingsModel

    snapshot = {field.name for field in dataclasses.fields(Settings)}
    assert snapshot == set(SettingsModel.model_fields)
    assert _settings.RULES.keys() == snapshot  # every setting has a parsing rule
    assert Settings(**SettingsModel().model_dump()) == Settings(home=flowpod_home)


def test_nothing_set_needs_no_pydantic(flowpod_home: Path) -> None:
    code = (
        "import sys; from flowpod._common.settings import get_settings; get_settings(); "
        "print('pydantic' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWPOD_")}
    env["FLOWPOD_HOME"] = str(flowpod_home)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.stdout.strip() == "False", run.stderr


@pytest.mark.parametrize(
    ("name", "raw", "line"),
    [
        ("FLOWPOD_S3_ENDPOINT", "localhost:9000",
         "FLOWPOD_S3_ENDPOINT='localhost:9000' is not a URL (settings: environment); "
         "use http(s)://host:port, e.g. FLOWPOD_S3_ENDPOINT=http://localhost:9000"),
        ("FLOWPOD_S3_BUCKET", "Bad_Bucket", "FLOWPOD_S3_BUCKET='Bad_Bucket' is not an S3 bucket"),
        ("FLOWPOD_S3_CLUSTER_ENDPOINT", "ftp://x", "FLOWPOD_S3_CLUSTER_ENDPOINT='ftp://x' is not"),
    ],
)
def test_bad_s3_values_are_one_line(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, line: str
) -> None:
    monkeypatch.setenv("FLOWPOD_S3_BUCKET", "results")
    monkeypatch.setenv(name, raw)
    with pytest.raises(_settings.SettingError) as info:
        get_settings()
    assert str(info.value).startswith(line) and "\n" not in str(info.value)


def test_s3_settings_come_from_the_profile_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flowpod._storage import StorageConfig

    set_profile_values({"s3_bucket": "from-profile", "FLOWPOD_S3_ENDPOINT": "http://s3:9000"})
    assert StorageConfig.from_env() == ("from-profile", "", "http://s3:9000", None)
    monkeypatch.setenv("FLOWPOD_S3_BUCKET", "from-env")
    assert StorageConfig.from_env() == ("from-env", "", "http://s3:9000", None)
    with pytest.raises(ConfigurationError, match="FLOWPOD_S3_ENDPOINT='s3:9000' is not a URL"):
        set_profile_values({"FLOWPOD_S3_ENDPOINT": "s3:9000"})


@pytest.mark.parametrize(
    "environment",
    [
        {"FLOWPOD_S3_BUCKET": "results", "FLOWPOD_S3_PREFIX": " team-a ",
         "FLOWPOD_S3_ENDPOINT": "http://minio:9000", "FLOWPOD_S3_REGION": "eu-west-1"},
        {"FLOWPOD_S3_BUCKET": "results", "FLOWPOD_S3_REGION": "  ", "FLOWPOD_S3_PREFIX": ""},
        {"FLOWPOD_STORE_PATH": "/tmp/store", "FLOWPOD_LOGGING_LEVEL": "debug"},
        {"FLOWPOD_TASK_DEFAULT_RETRIES": "2", "FLOWPOD_TASK_DEFAULT_RETRY_DELAY_SECONDS": "1,2",
         "FLOWPOD_PROFILE": "other", "FLOWPOD_S3_CLUSTER_ENDPOINT": "https://s3.example:443"},
        {"FLOWPOD_TASK_DEFAULT_RETRY_DELAY_SECONDS": " 7 ", "FLOWPOD_STORE_PATH": "~/store"},
    ],
)
def test_plain_resolution_agrees_with_the_model(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]
) -> None:
    from flowpod._common.settings_model import load

    set_profile_values({"FLOWPOD_TASK_DEFAULT_RETRIES": "4", "FLOWPOD_S3_PREFIX": "profiled"})
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    table = _profiles.profile_table(_profiles.read_document(profile_path()), profile_path())
    plain = _settings._resolve_plainly(table)
    assert plain is not None
    assert plain == load(table)


@pytest.mark.parametrize(
    ("name", "raw"),
    [("FLOWPOD_TASK_DEFAULT_RETRIES", "two"), ("FLOWPOD_S3_ENDPOINT", "localhost:9000"),
     ("flowpod_s3_bucket", "lower-case-name")],
)
def test_plain_resolution_leaves_errors_and_odd_spellings_to_the_model(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str
) -> None:
    monkeypatch.setenv("FLOWPOD_S3_BUCKET", "results")
    monkeypatch.setenv(name, raw)
    assert _settings._resolve_plainly({}) is None


def test_a_pods_environment_needs_no_pydantic(flowpod_home: Path) -> None:
    code = (
        "import sys; from flowpod._common.settings import get_settings; s = get_settings(); "
        "print(s.s3_bucket, s.s3_endpoint, 'pydantic' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWPOD_")}
    env.update(FLOWPOD_HOME=str(flowpod_home), FLOWPOD_S3_BUCKET="results",
               FLOWPOD_S3_PREFIX="p", FLOWPOD_S3_ENDPOINT="http://minio:9000",
               FLOWPOD_S3_REGION="us-east-1")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.stdout.split() == ["results", "http://minio:9000", "False"], run.stderr
