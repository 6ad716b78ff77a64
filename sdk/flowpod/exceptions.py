"""The exceptions flowpod raises, one tree rooted at FlowpodException.

    FlowpodException
    ├── MissingContextError          run-only API used outside a flow or task run
    ├── ConfigurationError           a setting or profile value is invalid (also ValueError)
    ├── ParameterTypeError           flow parameters do not fit their type hints (also TypeError)
    ├── SignatureMismatchError       arguments do not bind to the signature (also TypeError)
    ├── ReservedArgumentError        a function uses a reserved parameter name (also TypeError)
    ├── MappingLengthMismatch        .map() iterables of different lengths (also ValueError)
    ├── MappingMissingIterable       .map() called with no iterable argument (also ValueError)
    ├── UnhashableInputError         a cache policy cannot hash an input (also ValueError)
    ├── SerializationError           a result cannot be serialised or deserialised (also ValueError)
    ├── ResultNotFound               no stored object under a key (also KeyError)
    ├── UpstreamTaskError            a wait_for upstream did not complete
    ├── UnfinishedRun                result() asked of a run that has not finished
    ├── CrashedRun                   the run crashed (the process or pod died)
    ├── FailedRun                    a failed state without a stored exception
    ├── CancelledRun                 the run was cancelled
    ├── TaskRunTimeoutError          a task run exceeded timeout_seconds (also TimeoutError)
    └── FlowRunTimeoutError          a flow run exceeded timeout_seconds (also TimeoutError)

The classes are defined with the run contract (``flowpod._contract.errors``), whose records
raise them; this is their public home, and the name they print and pickle under.
"""

from __future__ import annotations

from flowpod._contract import errors as _errors
from flowpod._contract.errors import *  # noqa: F403 - exactly the names in its __all__

__all__ = list(_errors.__all__)

# Defined in the run contract, these are flowpod.exceptions to their users: tracebacks, reprs and
# pickles name them here.
for _name in __all__:
    getattr(_errors, _name).__module__ = __name__
del _name
