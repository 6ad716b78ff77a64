"""Timeouts: a task that runs past `timeout_seconds` is stopped and ends in state `TimedOut`.

`show_timeouts` prints, sleeps 5 seconds, and prints again. With `timeout_seconds=1` the engine
stops it after one second: the run becomes `TimedOut` (a failed state whose result raises a
TimeoutError), and "I will not execute" is never printed, not even later (pass `linger_seconds`
to keep the flow alive past the sleep and watch for it). The flow asks for the final state
(`return_state=True`) instead of letting the failure propagate. Expected output:

    ... | INFO    | Task run 'show_timeouts-0' - I will execute
    ... | ERROR   | Task run 'show_timeouts-0' - Task run failed with exception:
                    TaskRunTimeoutError('Task run exceeded timeout of 1 second(s)') - Retries
                    are exhausted
    ... | ERROR   | Task run 'show_timeouts-0' - Finished in state TimedOut('Task run exceeded
                    timeout of 1 second(s)', type=FAILED)
    ... | INFO    | Flow run '...' - show_timeouts ended in state TimedOut after 1.0 s
"""

from __future__ import annotations

import time

from flowpod import flow, task


@task(timeout_seconds=1, log_prints=True)
def show_timeouts(sleep_seconds: float = 5) -> None:
    print("I will execute")
    time.sleep(sleep_seconds)
    print("I will not execute")


@flow(log_prints=True)
def timeouts_flow(sleep_seconds: float = 5, linger_seconds: float = 0) -> str | None:
    started = time.monotonic()
    state = show_timeouts(sleep_seconds, return_state=True)
    elapsed = time.monotonic() - started
    print(f"show_timeouts ended in state {state.name} after {elapsed:.1f} s")
    # Give a task that was not really stopped the time to reach its last print.
    time.sleep(linger_seconds)
    name: str | None = state.name
    return name


if __name__ == "__main__":
    timeouts_flow()
