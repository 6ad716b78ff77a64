"""Fixtures for the example tests: a fresh offline API stub per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from example_support import stub_api


@pytest.fixture
def stub() -> Iterator[Any]:
    with stub_api.StubAPI(page_latency=0.1) as server:
        yield server
