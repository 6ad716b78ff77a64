"""Repository statistics plus the average number of open issues per user, fetched page by page.

The seed's second example: `get_url` is now cached (`cache_key_fn=task_input_hash`, for an hour),
and the open issues are read one page (100 issues) at a time, sequentially: each page waits for the
previous one. `03_open_issues_submit.py` makes the same requests concurrently with `.submit()`.
Run it twice with the same FLOWPOD_HOME and the second run answers every page from the cache
(task runs end `Cached`, no HTTP request is made). Expected output ends with:

    ... | INFO    | Flow run '...' - PrefectHQ/prefect repository statistics 🤓:
    ... | INFO    | Flow run '...' - Stars 🌠 : 12157
    ... | INFO    | Flow run '...' - Forks 🍴 : 1251
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
    issues = []
    # Ceiling division: 573 open issues at 100 a page are 6 pages.
    pages = range(1, -(open_issues_count // -per_page) + 1)
    for page in pages:
        issues.append(
            get_url(
                f"https://api.github.com/repos/{repo_name}/issues",
                params={"page": page, "per_page": per_page, "state": "open"},
            )
        )
    return [issue for page_of_issues in issues for issue in page_of_issues]


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
