"""Label values: one function for every side, valid for any object name."""

from __future__ import annotations

import re

from flowpod._contract.labels import label_value

VALID = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def test_short_names_are_kept() -> None:
    assert label_value("repo-stats-x7k2") == "repo-stats-x7k2"


def test_long_names_become_valid_distinct_values() -> None:
    first = "a" * 100 + ".flows.example"
    second = "a" * 100 + ".flows.other"
    assert len(label_value(first)) <= 63 and VALID.fullmatch(label_value(first))
    assert label_value(first) != label_value(second)
    assert label_value(first) == label_value(first)  # the selector side computes the same


def test_odd_characters_are_replaced() -> None:
    value = label_value("get url / page 2")
    assert VALID.fullmatch(value) and len(value) <= 63
