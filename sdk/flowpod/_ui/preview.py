"""A bounded, safe preview of a stored result, for the dashboard.

At most ``READ_LIMIT`` bytes are read from the store. JSON is shown pretty-printed; a pickle is
loaded by ``_Primitives``, an ``Unpickler`` whose ``find_class`` refuses every global, so only
what pickle builds from its own opcodes (None, bools, numbers, strings, bytes, lists, tuples,
dicts, sets) can load and no code of the pickle's choosing runs. Anything else (a class
instance, a dataframe, a cloudpickled function) is described by its size, never loaded. The
text shown is cut at ``TEXT_LIMIT`` characters.

Also the dashboard's own view of the result store (``StoreCache``): a reader's store
(``flowpod._kube.storage_views.reader_store``: ``FLOWPOD_S3_*`` first, else the run's
``spec.storage``), one per storage, reused; None when there is none or the settings are
unusable (the page says logs and results are unavailable).
"""

from __future__ import annotations

import io
import json
import pickle
import pprint
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowpod._storage import ResultStore

__all__ = ["READ_LIMIT", "TEXT_LIMIT", "StoreCache", "preview_bytes", "preview_result"]

READ_LIMIT = 256 * 1024
TEXT_LIMIT = 4000


class _Refused(pickle.UnpicklingError):
    pass


class _Primitives(pickle.Unpickler):
    """Loads only what needs no global: ``find_class`` refuses every module and name."""

    def find_class(self, module: str, name: str) -> Any:
        raise _Refused(f"{module}.{name}")


def _cut(text: str) -> tuple[str, bool]:
    if len(text) <= TEXT_LIMIT:
        return text, False
    return text[:TEXT_LIMIT], True


def _pretty(value: Any) -> str:
    try:
        return json.dumps(value, indent=2, ensure_ascii=False)
    except (TypeError, ValueError):  # bytes, sets, tuples as keys: Python's own notation
        return pprint.pformat(value, width=100)


def preview_bytes(data: bytes, complete: bool = True) -> dict[str, Any]:
    """``{"kind", "text", "truncated", "note"}`` for a stored value's first bytes (``complete``
    False: there was more than ``READ_LIMIT``)."""
    size = f"{len(data):,} bytes" if complete else f"more than {READ_LIMIT // 1024} KiB"
    if not complete:
        return {"kind": "large", "text": "", "truncated": True,
                "note": f"a value of {size}; not shown"}
    if data[:1] == b"\x80":  # the pickle protocol opcode (protocol 2 and later)
        try:
            value = _Primitives(io.BytesIO(data)).load()
        except _Refused:
            return {"kind": "pickle", "text": "", "truncated": False,
                    "note": f"a pickled {len(data):,} bytes value; not shown (the dashboard "
                            "never unpickles objects)"}
        except Exception:  # noqa: BLE001 - not a pickle after all, or a damaged one
            pass
        else:
            text, cut = _cut(_pretty(value))
            return {"kind": "pickle", "text": text, "truncated": cut, "note": size}
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        pass
    else:
        text, cut = _cut(json.dumps(value, indent=2, ensure_ascii=False))
        return {"kind": "json", "text": text, "truncated": cut, "note": size}
    try:
        text, cut = _cut(data.decode("utf-8"))
    except UnicodeDecodeError:
        return {"kind": "binary", "text": "", "truncated": False,
                "note": f"{size} of binary data; not shown"}
    return {"kind": "text", "text": text, "truncated": cut, "note": size}


def preview_result(store: ResultStore | None, ref: str) -> dict[str, Any]:
    """The preview of the value under ``ref`` (a status.resultRef)."""
    if not ref:
        return {"kind": "none", "text": "", "truncated": False, "note": "no result"}
    if store is None:
        return {"kind": "none", "text": "", "truncated": False,
                "note": "no result store configured (set FLOWPOD_S3_*)"}
    from flowpod.exceptions import ResultNotFound

    try:
        with store.open_read(ref) as handle:
            data = handle.read(READ_LIMIT + 1)
    except ResultNotFound:
        return {"kind": "none", "text": "", "truncated": False,
                "note": "the result is not in the store (expired or deleted)"}
    except Exception as exc:  # noqa: BLE001 - the store is down: the page still renders
        return {"kind": "error", "text": "", "truncated": False,
                "note": f"the store could not be read: {type(exc).__name__}"}
    return preview_bytes(data[:READ_LIMIT], complete=len(data) <= READ_LIMIT)


class StoreCache:
    """This process's view of each run's result store, made once per storage."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stores: dict[str, ResultStore | None] = {}

    def __call__(self, storage: Mapping[str, Any] | None) -> ResultStore | None:
        key = json.dumps(storage, sort_keys=True, default=str)
        with self._lock:
            if key in self._stores:
                return self._stores[key]
        store = self._make(storage)
        with self._lock:
            self._stores[key] = store
        return store

    @staticmethod
    def _make(storage: Mapping[str, Any] | None) -> ResultStore | None:
        from flowpod._kube.storage_views import reader_store

        try:
            return reader_store(storage)
        except ValueError:  # malformed settings: no store, the page says so
            return None
