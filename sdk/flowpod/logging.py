"""Run-aware logging: the console format, run loggers, ``get_run_logger`` and ``log_prints``.

Records of run loggers carry a label (``Task run 'get_url-0'`` / ``Flow run 'great-ammonite'``) that
the console formatter shows in place of the logger name::

    09:55:55.412 | INFO    | Task run 'get_url-0' - Finished in state Completed()

The console handler is attached to the ``flowpod`` logger the first time a run starts (never at
import and never on the root logger); its level follows the FLOWPOD_LOGGING_LEVEL setting.
``log_prints`` works by replacing ``builtins.print`` once with a function that consults a
ContextVar: inside a run with log_prints on, a print to stdout becomes an INFO record of the run's
logger.
"""

from __future__ import annotations

import builtins
import logging
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from flowpod.exceptions import MissingContextError

__all__ = [
    "FLOW_RUN_LOGGER_NAME",
    "LOG_FORMAT",
    "RunFormatter",
    "RunLoggerAdapter",
    "TASK_RUN_LOGGER_NAME",
    "disable_run_logger",
    "flow_run_logger",
    "get_logger",
    "get_run_logger",
    "task_run_logger",
]

LOG_FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(flowpod_label)s - %(message)s"
DATE_FORMAT = "%H:%M:%S"
ROOT_LOGGER_NAME = "flowpod"
TASK_RUN_LOGGER_NAME = "flowpod.task_runs"
FLOW_RUN_LOGGER_NAME = "flowpod.flow_runs"
ENGINE_LOGGER_NAME = "flowpod.engine"

_task_logger = logging.getLogger(TASK_RUN_LOGGER_NAME)
_flow_logger = logging.getLogger(FLOW_RUN_LOGGER_NAME)
_engine_logger = logging.getLogger(ENGINE_LOGGER_NAME)


class RunFormatter(logging.Formatter):
    """The console format: run records show their run label, others their logger name."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT, DATE_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "flowpod_label"):
            record.flowpod_label = record.name
        return super().format(record)


class _ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (so redirections and capture work)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


_configured_level: str | None = None
_handler: logging.Handler | None = None


def setup_logging() -> None:
    """Attach the console handler once and apply FLOWPOD_LOGGING_LEVEL when it changed.

    Called at the start of every run, so it must stay cheap: one settings lookup and a comparison.
    """
    global _configured_level, _handler
    from flowpod._common.settings import get_settings

    level = get_settings().logging_level.upper()
    if level == _configured_level:
        return
    root = logging.getLogger(ROOT_LOGGER_NAME)
    if _handler is None:
        _handler = _ConsoleHandler()
        _handler.setFormatter(RunFormatter())
        root.addHandler(_handler)
        # Our own handler shows the records; passing them up too would print them twice under a
        # user's basicConfig.
        root.propagate = False
    root.setLevel(level)
    _configured_level = level


def task_run_label(name: str) -> str:
    return f"Task run {name!r}"


def flow_run_label(name: str) -> str:
    return f"Flow run {name!r}"


class RunLoggerAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger bound to one run: its records carry the run's label and ids."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = kwargs.get("extra")
        kwargs["extra"] = dict(self.extra or {}, **(extra or {}))
        return msg, kwargs

    def getChild(self, suffix: str) -> RunLoggerAdapter:  # noqa: N802 - logging's own spelling
        return RunLoggerAdapter(self.logger.getChild(suffix), self.extra)


def task_run_logger(task_run: Any, task: Any = None, flow_run: Any = None) -> RunLoggerAdapter:
    """The logger of a task run (records labelled ``Task run '<name>'``)."""
    extra: dict[str, Any] = {
        "flowpod_label": task_run_label(task_run.name),
        "task_run_id": str(task_run.id),
        "task_run_name": task_run.name,
        "task_name": task_run.task_name,
    }
    if flow_run is not None:
        extra["flow_run_id"] = str(flow_run.id)
        extra["flow_run_name"] = flow_run.name
    return RunLoggerAdapter(_task_logger, extra)


def flow_run_logger(flow_run: Any, flow: Any = None) -> RunLoggerAdapter:
    """The logger of a flow run (records labelled ``Flow run '<name>'``)."""
    extra = {
        "flowpod_label": flow_run_label(flow_run.name),
        "flow_run_id": str(flow_run.id),
        "flow_run_name": flow_run.name,
        "flow_name": flow_run.flow_name,
    }
    return RunLoggerAdapter(_flow_logger, extra)


_disabled: ContextVar[bool] = ContextVar("flowpod_run_logger_disabled", default=False)
_disabled_logger = logging.getLogger("flowpod.disabled")
_disabled_logger.disabled = True  # drops every record, whatever the levels say


def get_run_logger(context: Any = None, **extra: Any) -> logging.LoggerAdapter:  # type: ignore[type-arg]
    """The logger of the current task run, else of the current flow run.

    Outside a run this raises MissingContextError; use ``flowpod.logging.get_logger()`` there.
    """
    from flowpod.context import FlowRunContext, TaskRunContext

    if context is None:
        context = TaskRunContext.get() or FlowRunContext.get()
    if _disabled.get():
        return RunLoggerAdapter(_disabled_logger, {"flowpod_label": "disabled"})
    if isinstance(context, TaskRunContext):
        flow_ctx = FlowRunContext.get()
        adapter = task_run_logger(
            context.task_run, context.task, flow_ctx.flow_run if flow_ctx else None
        )
    elif isinstance(context, FlowRunContext):
        adapter = flow_run_logger(context.flow_run, context.flow)
    else:
        raise MissingContextError(
            "get_run_logger() was called outside a flow or task run, so there is no run to log "
            "for. Call it inside a function decorated with @flow or @task, or use "
            "flowpod.logging.get_logger(name) (a plain logger) elsewhere."
        )
    if extra:
        adapter.extra = {**(adapter.extra or {}), **extra}
    return adapter


def get_logger(name: str | None = None) -> logging.Logger:
    """A plain logger under ``flowpod`` (``get_logger("x")`` is ``flowpod.x``)."""
    return logging.getLogger(ROOT_LOGGER_NAME if not name else f"{ROOT_LOGGER_NAME}.{name}")


@contextmanager
def disable_run_logger() -> Iterator[None]:
    """Within the block, ``get_run_logger()`` returns a logger that emits nothing useful."""
    token = _disabled.set(True)
    try:
        yield
    finally:
        _disabled.reset(token)


# -- log_prints ---------------------------------------------------------------------------------

_print_target: ContextVar[logging.LoggerAdapter | None] = ContextVar(  # type: ignore[type-arg]
    "flowpod_print_target", default=None
)
_original_print = builtins.print
_print_patched = False


def _print(*args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None,
           flush: bool = False) -> None:
    target = _print_target.get()
    if target is None or (file is not None and file is not sys.stdout):
        _original_print(*args, sep=sep, end=end, file=file, flush=flush)
        return
    text = (" " if sep is None else sep).join(str(arg) for arg in args)
    target.info(text, extra={"flowpod_print": True})


def printing_active() -> bool:
    """True inside a block where print() is being turned into log records."""
    return _print_target.get() is not None


@contextmanager
def printing_to(logger: logging.LoggerAdapter | None) -> Iterator[None]:  # type: ignore[type-arg]
    """Within the block, print() to stdout logs at INFO on ``logger`` (None: print normally)."""
    global _print_patched
    if not _print_patched:
        builtins.print = _print
        _print_patched = True
    token = _print_target.set(logger)
    try:
        yield
    finally:
        _print_target.reset(token)


def log_engine(
    logger: logging.Logger, level: int, label: str, msg: str, *args: Any,
    exc_info: Any = None, extra: Mapping[str, Any] | None = None,
) -> None:
    """Emit one engine record labelled for a run, formatting nothing when the level is off."""
    if logger.isEnabledFor(level):
        fields = {"flowpod_label": label}
        if extra:
            fields.update(extra)
        logger.log(level, msg, *args, exc_info=exc_info, extra=fields)


TASK_LOGGER = _task_logger
FLOW_LOGGER = _flow_logger
ENGINE_LOGGER = _engine_logger
