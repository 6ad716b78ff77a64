"""Retry arithmetic: which delay comes next and whether to retry at all.

Pure functions with no I/O and no clock, shared by the local engine and the Kubernetes operator so
both answer "what happens after attempt N failed" the same way.

Jitter follows the documented promise: the average delay stays the base delay, and a delay of 10
with ``retry_jitter_factor=0.5`` may reach 15. A delay is drawn from an exponential distribution
whose mean is the base, restricted to ``[base * log2(2**k / (2**k - 1)), base * k]`` with
``k = 1 + jitter_factor`` (inverse-CDF sampling between the two bounds, so no probability piles up
at either end). Cutting off the upper tail alone would lower the mean; the lower bound removes
just enough of the short delays that the mean stays within 1.5% of the base for every factor.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import TypeAlias, TypeGuard

__all__ = [
    "MAX_RETRY_DELAYS",
    "RetryDecision",
    "RetryDelaySpec",
    "decide_retry",
    "delay_for_retry",
    "exponential_backoff",
    "jitter_bounds",
    "resolve_delays",
    "validate_retry_delay_seconds",
    "validate_retry_jitter_factor",
]

MAX_RETRY_DELAYS = 50

RetryDelaySpec: TypeAlias = (
    float | int | list[float] | list[int] | Callable[[int], list[float]] | None
)

_DELAY_FORM = (
    "retry_delay_seconds accepts a number of seconds >= 0, a list of at most "
    f"{MAX_RETRY_DELAYS} such numbers, or a callable taking the retry count and returning "
    "such a list (e.g. exponential_backoff(backoff_factor=10))"
)


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """A ``retry_delay_seconds`` callable: retry i (0-based) waits ``backoff_factor * 2**i``."""
    if isinstance(backoff_factor, bool) or not isinstance(backoff_factor, Real):
        raise TypeError(f"backoff_factor must be a number of seconds, got {backoff_factor!r}")
    if not math.isfinite(backoff_factor) or backoff_factor < 0:
        raise ValueError(f"backoff_factor must be >= 0, got {backoff_factor!r}")
    factor = float(backoff_factor)

    def retry_backoff_delays(retries: int) -> list[float]:
        return [factor * 2**i for i in range(retries)]

    return retry_backoff_delays


def _is_number(value: object) -> TypeGuard[float]:
    # bool is an int subclass, but retry_delay_seconds=True is always a mistake.
    return isinstance(value, Real) and not isinstance(value, bool)


def _check_delay_list(values: Sequence[object], origin: str) -> None:
    if len(values) > MAX_RETRY_DELAYS:
        raise ValueError(
            f"{origin} has {len(values)} delays; at most {MAX_RETRY_DELAYS} are allowed "
            "(the last one repeats for further retries, so a shorter list does the same)"
        )
    for item in values:
        if not _is_number(item):
            raise TypeError(f"{origin} contains {item!r}; {_DELAY_FORM}")
        if not math.isfinite(item) or item < 0:
            raise ValueError(f"{origin} contains {item!r}; delays must be finite and >= 0")


def validate_retry_delay_seconds(value: object) -> None:
    """Raise TypeError for an unsupported type, ValueError for a bad number or a long list."""
    if value is None or callable(value):
        return
    if _is_number(value):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"retry_delay_seconds={value!r} is not valid; {_DELAY_FORM}")
        return
    if isinstance(value, list):
        _check_delay_list(value, "retry_delay_seconds")
        return
    raise TypeError(
        f"retry_delay_seconds got a {type(value).__name__} ({value!r}); {_DELAY_FORM}"
    )


def validate_retry_jitter_factor(value: object) -> None:
    """Raise TypeError unless ``value`` is None or a number, ValueError if it is negative."""
    if value is None:
        return
    if not _is_number(value):
        raise TypeError(
            f"retry_jitter_factor must be a number >= 0 or None, got {type(value).__name__} "
            f"({value!r})"
        )
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"retry_jitter_factor must be >= 0, got {value!r}")


def resolve_delays(spec: RetryDelaySpec, retries: int) -> list[float]:
    """The base delay of each retry, from any accepted ``retry_delay_seconds`` form.

    A callable is evaluated once as ``spec(retries)``; a number gives one entry per retry (at
    least one); None means no delay. Callers index with ``delay_for_retry``, which repeats the
    last entry, so a short list is fine.
    """
    if spec is None:
        return [0.0]
    if callable(spec):
        produced = spec(retries)
        name = getattr(spec, "__name__", repr(spec))
        if not isinstance(produced, list | tuple):
            raise TypeError(
                f"the retry_delay_seconds callable {name} returned {produced!r}; "
                "it must return a list of delays in seconds"
            )
        _check_delay_list(produced, f"the list returned by the retry_delay_seconds callable {name}")
        return [float(item) for item in produced]
    validate_retry_delay_seconds(spec)
    if isinstance(spec, list):
        return [float(item) for item in spec]
    return [float(spec)] * max(retries, 1)


def jitter_bounds(base: float, jitter_factor: float) -> tuple[float, float]:
    """The interval a jittered delay of mean ``base`` is clamped to."""
    k = 1.0 + jitter_factor
    # log2(2**k / (2**k - 1)) rewritten so that a huge k neither overflows nor rounds to log2(1).
    lower = -math.log1p(-(2.0**-k)) / math.log(2.0)
    return base * lower, base * k


def delay_for_retry(
    delays: Sequence[float],
    retry_number: int,
    jitter_factor: float | None,
    rng: random.Random | None = None,
) -> float:
    """The delay before retry ``retry_number`` (1-based); the last delay repeats beyond the list."""
    if retry_number < 1:
        raise ValueError(f"retry_number is 1-based, got {retry_number}")
    base = float(delays[min(retry_number - 1, len(delays) - 1)]) if delays else 0.0
    if not jitter_factor or base <= 0.0:
        return base
    lower, upper = jitter_bounds(base, jitter_factor)
    # Inverse-CDF sampling of an exponential with mean `base`, restricted to [lower, upper]:
    # draw the survival probability S(x) = exp(-x/base) uniformly between S(upper) and S(lower).
    s_lower = math.exp(-lower / base)
    s_upper = math.exp(-upper / base)
    u = (rng or random).random()
    survival = s_upper + u * (s_lower - s_upper)
    delay = -base * math.log(survival)
    return min(max(delay, lower), upper)


@dataclass(frozen=True)
class RetryDecision:
    """What to do after a failed attempt."""

    retry: bool
    retry_number: int
    """Which retry this would be (1-based); 0 when not retrying."""
    delay_seconds: float


NO_RETRY = RetryDecision(retry=False, retry_number=0, delay_seconds=0.0)


def decide_retry(
    run_count: int,
    retries: int,
    delays: Sequence[float],
    jitter_factor: float | None,
    condition_allows: bool = True,
    rng: random.Random | None = None,
) -> RetryDecision:
    """After ``run_count`` attempts (>= 1) failed: retry iff attempts remain and the condition
    allows; the delay comes from ``delay_for_retry``."""
    if run_count < 1:
        raise ValueError(f"run_count counts attempts made so far and is >= 1, got {run_count}")
    if run_count > retries or not condition_allows:
        return NO_RETRY
    delay = delay_for_retry(delays, run_count, jitter_factor, rng)
    return RetryDecision(retry=True, retry_number=run_count, delay_seconds=delay)
