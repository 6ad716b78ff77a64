"""Where a run's objects live in the result store: the key layout shared by the SDK (which
writes payloads and reads results), the pod program (which writes outcomes, results and logs) and
the operator (which reads outcomes and cache records). Relative to the store's prefix::

    runs/<namespace>/<taskrun>/payload                   cloudpickled TaskPayload
    runs/<namespace>/<taskrun>/outcome-<attempt>.json    Outcome as JSON (camelCase keys)
    runs/<namespace>/<taskrun>/result-<attempt>          the serialised return value (no cache key)
    runs/<namespace>/<taskrun>/exception-<attempt>       the failed attempt's pickled exception
    runs/<namespace>/<flowrun>/flow-code                 the cloudpickled Flow (spec.code)
    runs/<namespace>/<flowrun>/flow-outcome-<n>.json     FlowOutcome of flow attempt n
    runs/<namespace>/<flowrun>/flow-result-<n>           the flow's serialised return value
    runs/<namespace>/<name>/log-<n>.txt                  any pod's log (task or flow attempt n)
    cache/<cache key>.json / .value                      CacheRecord + the cached value

Pure functions of names and numbers; every key passes ``validate_key``.
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "cache_name",
    "cache_record_key",
    "cache_value_key",
    "exception_key",
    "flow_code_key",
    "flow_outcome_key",
    "flow_result_key",
    "log_key",
    "outcome_key",
    "payload_key",
    "result_key",
    "run_prefix",
    "validate_key",
]


def validate_key(key: str) -> str:
    """Check that ``key`` is a relative '/'-separated path that stays inside the store."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"a result store key must be a non-empty string, got {key!r}")
    problem = None
    if key.startswith("/") or key.startswith("\\") or re.match(r"^[A-Za-z]:", key):
        problem = "it is absolute; use a relative path such as 'results/my-task.pickle'"
    elif "\\" in key:
        problem = "it contains a backslash; separate folders with '/'"
    elif "\x00" in key:
        problem = "it contains a NUL character"
    else:
        parts = key.split("/")
        if any(part in ("..", ".") for part in parts):
            problem = "it contains a '.' or '..' segment; keys cannot leave the store's root"
        elif any(part == "" for part in parts):
            problem = "it has an empty segment ('//' or a trailing '/')"
    if problem:
        raise ValueError(f"invalid result store key {key!r}: {problem}")
    return key


def _check_part(value: str, what: str) -> str:
    if not isinstance(value, str) or not value or "/" in value:
        raise ValueError(
            f"invalid {what} {value!r}: it must be a non-empty Kubernetes object name without '/'"
        )
    return value


def _check_attempt(attempt: int) -> int:
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"attempt numbers start at 1; got {attempt!r}")
    return attempt


def run_prefix(namespace: str, name: str) -> str:
    """``runs/<namespace>/<taskrun>``: the folder of one TaskRun's objects."""
    return validate_key(f"runs/{_check_part(namespace, 'namespace')}/{_check_part(name, 'name')}")


def payload_key(namespace: str, name: str) -> str:
    return f"{run_prefix(namespace, name)}/payload"


def outcome_key(namespace: str, name: str, attempt: int) -> str:
    return f"{run_prefix(namespace, name)}/outcome-{_check_attempt(attempt)}.json"


def result_key(namespace: str, name: str, attempt: int) -> str:
    return f"{run_prefix(namespace, name)}/result-{_check_attempt(attempt)}"


def exception_key(namespace: str, name: str, attempt: int) -> str:
    return f"{run_prefix(namespace, name)}/exception-{_check_attempt(attempt)}"


def flow_code_key(namespace: str, name: str) -> str:
    return f"{run_prefix(namespace, name)}/flow-code"


def flow_outcome_key(namespace: str, name: str, attempt: int) -> str:
    return f"{run_prefix(namespace, name)}/flow-outcome-{_check_attempt(attempt)}.json"


def flow_result_key(namespace: str, name: str, attempt: int) -> str:
    return f"{run_prefix(namespace, name)}/flow-result-{_check_attempt(attempt)}"


def log_key(namespace: str, name: str, attempt: int) -> str:
    return f"{run_prefix(namespace, name)}/log-{_check_attempt(attempt)}.txt"


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")


def cache_name(cache_key: str) -> str:
    """The file/object name of a cache key: itself when safe, else '~' + its sha256.

    Keys from cache_key_fn are arbitrary strings ('a/../b', spaces, very long). '~' never occurs in
    a safe name, so a hashed name cannot collide with a literal one.
    """
    if _SAFE_NAME.fullmatch(cache_key) and ".." not in cache_key:
        return cache_key
    return "~" + hashlib.sha256(cache_key.encode("utf-8", "surrogatepass")).hexdigest()


def cache_record_key(cache_key: str) -> str:
    """``cache/<name>.json``: the CacheRecord of a cache key."""
    return f"cache/{cache_name(cache_key)}.json"


def cache_value_key(cache_key: str) -> str:
    """``cache/<name>.value``: the cached value of a cache key."""
    return f"cache/{cache_name(cache_key)}.value"
