"""The records a run leaves in the result store, as JSON: an attempt's ``Outcome`` (written by
the task pod, read by the operator and the SDK), a flow attempt's ``FlowOutcome``, a cache key's
``CacheRecord``, and the ``ResultRef`` both point through: where a value is and how it is encoded.

Values only: reading and writing them through a store is ``flowpod._storage``'s job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from flowpod._contract.errors import SerializationError
from flowpod._contract.keys import _check_attempt

__all__ = [
    "FINAL_OUTCOME_STATES",
    "MAX_TERMINATION_MESSAGE",
    "TERMINATION_PREFIX",
    "CacheRecord",
    "FlowOutcome",
    "Outcome",
    "ResultRef",
]

FINAL_OUTCOME_STATES: Final = frozenset({"Completed", "Failed", "TimedOut", "Crashed"})
"""The state names an outcome may carry."""

TERMINATION_PREFIX: Final = "flowpod.dev/outcome "
"""How a task pod's termination message starts when it carries the attempt's outcome."""
MAX_TERMINATION_MESSAGE: Final = 4096
"""The kubelet keeps at most this many bytes of a container's termination message."""

_OUTCOME_TYPES: Final = {
    "Completed": "COMPLETED",
    "Failed": "FAILED",
    "TimedOut": "FAILED",
    "Crashed": "CRASHED",
}


@dataclass(frozen=True)
class ResultRef:
    """A stored value: its key and the serializer that reads it (``pickle``, ``json``)."""

    key: str
    serializer: str


class _AttemptEnd:
    """What ``Outcome`` and ``FlowOutcome`` share: a final state name checked on creation."""

    attempt: int
    state: str
    _what: ClassVar[str]

    def __post_init__(self) -> None:
        if self.state not in FINAL_OUTCOME_STATES:
            raise ValueError(
                f"{self._what}'s state must be one of {sorted(FINAL_OUTCOME_STATES)}; "
                f"got {self.state!r}"
            )
        _check_attempt(self.attempt)

    @property
    def type(self) -> str:
        """The Prefect state type behind ``state`` (TimedOut is FAILED)."""
        return _OUTCOME_TYPES[self.state]

    @property
    def completed(self) -> bool:
        return self.state == "Completed"


@dataclass(frozen=True)
class Outcome(_AttemptEnd):
    """What one attempt ended in, written by the pod and read by the operator and the SDK.

    ``retry_allowed`` is retry_condition_fn's verdict (True when the task has none); the operator
    still applies the retry count. ``result_ref`` is set for Completed outcomes; ``exception_ref``
    points at the pickled exception of a failed attempt (absent if it did not pickle).
    """

    _what: ClassVar[str] = "an outcome"
    attempt: int
    state: str
    message: str | None = None
    exception: str | None = None
    retry_allowed: bool = True
    result_ref: str | None = None
    exception_ref: str | None = None
    serializer: str | None = None
    finished_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def result(self) -> ResultRef | None:
        """The attempt's stored return value (Completed outcomes only)."""
        if self.result_ref is None:
            return None
        return ResultRef(self.result_ref, self.serializer or "pickle")

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "state": self.state,
            "type": self.type,
            "message": self.message,
            "exception": self.exception,
            "retryAllowed": self.retry_allowed,
            "resultRef": self.result_ref,
            "exceptionRef": self.exception_ref,
            "serializer": self.serializer,
            "finishedAt": self.finished_at.isoformat(),
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True).encode("utf-8")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Outcome:
        try:
            finished = datetime.fromisoformat(str(raw["finishedAt"]))
            if finished.tzinfo is None:
                finished = finished.replace(tzinfo=UTC)
            return cls(
                attempt=int(raw["attempt"]),
                state=str(raw["state"]),
                message=_opt_str(raw.get("message")),
                exception=_opt_str(raw.get("exception")),
                retry_allowed=bool(raw.get("retryAllowed", True)),
                result_ref=_opt_str(raw.get("resultRef")),
                exception_ref=_opt_str(raw.get("exceptionRef")),
                serializer=_opt_str(raw.get("serializer")),
                finished_at=finished,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SerializationError(f"malformed task outcome record: {exc!r}") from exc

    def to_termination_message(self) -> str | None:
        """The outcome as the pod's termination message, which the kubelet puts in the pod's
        status, so the operator learns it from the pod event it handles anyway instead of a
        store read; None when it does not fit (the store record is the one read then)."""
        text = TERMINATION_PREFIX + self.to_json().decode("utf-8")
        return text if len(text.encode("utf-8")) <= MAX_TERMINATION_MESSAGE else None

    @classmethod
    def from_termination_message(cls, text: str | None) -> Outcome | None:
        """The outcome a termination message carries; None for any other message (a crash's,
        the runtime's) or one that does not parse whole (the store record is read then)."""
        if not text or not text.startswith(TERMINATION_PREFIX):
            return None
        try:
            return cls.from_json(text[len(TERMINATION_PREFIX):].encode("utf-8"))
        except SerializationError:
            return None

    @classmethod
    def from_json(cls, data: bytes) -> Outcome:
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise SerializationError(f"task outcome record is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise SerializationError("task outcome record is not a JSON object")
        return cls.from_dict(raw)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class FlowOutcome(_AttemptEnd):
    """What one flow attempt ended in, written by the flow pod and read by the operator."""

    _what: ClassVar[str] = "a flow outcome"
    attempt: int
    state: str
    message: str | None = None
    result_ref: str | None = None
    finished_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> bytes:
        return json.dumps({
            "attempt": self.attempt, "state": self.state, "type": self.type,
            "message": self.message, "resultRef": self.result_ref,
            "finishedAt": self.finished_at.isoformat(),
        }).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> FlowOutcome:
        try:
            raw = json.loads(data)
            return cls(attempt=int(raw["attempt"]), state=str(raw["state"]),
                       message=_opt_str(raw.get("message")),
                       result_ref=_opt_str(raw.get("resultRef")),
                       finished_at=datetime.fromisoformat(str(raw["finishedAt"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise SerializationError(f"malformed flow outcome record: {exc}") from exc


@dataclass(frozen=True)
class CacheRecord:
    """What a cache key resolved to: where the value is, how it is encoded, when it expires."""

    cache_key: str
    task_key: str
    result_key: str
    serializer: str
    created: datetime
    expires: datetime | None

    @property
    def result(self) -> ResultRef:
        """The cached value."""
        return ResultRef(self.result_key, self.serializer)

    def is_expired(self, now: datetime) -> bool:
        return self.expires is not None and now >= self.expires

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "cache_key": self.cache_key,
                "task_key": self.task_key,
                "result_key": self.result_key,
                "serializer": self.serializer,
                "created": self.created.isoformat(),
                "expires": self.expires.isoformat() if self.expires else None,
            },
            sort_keys=True,
        ).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> CacheRecord:
        try:
            raw = json.loads(data)
            expires = raw["expires"]
            return cls(
                cache_key=str(raw["cache_key"]),
                task_key=str(raw["task_key"]),
                result_key=str(raw["result_key"]),
                serializer=str(raw["serializer"]),
                created=_aware(datetime.fromisoformat(raw["created"])),
                expires=_aware(datetime.fromisoformat(expires)) if expires else None,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SerializationError(f"malformed cache record: {exc!r}") from exc


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
