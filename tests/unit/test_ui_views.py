"""The dashboard's pure parts: attempt spans from histories, the timeline JSON, the page views
and the result preview (no server)."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime

from _ui_fakes import cached, entry, flowrun, retried_then_completed, stamp, taskrun

from flowpod._cli.describe import attempts_of
from flowpod._contract.attempts import attempt_spans, parse_time, retry_waits
from flowpod._storage import MemoryResultStore
from flowpod._ui import preview, views

NOW = datetime(2026, 11, 30, 10, 0, 30, tzinfo=UTC)


def ms(seconds: float) -> int:
    found = parse_time(stamp(seconds))
    assert found is not None
    return int(found.timestamp() * 1000)


def test_attempt_spans_skip_the_wait_and_keep_the_attempts_own_end() -> None:
    spans = attempt_spans(retried_then_completed("a")["status"])
    assert [(s.number, s.state, s.last_state) for s in spans] == [
        (1, "TimedOut", "AwaitingRetry"), (2, "Completed", "Completed")]
    assert spans[0].message == "attempt 1 timed out after 2s"
    assert spans[0].reason == "DeadlineExceeded"
    assert spans[0].end == parse_time(stamp(4)) and not spans[0].ongoing
    waits = retry_waits(spans)
    assert [(w.after, w.start, w.end) for w in waits] == [
        (1, parse_time(stamp(4)), parse_time(stamp(7)))]


def test_a_running_attempt_has_no_end_and_a_pending_retry_an_open_wait() -> None:
    running = taskrun("r", history=[entry("Pending", 1, 1), entry("Running", 2, 1)])
    assert attempt_spans(running["status"])[0].end is None
    waiting = taskrun("w", state="AwaitingRetry", history=[
        entry("Pending", 1, 1), entry("Running", 2, 1),
        entry("Failed", 3, 1, "boom", "Error"), entry("AwaitingRetry", 3, 1, "boom - retry")])
    spans = attempt_spans(waiting["status"])
    assert spans[0].end == parse_time(stamp(3)) and spans[0].state == "Failed"
    assert retry_waits(spans)[0].end is None


def test_describe_reads_the_same_spans() -> None:
    rows = attempts_of({"kind": "TaskRun", **retried_then_completed("a")})
    assert [row[:4] for row in rows] == [["1", "a-1", "AwaitingRetry", "DeadlineExceeded"],
                                         ["2", "a-2", "Completed", "-"]]
    assert rows[0][4] == "3s"


def test_timeline_rows_attempts_waits_cached_marker_and_running_bar() -> None:
    run = flowrun()
    tasks = [retried_then_completed("add-1-ab", task="add", run_name="add-1"), cached("add-2-cd"),
             taskrun("mul-0-ef", task="mul")]
    data = views.timeline(run, tasks, NOW)
    assert data["start"] == ms(0) and data["end"] is None and data["now"] == ms(30)
    rows = {row["id"]: row for row in data["rows"]}
    retried = rows["add-1-ab"]
    assert retried["label"] == "add-1" and retried["task"] == "add"
    assert retried["href"] == "/runs/team-a/etl-x/tasks/add-1-ab"
    assert retried["attempts"] == [
        {"n": 1, "start": ms(1), "end": ms(4), "state": "TimedOut", "reason": "DeadlineExceeded",
         "message": "attempt 1 timed out after 2s"},
        {"n": 2, "start": ms(7), "end": ms(9), "state": "Completed", "reason": None,
         "message": "Task run completed"}]
    assert retried["waits"] == [{"start": ms(4), "end": ms(7)}]
    assert retried["markers"] == []
    hit = rows["add-2-cd"]
    assert hit["attempts"] == [] and hit["state"] == "Cached"
    assert hit["markers"] == [{"at": ms(3), "kind": "cached", "label": "cache hit"}]
    running = rows["mul-0-ef"]
    assert running["attempts"][0]["end"] is None and running["attempts"][0]["state"] == "Running"
    json.dumps(data)  # plain JSON


def test_runs_view_filters_sorts_and_pages() -> None:
    runs = [flowrun(f"r-{i:03d}", namespace="a" if i % 2 else "b",
                    state="Failed" if i % 3 == 0 else "Completed") for i in range(120)]
    for i, run in enumerate(runs):
        run["metadata"]["creationTimestamp"] = stamp(i)
    view = views.runs_view(runs, NOW)
    assert view["total"] == 120 and view["pages"] == 3 and len(view["rows"]) == 50
    assert view["rows"][0]["name"] == "r-119"  # newest first
    assert view["choices"]["namespaces"] == ["a", "b"]
    failed_b = views.runs_view(runs, NOW, namespace="b", state="Failed", page=9)
    assert failed_b["page"] == failed_b["pages"] == 1
    assert {r["name"] for r in failed_b["rows"]} == {f"r-{i:03d}" for i in range(0, 120, 6)}
    row = view["rows"][0]
    assert row["href"] == "/runs/a/r-119" and row["flow"] == "etl"
    assert {"state": "Running", "n": 1} in row["counts"]


def test_parameters_are_shortened_on_the_runs_page_and_whole_on_the_run_page() -> None:
    run = flowrun(parameters={"day": "2026-01-01", "rows": list(range(100))})
    row = views.runs_view([run], NOW)["rows"][0]
    assert row["parameters"].startswith('day="2026-01-01", rows=[0, 1') and len(
        row["parameters"]) == 80
    page = views.flowrun_view(run, [], [], NOW)
    assert page["parameters_full"][0] == ("day", '"2026-01-01"')


def test_taskrun_view_attempts_pods_and_cache() -> None:
    view = views.taskrun_view(retried_then_completed("add-1-ab"), "etl-x", [], NOW)
    assert [(a["n"], a["pod"], a["state"], a["reason"], a["duration"], a["retried"])
            for a in view["attempts"]] == [(1, "add-1-ab-1", "TimedOut", "DeadlineExceeded",
                                            "3.0s", True),
                                           (2, "add-1-ab-2", "Completed", "-", "2.0s", False)]
    hit = views.taskrun_view(cached("add-2-cd"), "etl-x", [], NOW)
    assert hit["cache_hit"] and hit["cache_key"] == "k" and hit["attempts"] == []


def test_preview_json_pickled_primitives_and_refused_objects() -> None:
    shown = preview.preview_bytes(json.dumps({"a": [1, 2]}).encode())
    assert shown["kind"] == "json" and '"a": [' in shown["text"]
    prims = preview.preview_bytes(pickle.dumps({"n": 3, "t": (1, "x"), "b": b"\x00"}))
    assert prims["kind"] == "pickle" and "'n': 3" in prims["text"]
    refused = preview.preview_bytes(pickle.dumps(datetime(2026, 1, 1)))
    assert refused["kind"] == "pickle" and refused["text"] == ""
    assert "never unpickles objects" in refused["note"]


def test_preview_never_runs_a_pickles_code(tmp_path: object) -> None:
    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("executed!",))

    shown = preview.preview_bytes(pickle.dumps(Boom()))
    assert shown["text"] == "" and "not shown" in shown["note"]


def test_preview_reads_at_most_the_limit_and_cuts_the_text() -> None:
    store = MemoryResultStore()
    store.put("big", b"x" * (preview.READ_LIMIT + 10))
    assert preview.preview_result(store, "big")["kind"] == "large"
    store.put("long", json.dumps(["y" * 100] * 100).encode())
    long = preview.preview_result(store, "long")
    assert long["truncated"] and len(long["text"]) == preview.TEXT_LIMIT
    assert preview.preview_result(store, "missing")["note"].startswith("the result is not")
    assert preview.preview_result(None, "x")["note"].startswith("no result store")


def test_a_large_run_pages_its_task_table_and_filters_it_by_state() -> None:
    runs = [taskrun(f"add-{i:04d}", run_name=f"add-{i}",
                    state="Failed" if i % 10 == 0 else "Completed") for i in range(250)]
    view = views.flowrun_view(flowrun(), runs, [], NOW)
    table = view["task_table"]
    assert len(view["tasks"]) == views.TASKS_PER_PAGE == 100
    assert (table["total"], table["shown"], table["pages"]) == (250, 250, 3)
    assert table["states"] == [("Completed", 225), ("Failed", 25)]
    last = views.flowrun_view(flowrun(), runs, [], NOW, task_page=7)  # past the end: the last
    assert last["task_table"]["page"] == 3 and len(last["tasks"]) == 50
    assert (last["task_table"]["first"], last["task_table"]["last"]) == (201, 250)
    failed = views.flowrun_view(flowrun(), runs, [], NOW, task_state="Failed")
    assert failed["task_table"]["shown"] == 25 and failed["task_table"]["pages"] == 1
    assert {row["state"] for row in failed["tasks"]} == {"Failed"}


def test_a_retry_on_its_way_is_a_state_of_its_own_on_every_page() -> None:
    import re
    from pathlib import Path

    history = [entry("Pending", 1, 1), entry("Running", 2, 1), entry("Failed", 3, 1, "boom"),
               entry("AwaitingRetry", 3, 1, "retry 1/1 in 1s"),
               entry("Retrying", 4, 2, "Retry 1/1: starting attempt 2")]
    run = taskrun("add-0-ab", history=history, state="Retrying")
    [row] = views.timeline(flowrun(), [run], NOW)["rows"]
    assert [(a["n"], a["state"], a["end"]) for a in row["attempts"]] == [
        (1, "Failed", ms(3)), (2, "Retrying", None)]
    assert "Retrying" in views.runs_view([flowrun(state="Retrying")], NOW)["choices"]["states"]
    assert views.runs_view([flowrun(state="Retrying")], NOW, state="Retrying")["total"] == 1
    # The timeline script draws the same states as the server names (else "unknown" grey).
    script = (Path(views.__file__).parent / "static" / "timeline.js").read_text()
    found = re.search(r"const STATES = \[(.*?)\];", script, re.S)
    assert found is not None
    assert tuple(re.findall(r'"(\w+)"', found.group(1))) == views.STATES


def test_task_counts_follow_the_states_in_order() -> None:
    run = flowrun(taskRuns={"total": 4, "timedOut": 1, "awaitingRetry": 2, "completed": 1})
    assert views.runs_view([run], NOW)["rows"][0]["counts"] == [
        {"state": "AwaitingRetry", "n": 2}, {"state": "Completed", "n": 1},
        {"state": "TimedOut", "n": 1}]
