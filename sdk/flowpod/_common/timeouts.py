"""Stopping a run's code at its deadline.

Three mechanisms, chosen by where the code runs:

- sync code in the main thread: a SIGALRM timer (``setitimer``) whose handler raises inside the
  running code, which interrupts even ``time.sleep``. Scopes nest (a task timeout inside a flow
  timeout): the timer is always armed for the earliest pending deadline.
- sync code in any other thread (the task runner's workers): signals only reach the main thread, so
  the body runs in a helper thread. At the deadline the caller gets control back at once and the
  helper receives an asynchronous exception (``PyThreadState_SetAsyncExc``), raised at its next
  bytecode: a blocking call finishes, but the statement after it never runs.
- async code: ``asyncio.timeout``, which cancels the awaiting coroutine.

Each raises ``Deadline`` (a BaseException, so user code's ``except Exception`` cannot swallow it);
callers turn it into TaskRunTimeoutError / FlowRunTimeoutError.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["Deadline", "await_with_timeout", "call_with_timeout"]

T = TypeVar("T")


class Deadline(BaseException):  # noqa: N818 - an interruption, not an error users handle
    """Raised inside code whose deadline passed."""


class _Scope:
    __slots__ = ("deadline", "fired")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fired = False


class _MainThreadAlarm:
    """The nested SIGALRM scopes of the main thread."""

    def __init__(self) -> None:
        self.scopes: list[_Scope] = []
        self.previous_handler: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        expired = [s for s in self.scopes if not s.fired and s.deadline <= now + 0.0005]
        if not expired:
            self._arm()
            return
        # The outermost expired scope wins: an inner scope cannot handle a deadline of an outer one.
        expired[0].fired = True
        self._arm()
        raise Deadline()

    def _arm(self) -> None:
        pending = [s.deadline for s in self.scopes if not s.fired]
        if not pending:
            signal.setitimer(signal.ITIMER_REAL, 0)
            return
        signal.setitimer(signal.ITIMER_REAL, max(min(pending) - time.monotonic(), 1e-4))

    @contextmanager
    def scope(self, seconds: float) -> Iterator[_Scope]:
        if not self.scopes:
            self.previous_handler = signal.signal(signal.SIGALRM, self._handler)
        scope = _Scope(time.monotonic() + seconds)
        self.scopes.append(scope)
        self._arm()
        try:
            yield scope
        finally:
            self.scopes.remove(scope)
            self._arm()
            if not self.scopes:
                signal.signal(signal.SIGALRM, self.previous_handler or signal.SIG_DFL)


_alarm = _MainThreadAlarm()


def _can_use_signals() -> bool:
    if not hasattr(signal, "setitimer"):
        return False  # not POSIX: helper threads everywhere
    if threading.current_thread() is not threading.main_thread():
        return False
    # Someone else's SIGALRM timer is running: do not steal it.
    if not _alarm.scopes and signal.getitimer(signal.ITIMER_REAL)[0] > 0:
        return False
    handler = signal.getsignal(signal.SIGALRM)
    return handler in (signal.SIG_DFL, signal.SIG_IGN, None) or bool(_alarm.scopes)


def call_with_timeout(
    fn: Callable[[], T], seconds: float, make_error: Callable[[], BaseException]
) -> T:
    """``fn()``; if it is still running after ``seconds``, stop it and raise ``make_error()``.

    A Deadline of an enclosing scope passes through unchanged.
    """
    if _can_use_signals():
        scope: _Scope | None = None
        # The except clause wraps the whole block: the alarm may also land while the scope is
        # being closed, just after fn returned.
        try:
            with _alarm.scope(seconds) as scope:
                return fn()
        except Deadline:
            if scope is not None and scope.fired:
                raise make_error() from None
            raise
    try:
        return _call_in_helper_thread(fn, seconds)
    except _HelperDeadline:
        raise make_error() from None


class _HelperDeadline(Exception):
    """The helper thread missed its deadline (raised in the caller, never in user code)."""


def _inject(thread_id: int, exc_type: type[BaseException]) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type)
    )


def _call_in_helper_thread(fn: Callable[[], T], seconds: float) -> T:
    context = contextvars.copy_context()
    lock = threading.Lock()
    finished = threading.Event()
    outcome: dict[str, Any] = {}
    status = {"done": False, "timed_out": False}

    def runner() -> None:
        try:
            try:
                outcome["value"] = context.run(fn)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller as is
                outcome["error"] = exc
            with lock:
                if not status["timed_out"]:
                    status["done"] = True
                    finished.set()
                    return
            # The caller gave up on us and an asynchronous Deadline is on its way (unless it
            # already arrived inside fn): absorb it here rather than let it escape into
            # threading's bootstrap.
            if not isinstance(outcome.get("error"), Deadline):
                for _ in range(1000):
                    time.sleep(0.001)
        except Deadline:
            pass

    helper = threading.Thread(target=runner, name="flowpod-timeout", daemon=True)
    helper.start()
    if not finished.wait(seconds):
        with lock:
            if not status["done"]:
                status["timed_out"] = True
                if helper.ident is not None:
                    _inject(helper.ident, Deadline)
        if status["timed_out"]:
            raise _HelperDeadline()
    if "error" in outcome:
        error = outcome["error"]
        raise error
    return outcome["value"]  # type: ignore[no-any-return]


async def await_with_timeout(
    awaitable: Awaitable[T], seconds: float, make_error: Callable[[], BaseException]
) -> T:
    """``await awaitable``; cancelled after ``seconds``, then ``make_error()`` is raised."""
    cm = asyncio.timeout(seconds)
    try:
        async with cm:
            return await awaitable
    except TimeoutError:
        if cm.expired():
            raise make_error() from None
        raise
