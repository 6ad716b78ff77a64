"""The loop shared by the operator's controllers: one reconcile at a time per object, retries
with backoff when a reconcile fails, and one timer per object for "look again later".

A controller (TaskRuns in ``handlers``, FlowRuns in ``flowruns``) subclasses ``KeyedLoop`` and
supplies ``_reconcile_locked`` (observe, decide, act) and ``_tracks`` (whether it still knows the
object). Blocking calls (the Kubernetes client, boto3) go to the shared thread pool via ``_call``.
With ``max_in_flight``, watch events do not wait for their reconcile: ``enqueue`` puts the key
in a ready queue (once, however many events arrive meanwhile: they coalesce) that
``max_in_flight`` tasks work through. kopf's per-object worker then returns at once and drops the
raw event, so a burst of thousands of new objects holds one small record each, not one raw body
and one suspended handler each; and at most ``max_in_flight`` reconciles compete for the API
threads at a time.
Both kinds of run own one pod per attempt, so the loop also keeps the pods as last seen
(``GONE``: known not to exist) and why the last pod create was refused, and creates and reads
attempt pods the same way for both.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

from flowpod_operator.kube import ApiError
from flowpod_operator.problems import Trouble, create_refusal

__all__ = ["ERROR_BACKOFF", "GONE", "Key", "KeyedLoop", "newer", "resource_version",
           "strictly_newer"]

_T = TypeVar("_T")
Key = tuple[str, str]
ERROR_BACKOFF = (0.5, 1, 2, 5, 10, 30)
"""Seconds before retrying a reconcile that raised (API or store unreachable), by failure count."""

GONE: dict[str, Any] = {}
"""The pod as last seen when it is known not to exist (deleted, or a create was refused)."""


def resource_version(body: dict[str, Any]) -> int | None:
    try:
        return int(body.get("metadata", {}).get("resourceVersion", ""))
    except ValueError:
        return None


def newer(candidate: dict[str, Any], current: dict[str, Any] | None) -> bool:
    """Whether ``candidate`` is at least as recent as ``current`` (resourceVersions are etcd
    revisions in practice; when they are not numbers, the newest arrival wins)."""
    if current is None or current is GONE:
        return True
    new, old = resource_version(candidate), resource_version(current)
    return new is None or old is None or new >= old


def strictly_newer(candidate: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether ``candidate`` is a later version than ``current`` (not the same one again, e.g.
    the watch echoing a write whose answer is already in hand)."""
    new, old = resource_version(candidate), resource_version(current)
    if new is None or old is None:
        return bool(candidate.get("metadata", {}).get("resourceVersion") != current.get(
            "metadata", {}).get("resourceVersion"))
    return new > old


class KeyedLoop(abc.ABC):
    """Per-object locks, timers and error backoff around a controller's reconcile."""

    def __init__(self, executor: ThreadPoolExecutor, kind: str, logger: logging.Logger,
                 max_in_flight: int | None = None) -> None:
        self.executor = executor
        self.max_in_flight = max_in_flight
        self._ready: asyncio.Queue[Key] | None = None
        self._queued: set[Key] = set()
        self._busy = 0
        self._kind = kind
        self._logger = logger
        self._locks: dict[Key, asyncio.Lock] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._errors: dict[Key, int] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.pods: dict[Key, dict[str, Any]] = {}
        # Why the last create of a run's pod was refused (forgotten once one is created).
        self.troubles: dict[Key, Trouble] = {}

    @abc.abstractmethod
    async def _reconcile_locked(self, key: Key) -> None:
        """Bring the object's world in line with what was observed (holding its lock)."""

    @abc.abstractmethod
    def _tracks(self, key: Key) -> bool:
        """Whether the object still exists as far as this controller knows."""

    def _keep_pod(self, body: dict[str, Any]) -> dict[str, Any]:
        """What is remembered of a pod read or created (a controller may keep less)."""
        return body

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(fn, *args))

    def _drop_key(self, key: Key) -> None:
        """Forget the loop's own state of an object that is gone."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._errors.pop(key, None)
        self._locks.pop(key, None)

    # -- attempt pods ----------------------------------------------------------------------------

    async def _observe_pod(self, namespace: str, name: str,
                           read: Callable[[str, str], dict[str, Any] | None]
                           ) -> dict[str, Any] | None:
        """The pod ``namespace/name`` as last seen; not seen on the watch yet (just started,
        or the watch lags): ask once."""
        seen = self.pods.get((namespace, name))
        if seen is None:
            seen = await self._call(read, namespace, name)
            if seen is not None:
                seen = self._keep_pod(seen)
            self.pods[(namespace, name)] = seen if seen is not None else GONE
        return None if seen is GONE else seen

    async def _create_pod(self, key: Key, manifest: dict[str, Any], attempt: int,
                          create: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Create the pod of ``attempt`` (an existing one is adopted); a refusal is recorded
        as the run's trouble and the run reconciled at once, so its status says why."""
        pod_key = (key[0], manifest["metadata"]["name"])
        try:
            created = await self._call(create, manifest)
        except ApiError as exc:
            if exc.status >= 500 or exc.status == 429:
                raise  # the API server's own trouble: the error backoff tries again
            refusal = create_refusal(exc.status, exc.body, pod_key[1])
            self.troubles[key] = replace(refusal, attempt=attempt)
            self.pods[pod_key] = GONE
            self.schedule(key, 0.0)
            return
        self.troubles.pop(key, None)
        if newer(created, self.pods.get(pod_key)):
            self.pods[pod_key] = self._keep_pod(created)

    # -- scheduling -----------------------------------------------------------------------------

    def schedule(self, key: Key, after_s: float) -> None:
        """Reconcile ``key`` again in ``after_s`` seconds (replacing an earlier schedule)."""
        loop = asyncio.get_running_loop()
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        self._timers[key] = loop.call_later(max(after_s, 0.0), self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        if self.max_in_flight:
            self.enqueue(key)
        else:
            self._spawn(self.reconcile(key))

    # -- the ready queue (with max_in_flight) ------------------------------------------------------

    async def reconcile_soon(self, key: Key) -> None:
        """Reconcile ``key``: queued when the loop has a ready queue, else now."""
        if self.max_in_flight:
            self.enqueue(key)
        else:
            await self.reconcile(key)

    def enqueue(self, key: Key) -> None:
        """Queue ``key`` for a reconcile, unless it is queued already (events coalesce)."""
        if key in self._queued:
            return
        if self._ready is None:
            self._ready = asyncio.Queue()
            for _ in range(self.max_in_flight or 1):
                self._spawn(self._drain(self._ready))
        self._queued.add(key)
        self._ready.put_nowait(key)

    async def _drain(self, ready: asyncio.Queue[Key]) -> None:
        while True:
            key = await ready.get()
            # Taken off the queue before the reconcile: an event arriving during it queues the
            # key again, so nothing observed meanwhile is missed.
            self._queued.discard(key)
            self._busy += 1
            try:
                await self.reconcile(key)
            finally:
                self._busy -= 1

    def idle(self) -> bool:
        """Nothing queued and no queued reconcile running (tests and benchmarks wait on it)."""
        return not self._queued and self._busy == 0

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- reconciliation -------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> None:
        if not self._tracks(key):
            return  # finished or gone (a late timer): no lock to create, nothing to do
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            try:
                await self._reconcile_locked(key)
            except Exception as exc:  # noqa: BLE001 - retried with backoff, never lost
                count = self._errors.get(key, 0)
                self._errors[key] = count + 1
                delay = ERROR_BACKOFF[min(count, len(ERROR_BACKOFF) - 1)]
                self._logger.warning("%s %s/%s: %s: %s (trying again in %s s)", self._kind,
                                     key[0], key[1], type(exc).__name__, exc, delay)
                if self._tracks(key):
                    self.schedule(key, delay)
            else:
                self._errors.pop(key, None)
