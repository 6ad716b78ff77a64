"""Which earlier flow attempt a flow attempt continues, and how its TaskRuns are named.

A flow pod that is taken away (deleted, evicted, its node lost) leaves TaskRuns behind that are
still running or already finished. The operator starts another flow pod for the FlowRun; that
attempt runs the flow function again and, submission by submission, meets the TaskRuns the
lost attempt created under the same names, and adopts them instead of running them again. The
names are deterministic for that: the FlowRun's uid, the attempt the work started in (the
*series*) and the submission's place in the flow. A retry after the flow itself failed starts a
new series, so it runs its tasks afresh, as a retried flow does locally.

Used by the operator (its platform retries count the same crashes) and by the flow pod.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Iterable

from flowpod._contract.reasons import INFRASTRUCTURE_REASONS
from flowpod._contract.resources import StateTransition
from flowpod._contract.states import StateName

__all__ = ["is_platform_crash", "resumed_from", "series_suffix"]

_ALPHABET = string.ascii_lowercase + string.digits


def is_platform_crash(entry: StateTransition) -> bool:
    """A history entry of an attempt that crashed for the platform's sake, not the code's."""
    return entry.state is StateName.CRASHED and entry.reason in INFRASTRUCTURE_REASONS


def resumed_from(history: Iterable[StateTransition], attempt: int) -> int:
    """The attempt whose work ``attempt`` continues: itself, unless the attempt before it
    crashed for a platform reason, in which case the one that attempt continued."""
    crashed = {entry.attempt for entry in history if is_platform_crash(entry)}
    while attempt > 1 and attempt - 1 in crashed:
        attempt -= 1
    return attempt


def series_suffix(flowrun_uid: str, series: int, sequence: int) -> str:
    """Six characters naming submission ``sequence`` (from 0, in the order the flow submits)
    of the series that began with attempt ``series`` of the FlowRun ``flowrun_uid``."""
    digest = hashlib.sha256(f"{flowrun_uid}/{series}/{sequence}".encode()).digest()
    number = int.from_bytes(digest[:8], "big")
    chars = []
    for _ in range(6):
        number, index = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[index])
    return "".join(chars)
