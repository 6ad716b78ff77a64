"""Repository statistics for several repositories, one submitted task run per repository.

The seed's first example (``01_repo_info.py``) as a flow for the cluster: each ``get_url``
submission becomes a TaskRun (its own pod), the flow pod collects the figures and returns them,
so ``flowpod get flowruns`` shows N/N task runs and the FlowRun's result is a plain dict::

    {"PrefectHQ/prefect": {"stars": 12157, "forks": 1251}, ...}

The GitHub API is the offline stub of ``flowpod_examples.stub_api``: at FLOWPOD_EXAMPLE_API when
that is set (the tests start one reachable from pods), else a stub each process starts for itself
(the data is deterministic, so every pod sees the same figures).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.request import urlopen

from flowpod import flow, task
from flowpod_examples.stub_api import offline


@task(retries=2, retry_delay_seconds=1)
def get_url(url: str) -> Any:
    with urlopen(offline(url), timeout=30) as response:
        return json.load(response)


@flow(log_prints=True)
def repo_stats(repos: list[str] | None = None) -> dict[str, dict[str, int]]:
    names = repos or ["PrefectHQ/prefect"]
    futures = get_url.map([f"https://api.github.com/repos/{name}" for name in names])
    stats = {}
    for name, future in zip(names, futures, strict=True):
        data = future.result()
        stats[name] = {"stars": int(data["stargazers_count"]), "forks": int(data["forks_count"])}
        print(f"{name}: {stats[name]['stars']} stars, {stats[name]['forks']} forks")
    return stats


if __name__ == "__main__":
    print(repo_stats())
