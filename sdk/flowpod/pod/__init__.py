"""The program inside flowpod's pods: ``python -m flowpod.pod task|flow <ns>/<name> --attempt N``.

The operator starts one pod per attempt of a TaskRun (``task``) or of a FlowRun (``flow``, see
``_flow``) with this command. The pod needs no
Kubernetes API access: its arguments name the TaskRun and attempt, its environment names the
result store (``FLOWPOD_S3_BUCKET`` / ``_PREFIX`` / ``_ENDPOINT`` / ``_REGION`` and AWS
credentials, or ``FLOWPOD_STORE_PATH`` for a local folder, which the tests use), and the store holds
the payload. Logs go to stdout in flowpod's console format (``kubectl logs`` shows them). The exit
code is 0 when the attempt Completed and 1 otherwise (after the outcome was written); 2 means the
command line or the store configuration is wrong, and no outcome could be written.

Whatever the pod prints (stdout and stderr) is also kept and uploaded at exit to
``runs/<ns>/<name>/log-<attempt>.txt``, so ``flowpod logs`` works after the pod is gone.

SIGTERM (the pod deleted, cancelled, or past its deadline) ends the process at once with exit
code 143 after uploading the log so far. The handler is needed, not a nicety: in a container this
program is PID 1, and the kernel ignores signals PID 1 has no handler for, so without it every
deleted pod would wait out its grace period until SIGKILL.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from flowpod._contract.keys import log_key
from flowpod._storage import LocalResultStore, S3StoreError, StorageConfig
from flowpod.logging import RunFormatter, setup_logging

if TYPE_CHECKING:
    from flowpod._contract.records import Outcome
    from flowpod._storage import ResultStore

__all__ = ["STORE_PATH_VAR", "main", "store_for_pod"]

STORE_PATH_VAR = "FLOWPOD_STORE_PATH"
"""A local folder used as the result store instead of S3 (tests, single-machine setups)."""
TERMINATION_LOG = "/dev/termination-log"
"""Where the kubelet reads a container's termination message (the pod spec's default path)."""

EXIT_COMPLETED = 0
EXIT_NOT_COMPLETED = 1
EXIT_USAGE = 2
# How long a pod keeps trying a store that does not answer before it gives up (exit 75, and the
# operator retries the attempt): an outage of a few minutes is waited out in place, so it costs no
# extra pod. The pod's own deadline still bounds it.
POD_STORE_RETRY_BUDGET_S = 300.0
# The store was unreachable (EX_TEMPFAIL): no outcome, an infrastructure failure to retry.
EXIT_STORE_UNAVAILABLE = 75
EXIT_TERMINATED = 128 + signal.SIGTERM


class PodConfigurationError(Exception):
    """The pod's arguments or environment are unusable; the message says how to fix them."""


def store_for_pod() -> ResultStore:
    """The store this pod's environment names: ``FLOWPOD_STORE_PATH``, else S3 from the env."""
    from flowpod._common.settings import get_settings

    path = get_settings().store_path
    if path is not None:
        return LocalResultStore(path)

    config = StorageConfig.from_env()
    store = config.to_store(retry_budget_seconds=POD_STORE_RETRY_BUDGET_S) if config else None
    if store is None:
        raise PodConfigurationError(
            "no result store configured: set FLOWPOD_S3_BUCKET (with FLOWPOD_S3_ENDPOINT, "
            f"FLOWPOD_S3_PREFIX and AWS credentials as needed) or {STORE_PATH_VAR}=<folder>"
        )
    return store


def _parse_target(target: str) -> tuple[str, str]:
    namespace, sep, name = target.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise PodConfigurationError(
            f"expected <namespace>/<taskrun>, got {target!r} (e.g. 'default/add-0-x7k2')"
        )
    return namespace, name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flowpod.pod", description="Run one attempt of a flowpod run in this pod."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    task = commands.add_parser("task", help="run one attempt of a TaskRun")
    task.add_argument("target", help="<namespace>/<taskrun>")
    task.add_argument("--attempt", type=int, required=True, help="attempt number, from 1")
    flow = commands.add_parser("flow", help="run one attempt of a FlowRun")
    flow.add_argument("target", help="<namespace>/<flowrun>")
    flow.add_argument("--attempt", type=int, required=True, help="attempt number, from 1")
    return parser


class _Tee(io.TextIOBase):
    """Writes through to the real stream and keeps a copy for the log upload."""
    def __init__(self, stream: TextIO, copy: io.StringIO, guard: threading.Lock) -> None:
        self._stream = stream
        self._copy = copy
        self._guard = guard

    def write(self, text: str) -> int:
        with self._guard:
            self._copy.write(text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8") or "utf-8"


def _capture_output() -> io.StringIO:
    copy = io.StringIO()
    guard = threading.Lock()
    sys.stdout = _Tee(sys.stdout, copy, guard)
    sys.stderr = _Tee(sys.stderr, copy, guard)
    return copy


def _upload_log(store: ResultStore, namespace: str, name: str, attempt: int,
                copy: io.StringIO) -> None:
    """Best effort: a log that cannot be stored must not change the attempt's result."""
    sys.stdout.flush()
    try:
        store.put(log_key(namespace, name, attempt), copy.getvalue().encode("utf-8", "replace"))
    except Exception as exc:  # noqa: BLE001 - logged, the outcome is already written
        sys.__stderr__.write(f"flowpod: could not upload the pod's log: {exc}\n")  # type: ignore[union-attr]


def _exit_on_sigterm(store: ResultStore, namespace: str, name: str, attempt: int,
                     copy: io.StringIO) -> Any:
    """On SIGTERM: note it, upload the log so far, and exit 143 without unwinding the attempt
    (the operator judges it from the pod's status, as it would a process the signal killed).
    Returns the handler it replaced (None: one not set from Python), or False when it set none."""
    def terminated(signum: int, frame: object) -> None:
        logging.getLogger("flowpod.pod").warning(
            "received SIGTERM (pod deleted, run cancelled or deadline exceeded): stopping")
        _upload_log(store, namespace, name, attempt, copy)
        sys.__stdout__.flush()  # type: ignore[union-attr]
        os._exit(EXIT_TERMINATED)

    if threading.current_thread() is not threading.main_thread():
        return False  # signal handlers can only be set from the main thread
    return signal.signal(signal.SIGTERM, terminated)


def _tell_the_kubelet(outcome: Outcome) -> None:
    """Best effort: the outcome (already in the store) as the container's termination message,
    which the kubelet copies into the pod's status: the operator then reads it there, from the
    pod event it handles anyway, instead of one store read per attempt. Outside a pod (no such
    file: the kubelet creates it) nothing is written."""
    path = os.environ.get("FLOWPOD_TERMINATION_LOG", TERMINATION_LOG)
    message = outcome.to_termination_message()
    if message is None or not os.path.exists(path):
        return
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(message)
    except OSError as exc:
        sys.__stderr__.write(f"flowpod: could not write the termination message: {exc}\n")  # type: ignore[union-attr]


def _log_to_stdout() -> None:
    """flowpod's console handler, on stdout: a pod's stdout is what ``kubectl logs`` shows."""
    setup_logging()
    root = logging.getLogger("flowpod")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(RunFormatter())
    root.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    saved = sys.stdout, sys.stderr
    copy = _capture_output()
    try:
        return _main(args, copy)
    finally:
        sys.stdout, sys.stderr = saved


def _main(args: argparse.Namespace, copy: io.StringIO) -> int:
    _log_to_stdout()
    log = logging.getLogger("flowpod.pod")
    try:
        namespace, name = _parse_target(args.target)
        if args.attempt < 1:
            raise PodConfigurationError(f"--attempt counts from 1, got {args.attempt}")
        store = store_for_pod()
    except PodConfigurationError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    previous = _exit_on_sigterm(store, namespace, name, args.attempt, copy)
    try:
        # Only the command's own module: a task pod never loads the flow runner, which brings
        # the Kubernetes client, the run contract's pydantic models and the submitting side.
        if args.command == "flow":
            from flowpod.pod._flow import run_flow

            completed = run_flow(store, namespace, name, args.attempt).completed
        else:
            from flowpod.pod._task import run_task

            outcome = run_task(store, namespace, name, args.attempt)
            _tell_the_kubelet(outcome)
            completed = outcome.completed
    except S3StoreError as exc:
        log.error("The result store is unavailable, so this attempt ends without an outcome "
                  "(the operator retries it as an infrastructure failure): %s", exc)
        return EXIT_STORE_UNAVAILABLE
    finally:
        if previous is not False:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        _upload_log(store, namespace, name, args.attempt, copy)
    return EXIT_COMPLETED if completed else EXIT_NOT_COMPLETED
