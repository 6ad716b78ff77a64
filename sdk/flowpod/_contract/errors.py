"""The exceptions flowpod raises, one tree rooted at FlowpodException: defined here because records
of the run contract raise them, public (and drawn as a tree) in ``flowpod.exceptions``."""

from __future__ import annotations

__all__ = [
    "CancelledRun",
    "ConfigurationError",
    "CrashedRun",
    "FailedRun",
    "FlowRunTimeoutError",
    "FlowpodException",
    "MappingLengthMismatch",
    "MappingMissingIterable",
    "MissingContextError",
    "ParameterTypeError",
    "ReservedArgumentError",
    "ResultNotFound",
    "SerializationError",
    "SignatureMismatchError",
    "TaskRunTimeoutError",
    "UnfinishedRun",
    "UnhashableInputError",
    "UpstreamTaskError",
]


class FlowpodException(Exception):
    """Base class of every exception flowpod raises on its own behalf."""


class MissingContextError(FlowpodException, RuntimeError):
    """A run-only API (get_run_logger, .submit) was used outside a flow or task run."""


class ConfigurationError(FlowpodException, ValueError):
    """A setting or profile value is unknown or malformed."""


class ParameterTypeError(FlowpodException, TypeError):
    """Flow parameters failed validation against the flow's type hints."""


class SignatureMismatchError(FlowpodException, TypeError):
    """Arguments do not bind to the function's signature."""


class ReservedArgumentError(FlowpodException, TypeError):
    """A task or flow function declares a parameter whose name the engine reserves."""


class MappingLengthMismatch(FlowpodException, ValueError):
    """Iterables passed to .map() have different lengths."""


class MappingMissingIterable(FlowpodException, ValueError):
    """.map() was called without any iterable argument."""


class UnhashableInputError(FlowpodException, ValueError):
    """A cache policy could not hash one of the task's inputs."""


class SerializationError(FlowpodException, ValueError):
    """A value could not be serialised or deserialised by the configured serializer."""


class ResultNotFound(FlowpodException, KeyError):
    """The result store holds nothing under the requested key."""


class UpstreamTaskError(FlowpodException):
    """An upstream task named in wait_for did not complete, so this run did not start."""


class UnfinishedRun(FlowpodException):
    """A result was requested from a run that is not in a final state."""


class CrashedRun(FlowpodException):
    """The run crashed: its process or pod ended without reporting a result."""


class FailedRun(FlowpodException):
    """The run failed and no exception object was stored with its state."""


class CancelledRun(FlowpodException):
    """The run was cancelled."""


class TaskRunTimeoutError(FlowpodException, TimeoutError):
    """A task run exceeded its timeout_seconds."""


class FlowRunTimeoutError(FlowpodException, TimeoutError):
    """A flow run exceeded its timeout_seconds."""
