"""Retries against a brittle service: exponential backoff with jitter, and a retry condition.

The stub's `/brittle/endpoint` answers 503 to the first `failures` requests of a URL, then 200.
`get_data_task` retries up to 3 times, waiting `exponential_backoff(backoff_factor=0.2)` seconds
(0.2, 0.4, 0.8) stretched by up to half again by `retry_jitter_factor=0.5`, so a crowd of clients
does not come back in lockstep. One task run keeps its id across attempts: each retry appends
AwaitingRetry and Retrying states to its history. `retry_on_server_errors` declines to retry
answers that another attempt cannot fix (401, 404), so the call to a missing path fails at once.
Expected output:

    ... | INFO    | Flow run '...' - Executing 'get_data_task-0' immediately...
    ... | INFO    | Task run 'get_data_task-0' - Task run failed with exception: <HTTPError 503:
                    'Service Unavailable'> - Retry 1/3 will start 0.21 second(s) from now
    ... | INFO    | Task run 'get_data_task-0' - ... Retry 2/3 will start 0.43 second(s) from now
    ... | INFO    | Task run 'get_data_task-0' - Finished in state Completed()
    ... | INFO    | Flow run '...' - The brittle service answered on attempt 3 (2 retries)
    ... | ERROR   | Task run 'get_data_task-1' - Finished in state Failed('Task run encountered
                    an exception HTTPError: HTTP Error 404: Not Found')
    ... | INFO    | Flow run '...' - A 404 is not retried: Failed(...)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import urlopen

from flowpod import flow, task
from flowpod.runtime import flow_run
from flowpod.tasks import exponential_backoff

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowpod_examples.stub_api import offline  # noqa: E402


def retry_on_server_errors(task: Any, task_run: Any, state: Any) -> bool:
    """Retry server-side and unknown failures; not answers a retry cannot change."""
    try:
        state.result()
    except HTTPError as exc:
        return exc.code not in (401, 404)
    except URLError:
        # Nothing listens at that address: retrying only delays the inevitable error.
        return False
    except Exception:
        return True
    return False


@task(
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=0.2),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_on_server_errors,
)
def get_data_task(url: str = "https://api.brittle-service.com/endpoint") -> dict[str, Any]:
    # A non-2xx answer raises HTTPError; the task does not catch it, so the run fails and the
    # engine decides (with retry_on_server_errors) whether to try again.
    with urlopen(offline(url), timeout=30) as response:
        data: dict[str, Any] = json.load(response)
    return data


@flow(log_prints=True)
def get_data_flow(failures: int = 2) -> dict[str, Any]:
    # The flow run id keeps this run's failure count apart from other runs on a shared stub.
    query = urlencode({"fail": failures, "session": flow_run.id})
    data = get_data_task(f"https://api.brittle-service.com/endpoint?{query}")
    retries = data["attempt"] - 1
    print(f"The brittle service answered on attempt {data['attempt']} ({retries} retries)")

    missing = get_data_task("https://api.brittle-service.com/missing", return_state=True)
    print(f"A 404 is not retried: {missing}")
    return data


if __name__ == "__main__":
    get_data_flow()
