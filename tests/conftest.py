"""Test-wide fixtures: every test gets its own flowpod home so no state leaks between tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def flowpod_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("flowpod-home")
    monkeypatch.setenv("FLOWPOD_HOME", str(home))
    for var in (
        "FLOWPOD_TASK_DEFAULT_RETRIES",
        "FLOWPOD_TASK_DEFAULT_RETRY_DELAY_SECONDS",
        "FLOWPOD_LOGGING_LEVEL",
    ):
        monkeypatch.delenv(var, raising=False)
    yield home
