"""Key -> bytes stores: the ``ResultStore`` interface, a local folder and a dict.

``ResultStore`` is deliberately small (four abstract methods: ``open_read``, ``open_write``,
``exists``, ``delete``) so that an S3 backend (``flowpod._storage.s3``) only has to map streaming
reads onto GetObject and streaming writes onto a multipart upload; ``put``/``get`` and the chunked
copies are built on those. ``LocalResultStore`` is the embedded default: a folder, one file per
key, every write atomic (a temp file in the same folder, then ``os.replace``), so readers never see
half an object. ``MemoryResultStore`` is a dict, for tests.
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO

from flowpod._contract.keys import validate_key
from flowpod.exceptions import ResultNotFound

__all__ = ["CHUNK_SIZE", "LocalResultStore", "MemoryResultStore", "ResultStore"]

CHUNK_SIZE = 1024 * 1024
"""Streaming copies move at most this many bytes at a time."""


class ResultStore(ABC):
    """A key -> bytes store. Keys are '/'-separated relative paths (see ``validate_key``)."""

    @abstractmethod
    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A readable stream of the object; raises ResultNotFound when there is none."""

    @abstractmethod
    def open_write(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A writable stream; the object appears (atomically) only if the block exits cleanly."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""

    def put(self, key: str, data: bytes) -> None:
        with self.open_write(key) as stream:
            stream.write(data)

    def get(self, key: str) -> bytes:
        with self.open_read(key) as stream:
            return stream.read()

    def put_stream(self, key: str, source: BinaryIO, chunk_size: int = CHUNK_SIZE) -> None:
        """Store everything ``source`` yields, ``chunk_size`` bytes at a time."""
        with self.open_write(key) as stream:
            shutil.copyfileobj(source, stream, chunk_size)

    def get_stream(self, key: str, target: BinaryIO, chunk_size: int = CHUNK_SIZE) -> None:
        """Copy the object into ``target``, ``chunk_size`` bytes at a time."""
        with self.open_read(key) as stream:
            shutil.copyfileobj(stream, target, chunk_size)


_temp_counter = itertools.count()


class LocalResultStore(ResultStore):
    """A folder on the local disk; one file per key."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"LocalResultStore({str(self.root)!r})"

    def path_for(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _missing(self, key: str) -> ResultNotFound:
        return ResultNotFound(f"no object stored under {key!r} in {self.root}")

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        try:
            stream = open(self.path_for(key), "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise self._missing(key) from None
        with stream:
            yield stream

    def _create_temp(self, path: Path) -> tuple[int, str]:
        """A new temp file next to ``path`` (same folder: os.replace is then an atomic rename).

        Named by process, thread and a counter rather than tempfile.mkstemp: unique all the
        same, and it saves a third of the cost of a small write.
        """
        tmp = f"{path.parent}/.{path.name[:40]}.{os.getpid()}.{threading.get_ident()}."
        tmp += f"{next(_temp_counter)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        try:
            return os.open(tmp, flags, 0o644), tmp
        except FileNotFoundError:  # first object in this folder
            path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(tmp, flags, 0o644), tmp

    @contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        path = self.path_for(key)
        fd, tmp = self._create_temp(path)
        try:
            with os.fdopen(fd, "wb") as stream:
                yield stream
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put(self, key: str, data: bytes) -> None:
        # The common small write without a buffered stream object around it.
        path = self.path_for(key)
        fd, tmp = self._create_temp(path)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self.path_for(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise self._missing(key) from None

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def delete(self, key: str) -> None:
        self.path_for(key).unlink(missing_ok=True)


class MemoryResultStore(ResultStore):
    """A dict in this process: for tests, and to keep the interface honest about what it needs."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self._guard = threading.Lock()

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        import io

        with self._guard:
            data = self.objects.get(validate_key(key))
        if data is None:
            raise ResultNotFound(f"no object stored under {key!r} in memory")
        with io.BytesIO(data) as stream:
            yield stream

    @contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        import io

        validate_key(key)
        with io.BytesIO() as stream:
            yield stream
            data = stream.getvalue()
        with self._guard:
            self.objects[key] = data

    def exists(self, key: str) -> bool:
        with self._guard:
            return validate_key(key) in self.objects

    def delete(self, key: str) -> None:
        with self._guard:
            self.objects.pop(validate_key(key), None)
