"""Retry arithmetic: delay lists, backoff, jitter bounds and mean, retry decisions, validation."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from flowpod._contract.retrying import (
    MAX_RETRY_DELAYS,
    RetryDecision,
    decide_retry,
    delay_for_retry,
    exponential_backoff,
    jitter_bounds,
    resolve_delays,
    validate_retry_delay_seconds,
    validate_retry_jitter_factor,
)


def test_exponential_backoff() -> None:
    assert exponential_backoff(10)(4) == [10.0, 20.0, 40.0, 80.0]
    assert exponential_backoff(0.5)(0) == []
    for factor in (0.1, 1, 3):
        for n in range(6):
            assert exponential_backoff(factor)(n) == [factor * 2**i for i in range(n)]
    with pytest.raises(TypeError):
        exponential_backoff("10")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        exponential_backoff(-1)


def test_resolve_delays_forms() -> None:
    assert resolve_delays(None, 3) == [0.0]
    assert resolve_delays(5, 3) == [5.0, 5.0, 5.0]
    assert resolve_delays(2.5, 0) == [2.5]
    assert resolve_delays([1, 2], 5) == [1.0, 2.0]
    assert resolve_delays(exponential_backoff(1), 3) == [1.0, 2.0, 4.0]


def test_callable_is_evaluated_with_the_retry_count() -> None:
    seen: list[int] = []

    def delays(retries: int) -> list[float]:
        seen.append(retries)
        return [float(retries)] * retries

    assert resolve_delays(delays, 4) == [4.0, 4.0, 4.0, 4.0]
    assert seen == [4]


def test_callable_returning_garbage_is_reported() -> None:
    with pytest.raises(TypeError, match="must return a list"):
        resolve_delays(lambda n: 5, 2)  # type: ignore[arg-type, return-value]
    with pytest.raises(ValueError, match="at most 50"):
        resolve_delays(lambda n: [1.0] * 51, 2)
    with pytest.raises(ValueError, match=">= 0"):
        resolve_delays(lambda n: [-1.0], 2)


def test_list_repeats_its_last_delay() -> None:
    delays = [1.0, 2.0, 3.0]
    got = [delay_for_retry(delays, n, None) for n in range(1, 7)]
    assert got == [1.0, 2.0, 3.0, 3.0, 3.0, 3.0]
    assert delay_for_retry([], 3, None) == 0.0
    with pytest.raises(ValueError, match="1-based"):
        delay_for_retry(delays, 0, None)


@pytest.mark.parametrize("factor", [0.1, 0.5, 1.0, 2.0, 10.0])
@pytest.mark.parametrize("base", [0.2, 10.0, 300.0])
def test_jitter_stays_within_bounds(base: float, factor: float) -> None:
    rng = random.Random(1234)
    lower, upper = jitter_bounds(base, factor)
    assert upper == pytest.approx(base * (1 + factor))
    k = 1 + factor
    assert lower == pytest.approx(base * math.log2(2**k / (2**k - 1)))
    draws = [delay_for_retry([base], 1, factor, rng) for _ in range(5000)]
    assert all(lower <= d <= upper for d in draws)
    # The draws actually spread over the interval instead of sticking to the base.
    assert min(draws) < base * 0.95 and max(draws) > base * 1.02


def test_the_documented_example_can_reach_fifteen() -> None:
    rng = random.Random(7)
    draws = [delay_for_retry([10.0], 1, 0.5, rng) for _ in range(20000)]
    assert max(draws) <= 15.0
    assert max(draws) > 14.5  # "a delay of 10 with factor 0.5 may reach 15"


@pytest.mark.parametrize("factor", [0.2, 0.5, 1.0, 3.0, 10.0])
def test_jitter_keeps_the_mean_near_the_base(factor: float) -> None:
    rng = random.Random(20240601)
    base = 10.0
    n = 40000
    draws = [delay_for_retry([base], 1, factor, rng) for _ in range(n)]
    mean = statistics.fmean(draws)
    stderr = statistics.stdev(draws) / math.sqrt(n)
    # The clamped distribution's exact mean is within ~1.3% of the base for every factor; allow
    # that bias plus 4 standard errors. A sampler that ignored the clamp, sampled uniformly, or
    # used the wrong rate lands well outside (e.g. uniform on the interval: +6.5% at factor 0.5).
    assert abs(mean - base) <= 0.015 * base + 4 * stderr, (mean, stderr)


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    a = [delay_for_retry([5.0], 1, 1.0, random.Random(3)) for _ in range(3)]
    b = [delay_for_retry([5.0], 1, 1.0, random.Random(3)) for _ in range(3)]
    assert a == b


def test_no_jitter_for_zero_factor_or_zero_base() -> None:
    rng = random.Random(0)
    assert delay_for_retry([4.0], 1, 0.0, rng) == 4.0
    assert delay_for_retry([4.0], 1, None, rng) == 4.0
    assert delay_for_retry([0.0], 1, 5.0, rng) == 0.0


def test_decide_retry_truth_table() -> None:
    delays = [1.0, 2.0]
    # (run_count, retries, condition_allows) -> (retry, retry_number, delay)
    table = [
        (1, 0, True, (False, 0, 0.0)),
        (1, 2, True, (True, 1, 1.0)),
        (2, 2, True, (True, 2, 2.0)),
        (3, 2, True, (False, 0, 0.0)),
        (1, 2, False, (False, 0, 0.0)),
        (2, 2, False, (False, 0, 0.0)),
        (4, 5, True, (True, 4, 2.0)),
    ]
    for run_count, retries, allows, expected in table:
        decision = decide_retry(run_count, retries, delays, None, allows)
        assert isinstance(decision, RetryDecision)
        got = (decision.retry, decision.retry_number, decision.delay_seconds)
        assert got == expected, (run_count, retries, allows)
    with pytest.raises(ValueError, match=">= 1"):
        decide_retry(0, 1, delays, None)


def test_decide_retry_applies_jitter() -> None:
    decision = decide_retry(1, 1, [10.0], 0.5, rng=random.Random(5))
    lower, upper = jitter_bounds(10.0, 0.5)
    assert decision.retry and lower <= decision.delay_seconds <= upper
    assert decision.delay_seconds != 10.0


@pytest.mark.parametrize("value", [None, 0, 3, 2.5, [], [1, 2.5], [0] * MAX_RETRY_DELAYS, abs])
def test_valid_retry_delays(value: object) -> None:
    validate_retry_delay_seconds(value)


@pytest.mark.parametrize(
    ("value", "error", "fragment"),
    [
        ("10", TypeError, "accepts a number"),
        ((1, 2), TypeError, "accepts a number"),
        ({1: 2}, TypeError, "accepts a number"),
        (True, TypeError, "accepts a number"),
        ([1, "2"], TypeError, "contains '2'"),
        ([1] * 51, ValueError, "51 delays; at most 50"),
        (-1, ValueError, "not valid"),
        ([1, -2], ValueError, ">= 0"),
        (float("nan"), ValueError, "not valid"),
    ],
)
def test_invalid_retry_delays(value: object, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        validate_retry_delay_seconds(value)


def test_jitter_factor_validation() -> None:
    for ok in (None, 0, 0.5, 3):
        validate_retry_jitter_factor(ok)
    for bad_type in ("0.5", [0.5], True):
        with pytest.raises(TypeError, match="retry_jitter_factor"):
            validate_retry_jitter_factor(bad_type)
    for bad_value in (-0.1, float("inf")):
        with pytest.raises(ValueError, match=">= 0"):
            validate_retry_jitter_factor(bad_value)
