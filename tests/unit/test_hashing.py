"""Stable hashing: canonical JSON, the cloudpickle fallback, task keys, task_input_hash."""

from __future__ import annotations

import datetime
import decimal
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import Any

import pytest

from flowpod._common.hashing import (
    compute_task_key,
    hash_objects,
    source_text,
    stable_json,
    task_input_hash,
)
from flowpod.exceptions import UnhashableInputError

SAMPLES: list[Any] = [
    1,
    "text",
    {"b": [1, 2, {"z": None, "a": 1.5}], "a": "é"},
    {"tags": {"x", "y", "z", "w"}},
    b"\x00bytes",
    datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    decimal.Decimal("1.10"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    PurePosixPath("/a/b"),
    frozenset({1, 2, 3}),
]


def _hash_in_subprocess(seed: str) -> list[str]:
    code = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        "from test_hashing import SAMPLES; from flowpod._common.hashing import hash_objects; "
        "print(json.dumps([hash_objects(s) for s in SAMPLES]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    result: list[str] = json.loads(out.stdout)
    return result


def test_hashes_are_stable_across_processes() -> None:
    here = [hash_objects(sample) for sample in SAMPLES]
    assert all(isinstance(h, str) and len(h) == 64 for h in here)
    assert len(set(here)) == len(here)
    # Different hash seeds change set iteration order; the hashes must not change.
    assert _hash_in_subprocess("1") == here
    assert _hash_in_subprocess("987") == here


def test_dict_order_does_not_matter_but_content_does() -> None:
    assert hash_objects({"a": 1, "b": 2}) == hash_objects({"b": 2, "a": 1})
    assert hash_objects({"a": 1}) != hash_objects({"a": 2})
    assert hash_objects(1, 2) != hash_objects(2, 1)
    assert hash_objects("1") != hash_objects(1)
    assert hash_objects({1, 2}) != hash_objects([1, 2])
    assert hash_objects(b"ab") != hash_objects("ab")


def test_stable_json_is_canonical() -> None:
    assert stable_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert stable_json({"s": {"b", "a"}}) == stable_json({"s": {"a", "b"}})


class Point:
    def __init__(self, x: int) -> None:
        self.x = x


def test_non_json_values_fall_back_to_cloudpickle() -> None:
    first = hash_objects(Point(1))
    assert first is not None
    assert hash_objects(Point(1)) == first
    assert hash_objects(Point(2)) != first


def test_cyclic_values_fall_back_instead_of_failing() -> None:
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    assert hash_objects(cyclic) is not None


def test_unserialisable_values() -> None:
    lock = threading.Lock()
    assert hash_objects(lock) is None
    with pytest.raises(UnhashableInputError, match="lock") as info:
        hash_objects({"x": 1}, lock, raise_on_failure=True)
    assert isinstance(info.value.__cause__, TypeError)


def plain(x: int) -> int:
    return x + 1


def other(x: int) -> int:
    return x + 1


def test_task_key_shape_and_composition() -> None:
    key = compute_task_key("plain", plain, ["b", "a"])
    name, _, digest = key.rpartition("-")
    assert name == "plain" and len(digest) == 16 and int(digest, 16) >= 0
    assert compute_task_key("plain", plain, ["a", "b"]) == key  # tag order is irrelevant
    assert compute_task_key("plain", plain, {"a", "b"}) == key
    assert compute_task_key("plain", plain, ["a"]) != key
    assert compute_task_key("renamed", plain, ["a", "b"]).startswith("renamed-")
    assert compute_task_key("plain", other, ["a", "b"]) != key  # different qualname


def test_task_key_is_stable_across_processes(tmp_path: Path) -> None:
    (tmp_path / "keymod.py").write_text("def work(x):\n    return x\n")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import keymod; "
        "from flowpod._common.hashing import compute_task_key; "
        "print(compute_task_key('work', keymod.work, {'b', 'a', 'c'}))"
    )
    keys = {
        subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "42")
    }
    sys.path.insert(0, str(tmp_path))
    try:
        import keymod  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("keymod", None)
    assert keys == {compute_task_key("work", keymod.work, ["c", "a", "b"])}


def test_source_text_of_a_normal_function() -> None:
    assert source_text(plain).startswith("def plain(x: int) -> int:")
    assert "return x + 1" in source_text(plain)


def _exec_function(body: str) -> Any:
    namespace: dict[str, Any] = {}
    exec(f"def f(x):\n    def inner():\n        return x\n    return {body}\n", namespace)
    return namespace["f"]


def test_source_text_without_a_file_uses_bytecode_and_constants() -> None:
    one, same, different = _exec_function("x + 1"), _exec_function("x + 1"), _exec_function("x + 2")
    assert source_text(one) == source_text(same)
    assert source_text(one) != source_text(different)
    assert "0x" not in source_text(one)  # no memory addresses from nested code objects


def test_source_text_unwraps_methods_and_wrappers() -> None:
    import functools

    @functools.wraps(plain)
    def wrapper(x: int) -> int:
        return plain(x)

    assert source_text(wrapper) == source_text(plain)

    class Holder:
        def method(self) -> int:
            return 1

    assert "def method" in source_text(Holder().method)


def test_task_input_hash() -> None:
    context = SimpleNamespace(task=SimpleNamespace(task_key="plain-0123", fn=plain))
    first = task_input_hash(context, {"x": 1})
    assert isinstance(first, str) and len(first) == 64
    assert task_input_hash(context, {"x": 1}) == first
    assert task_input_hash(context, {"x": 2}) != first
    other_task = SimpleNamespace(task=SimpleNamespace(task_key="plain-0123", fn=other))
    assert task_input_hash(other_task, {"x": 1}) != first  # same key, different code
    assert task_input_hash(context, {"x": threading.Lock()}) is None
