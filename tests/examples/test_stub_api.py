"""The offline API stub the examples call: its data, pagination, failure modes and request log."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from example_support import EXAMPLES, stub_api


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_known_repository_reports_the_seed_figures(stub: Any) -> None:
    status, body = get(f"{stub.url}/repos/PrefectHQ/prefect")
    assert status == 200
    assert body["full_name"] == "PrefectHQ/prefect"
    assert (body["stargazers_count"], body["forks_count"]) == (12157, 1251)
    assert body["open_issues_count"] == stub_api.KNOWN_REPOS["PrefectHQ/prefect"].open_issues


def test_other_repositories_are_deterministic_across_servers(stub: Any) -> None:
    _, first = get(f"{stub.url}/repos/acme/rockets")
    with stub_api.StubAPI() as other:
        _, second = get(f"{other.url}/repos/acme/rockets")
    _, different = get(f"{stub.url}/repos/acme/anvils")
    assert first == second
    assert first != different
    assert first["stargazers_count"] == stub_api.repo_data("acme/rockets").stars


def test_missing_repository_is_404(stub: Any) -> None:
    status, body = get(f"{stub.url}/repos/acme/no-such-repo")
    assert status == 404
    assert body["message"] == "Not Found"


@pytest.mark.parametrize("listing", ["contributors", "issues"])
def test_listings_paginate_without_gaps_or_overlaps(stub: Any, listing: str) -> None:
    data = stub_api.repo_data("PrefectHQ/prefect")
    total = data.contributors if listing == "contributors" else data.open_issues
    seen: list[Any] = []
    page = 1
    while True:
        status, items = get(
            f"{stub.url}/repos/PrefectHQ/prefect/{listing}?page={page}&per_page=100"
        )
        assert status == 200
        seen.extend(items)
        if len(items) < 100:
            break
        page += 1
    assert page == -(total // -100)
    key = "id" if listing == "contributors" else "number"
    assert len({item[key] for item in seen}) == len(seen) == total
    _, past_the_end = get(
        f"{stub.url}/repos/PrefectHQ/prefect/{listing}?page={page + 1}&per_page=100"
    )
    assert past_the_end == []


def test_listings_default_to_thirty_per_page_and_reject_bad_sizes(stub: Any) -> None:
    _, first_page = get(f"{stub.url}/repos/PrefectHQ/prefect/contributors")
    assert len(first_page) == 30
    status, _ = get(f"{stub.url}/repos/PrefectHQ/prefect/contributors?per_page=500")
    assert status == 422


def test_every_issue_author_appears_so_the_average_matches_the_seed(stub: Any) -> None:
    issues: list[Any] = []
    for page in range(1, 7):
        issues += get(f"{stub.url}/repos/PrefectHQ/prefect/issues?page={page}&per_page=100")[1]
    authors = {issue["user"]["id"] for issue in issues}
    assert len(authors) == stub_api.KNOWN_REPOS["PrefectHQ/prefect"].issue_authors
    assert f"{len(issues) / len(authors):.2f}" == "2.27"


def test_brittle_endpoint_fails_the_first_n_requests_of_each_url(stub: Any) -> None:
    url = f"{stub.url}/brittle/endpoint?fail=2&session=a"
    assert [get(url)[0] for _ in range(3)] == [503, 503, 200]
    assert get(url)[1]["attempt"] == 4
    # Another session has its own count.
    assert get(f"{stub.url}/brittle/endpoint?fail=2&session=b")[0] == 503
    assert get(f"{stub.url}/brittle/endpoint")[0] == 200
    assert get(f"{stub.url}/brittle/missing")[0] == 404


def test_flaky_paths_fail_their_first_requests() -> None:
    with stub_api.StubAPI(flaky={"/repos/acme/rockets": 2}) as stub:
        statuses = [get(f"{stub.url}/repos/acme/rockets")[0] for _ in range(3)]
        assert statuses == [503, 503, 200]
        assert [r.status for r in stub.requests_to("/repos/acme/rockets")] == [503, 503, 200]


def test_request_log_records_timing_and_concurrent_requests_overlap() -> None:
    with stub_api.StubAPI(page_latency=0.3) as stub:
        urls = [f"{stub.url}/repos/acme/rockets/issues?page={n}" for n in (1, 2)]
        threads = [threading.Thread(target=get, args=(url,)) for url in urls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        first, second = stub.wait_for_requests(2)
        assert first.finished - first.started >= 0.3
        assert first.overlaps(second)
        assert {r.query["page"] for r in stub.requests} == {"1", "2"}
        # Sequential requests do not overlap.
        stub.clear()
        get(urls[0])
        get(urls[1])
        one, two = stub.requests
        assert not one.overlaps(two)


def test_request_log_is_served_over_http_without_logging_itself(stub: Any) -> None:
    get(f"{stub.url}/repos/acme/rockets")
    status, log = get(f"{stub.url}/_requests")
    assert status == 200
    assert [entry["path"] for entry in log] == ["/repos/acme/rockets"]
    assert get(f"{stub.url}/_requests")[1] == log


def test_wait_for_requests_times_out_with_a_clear_error(stub: Any) -> None:
    with pytest.raises(TimeoutError, match="expected 1 requests"):
        stub.wait_for_requests(1, timeout=0.05)


def test_negative_latency_is_rejected() -> None:
    with pytest.raises(ValueError, match="page_latency"):
        stub_api.StubAPI(page_latency=-1)


def test_offline_points_real_hosts_at_the_configured_stub(
    stub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(stub_api.ENV_VAR, stub.url + "/")
    assert stub_api.offline("https://api.github.com/repos/a/b?page=2") == (
        f"{stub.url}/repos/a/b?page=2"
    )
    assert stub_api.offline("https://api.brittle-service.com/endpoint") == (
        f"{stub.url}/brittle/endpoint"
    )
    assert stub_api.offline("https://example.com/x") == "https://example.com/x"
    assert stub_api.offline("https://api.github.com.evil.example/x").startswith("https://")
    get(stub_api.offline("https://api.github.com/repos/a/b"))
    assert [entry["path"] for entry in stub_api.request_log()] == ["/repos/a/b"]


def test_offline_rejects_a_malformed_stub_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(stub_api.ENV_VAR, "127.0.0.1:8765")
    with pytest.raises(ValueError, match="not a URL"):
        stub_api.offline("https://api.github.com/repos/a/b")


def test_without_a_configured_stub_the_process_starts_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(stub_api.ENV_VAR, raising=False)
    monkeypatch.setattr(stub_api, "_own_stub", None)
    try:
        url = stub_api.offline("https://api.github.com/repos/PrefectHQ/prefect")
        assert url.startswith("http://127.0.0.1:")
        assert get(url)[1]["stargazers_count"] == 12157
        assert stub_api.base_url() == stub_api._own_stub.url  # started once, then reused
    finally:
        if stub_api._own_stub is not None:
            stub_api._own_stub.stop()


def test_the_stub_runs_as_its_own_process_for_other_processes_to_share() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "flowpod_examples" / "stub_api.py"),
         "--port", "0", "--page-latency", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()  # blocks until the server is listening
        match = re.search(r"export FLOWPOD_EXAMPLE_API=(http://127\.0\.0\.1:\d+)", banner)
        assert match, banner
        status, body = get(f"{match.group(1)}/repos/PrefectHQ/prefect")
        assert (status, body["stargazers_count"]) == (200, 12157)
    finally:
        proc.terminate()
        proc.wait(10)
