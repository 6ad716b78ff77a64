"""Caching: a page fetched once is not fetched again, in this run, the next one, or a new process.

Three ways to say what makes two calls "the same":
- `cache_policy=INPUTS` with `cache_expiration`: the same arguments within an hour reuse the stored
  page (`get_contributors_page`);
- a custom `cache_key_fn(context, parameters)`: here one key per repository per day, whatever
  else is passed (`get_repo`);
- policies combined with `+`: `INPUTS + TASK_SOURCE` recomputes when the arguments or the task's
  code change (`count_contributions`).
Records live in the result store under FLOWPOD_HOME, so they survive the process. A cache hit
restores the value without running the function and the task run ends in state `Cached`. Pass
`refresh=True` to skip the lookup and overwrite the records (`refresh_cache=True`).

`python examples/05_caching.py` runs the flow twice and prints how many HTTP requests each run
made: the first fetches the repository and its three pages of contributors, the second none.
"""

from __future__ import annotations

import json
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from urllib.request import urlopen

from flowpod import flow, task
from flowpod.cache_policies import INPUTS, TASK_SOURCE

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowpod_examples.stub_api import offline, request_log  # noqa: E402


def fetch_json(url: str, params: dict[str, Any] | None = None) -> Any:
    if params:
        url = f"{url}?{urlencode(params)}"
    with urlopen(offline(url), timeout=30) as response:
        return json.load(response)


def repo_per_day(context: Any, parameters: dict[str, Any]) -> str:
    """One cache entry per repository per calendar day."""
    return f"repo-{parameters['repo_name']}-{date.today().isoformat()}"


@task(cache_key_fn=repo_per_day)
def get_repo(repo_name: str) -> dict[str, Any]:
    data: dict[str, Any] = fetch_json(f"https://api.github.com/repos/{repo_name}")
    return data


@task(cache_policy=INPUTS, cache_expiration=timedelta(hours=1))
def get_contributors_page(repo_name: str, page: int, per_page: int = 100) -> list[Any]:
    contributors: list[Any] = fetch_json(
        f"https://api.github.com/repos/{repo_name}/contributors",
        params={"page": page, "per_page": per_page},
    )
    return contributors


@task(cache_policy=INPUTS + TASK_SOURCE)
def count_contributions(pages: list[list[Any]]) -> int:
    return sum(person["contributions"] for page in pages for person in page)


@flow(log_prints=True)
def contributor_stats(repo_name: str = "PrefectHQ/prefect", refresh: bool = False) -> int:
    fetch_page = get_contributors_page.with_options(refresh_cache=refresh)
    repo = get_repo.with_options(refresh_cache=refresh)(repo_name)
    pages: list[list[Any]] = []
    per_page = 100
    while True:
        pages.append(fetch_page(repo_name, len(pages) + 1, per_page))
        if len(pages[-1]) < per_page:  # a short page is the last one
            break
    contributions = count_contributions(pages)
    print(f"{repo['full_name']} contributors 👷 : {sum(len(page) for page in pages)}")
    print(f"Contributions 📝 : {contributions}")
    return contributions


def _api_requests() -> int:
    return sum(1 for entry in request_log() if entry["path"].startswith("/repos/"))


if __name__ == "__main__":
    for label in ("First run", "Second run"):
        before = _api_requests()
        contributor_stats()
        made = _api_requests() - before
        note = " (every page came from the cache)" if made == 0 else ""
        print(f"{label}: {made} HTTP request(s) to the API{note}")
