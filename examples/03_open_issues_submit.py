"""The open-issues example again, with the pages fetched concurrently through `.submit()`.

`get_url.submit(...)` hands each page to the flow's task runner (a thread pool) and returns a
future at once; `.result()` waits for it. The log shows every page's task run submitted before the
first one finishes, and the stub's request log shows the page requests overlapping in time.
Expected output (task runs finish in whatever order their requests complete):

    ... | INFO    | Flow run '...' - Created task run 'get_url-0' for task 'get_url'
    ... | INFO    | Flow run '...' - Executing 'get_url-0' immediately...
    ... | INFO    | Task run 'get_url-0' - Finished in state Completed()
    ... | INFO    | Flow run '...' - Created task run 'get_url-1' for task 'get_url'
    ... | INFO    | Flow run '...' - Submitted task run 'get_url-1' for execution.
    ...
    ... | INFO    | Task run 'get_url-4' - Finished in state Completed()
    ...
    ... | INFO    | Flow run '...' - Average open issues per user 💌 : 2.27
    ... | INFO    | Flow run '...' - Finished in state Completed('All states completed.')
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from urllib.request import urlopen

from flowpod import flow, task
from flowpod.tasks import task_input_hash

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowpod_examples.stub_api import offline  # noqa: E402


@task(cache_key_fn=task_input_hash, cache_expiration=timedelta(hours=1))
def get_url(url: str, params: dict[str, Any] | None = None) -> Any:
    if params:
        url = f"{url}?{urlencode(params)}"
    with urlopen(offline(url), timeout=30) as response:
        return json.load(response)


def get_open_issues(repo_name: str, open_issues_count: int, per_page: int = 100) -> list[Any]:
    futures = []
    pages = range(1, -(open_issues_count // -per_page) + 1)
    for page in pages:
        futures.append(
            get_url.submit(
                f"https://api.github.com/repos/{repo_name}/issues",
                params={"page": page, "per_page": per_page, "state": "open"},
            )
        )
    # Every request is already in flight; collect the pages in order.
    return [issue for future in futures for issue in future.result()]


@flow(retries=3, retry_delay_seconds=5, log_prints=True)
def get_repo_info(repo_name: str = "PrefectHQ/prefect") -> None:
    repo_stats = get_url(f"https://api.github.com/repos/{repo_name}")
    issues = get_open_issues(repo_name, repo_stats["open_issues_count"])
    issues_per_user = len(issues) / len({issue["user"]["id"] for issue in issues})
    print(f"{repo_name} repository statistics 🤓:")
    print(f"Stars 🌠 : {repo_stats['stargazers_count']}")
    print(f"Forks 🍴 : {repo_stats['forks_count']}")
    print(f"Average open issues per user 💌 : {issues_per_user:.2f}")


if __name__ == "__main__":
    get_repo_info()
