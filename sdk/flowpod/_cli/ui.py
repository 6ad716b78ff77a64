"""``flowpod ui``: the web dashboard on this machine, for the cluster of the kubeconfig.

    flowpod ui [--host 127.0.0.1] [--port 8080] [-n NS]... [--allow-cancel]

It builds the dashboard (``flowpod._ui``) over one ``WatchHub`` for the group's
``--kubeconfig`` / ``--context`` (in a pod without them: the pod's service account), prints
``flowpod dashboard: http://HOST:PORT/`` and serves it with uvicorn until Ctrl-C. Without the
``ui`` extra installed it says how to install it. ``build_app`` and ``serve`` are separate so
tests build the app without serving it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from flowpod._cli import access
from flowpod._cli.errors import CliError, CliUsageError

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["build_app", "serve", "ui_command"]

_EXTRA = "the dashboard needs the ui extra: pip install 'flowpod[ui]'"


def build_app(namespaces: tuple[str, ...], allow_cancel: bool,
              in_cluster: bool = False) -> Starlette:
    """The dashboard app over a hub for the command's cluster options."""
    try:
        import jinja2  # noqa: F401 - checked here for one clear message
        import starlette  # noqa: F401
    except ImportError:
        raise CliError(_EXTRA, "flowpod ui", "install the extra, then run flowpod ui again") \
            from None
    from flowpod._kube.flowrun_api import FlowRunApi
    from flowpod._ui.app import create_app
    from flowpod._ui.hub import WatchHub

    options = access.current_options()
    api = FlowRunApi(None, None) if in_cluster else FlowRunApi(options.kubeconfig,
                                                               options.context)
    chosen = namespaces or ((options.namespace,) if options.namespace else ())
    return create_app(WatchHub(api, chosen), allow_cancel=allow_cancel)


def serve(app: Any, host: str, port: int) -> None:
    """Serve ``app`` until interrupted (uvicorn; its access log off, errors still shown)."""
    try:
        import uvicorn
    except ImportError:
        raise CliError(_EXTRA, "flowpod ui", "install the extra, then run flowpod ui again") \
            from None
    # Open event streams never end by themselves: give them 2 s after Ctrl-C or SIGTERM.
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning",
                timeout_graceful_shutdown=2)


@click.command("ui", short_help="Serve the web dashboard of the cluster's flow runs.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface; mind who can reach it).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port to listen on.")
@click.option("--namespace", "-n", "namespaces", multiple=True, metavar="NS",
              help="Show only this namespace (repeatable). Default: every namespace, or the "
                   "kubeconfig context's when listing across the cluster is not allowed.")
@click.option("--allow-cancel", is_flag=True,
              help="Show a Cancel button on running flow runs (the dashboard's only write).")
@click.option("--in-cluster", is_flag=True,
              help="Use the pod's service account, ignoring --kubeconfig/--context.")
def ui_command(host: str, port: int, namespaces: tuple[str, ...], allow_cancel: bool,
               in_cluster: bool) -> None:
    """Serve a read-only web dashboard of the flow runs on the cluster.

    Runs, each run's timeline of task attempts, task runs, events and logs, updated live.
    Every browser shares one watch per kind of object. Logs and results of finished attempts
    come from the result store (FLOWPOD_S3_*, else each run's spec.storage)."""
    if not host:
        raise CliUsageError("--host must not be empty", "--host", "e.g. --host 127.0.0.1")
    app = build_app(namespaces, allow_cancel, in_cluster)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"flowpod dashboard: http://{shown}:{port}/")
    serve(app, host, port)
