"""Repository statistics: a flow calling one task that fetches a URL (the seed's first example).

Run it with `python examples/01_repo_info.py` (or `bash scripts/demo`). The GitHub API it calls is
the offline stub in `flowpod_examples/stub_api.py`, so the figures are fake but the HTTP is real.
Expected output:

    ... | INFO    | Flow run 'great-ammonite' - Created task run 'get_url-0' for task 'get_url'
    ... | INFO    | Flow run 'great-ammonite' - Executing 'get_url-0' immediately...
    ... | INFO    | Task run 'get_url-0' - Finished in state Completed()
    ... | INFO    | Flow run 'great-ammonite' - PrefectHQ/prefect repository statistics 🤓:
    ... | INFO    | Flow run 'great-ammonite' - Stars 🌠 : 12157
    ... | INFO    | Flow run 'great-ammonite' - Forks 🍴 : 1251
    ... | INFO    | Flow run 'great-ammonite' - Finished in state Completed('All states completed.')
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from urllib.request import urlopen

from flowpod import flow, task

# The offline API stub lives next to this file; the path entry lets `flowpod run` and the tests
# load this file by path and still import it.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowpod_examples.stub_api import offline  # noqa: E402


@task
def get_url(url: str, params: dict[str, Any] | None = None) -> Any:
    if params:
        url = f"{url}?{urlencode(params)}"
    # urlopen raises HTTPError for any 4xx/5xx answer, which fails the task run.
    with urlopen(offline(url), timeout=30) as response:
        return json.load(response)


@flow(retries=3, retry_delay_seconds=5, log_prints=True)
def get_repo_info(repo_name: str = "PrefectHQ/prefect") -> None:
    repo_stats = get_url(f"https://api.github.com/repos/{repo_name}")
    print(f"{repo_name} repository statistics 🤓:")
    print(f"Stars 🌠 : {repo_stats['stargazers_count']}")
    print(f"Forks 🍴 : {repo_stats['forks_count']}")


if __name__ == "__main__":
    get_repo_info()
