"""Test helpers for the engine tests: capturing the records of the ``flowpod`` logger.

flowpod's console handler does not propagate to the root logger (so pytest's caplog does not see
its records); tests attach this handler to the ``flowpod`` logger instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from flowpod.logging import RunFormatter


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(RunFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def lines(self) -> list[str]:
        return [self.format(r) for r in self.records]

    @property
    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]

    def text(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def capture_logs(level: int = logging.DEBUG) -> Iterator[Records]:
    logger = logging.getLogger("flowpod")
    handler = Records()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
