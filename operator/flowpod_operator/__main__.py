"""``flowpod-operator`` / ``python -m flowpod_operator``: start the operator.

Configuration comes from the environment (see ``flowpod_operator.settings``); the flags below
override the namespaces to watch, the default image and the liveness endpoint.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import click

from flowpod_operator.settings import OperatorConfig

_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (as ``MALLOC_ARENA_MAX`` would) before any thread starts.

    glibc gives threads their own arenas, up to 8 per core; the API worker threads each
    allocate response bodies in theirs, and freed memory stays spread over them, so the RSS
    after a burst stayed high. Two arenas are enough for threads that mostly wait on sockets.
    False where the C library is not glibc (nothing to do)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-n", "--namespace", "namespaces", multiple=True,
              help="Watch this namespace (repeatable). Default: FLOWPOD_OPERATOR_NAMESPACES, "
                   "else all namespaces.")
@click.option("-A", "--all-namespaces", is_flag=True,
              help="Watch every namespace (needs the cluster-wide RBAC of operator-rbac.yaml).")
@click.option("--image", default=None,
              help="Image of task pods whose TaskRun names none (FLOWPOD_OPERATOR_IMAGE).")
@click.option("--liveness", "liveness", default=None, metavar="URL",
              help="Serve a liveness probe, e.g. http://0.0.0.0:8080/healthz.")
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def main(namespaces: tuple[str, ...], all_namespaces: bool, image: str | None,
         liveness: str | None, verbose: bool) -> None:
    """Run flowpod's Kubernetes operator: every TaskRun becomes one pod per attempt."""
    try:
        import kopf
    except ModuleNotFoundError:  # the base install has no operator: it is an extra
        raise click.ClickException(
            "the operator needs kopf, which is not installed (flowpod-operator); install the "
            "operator extra: pip install 'flowpod[operator]'"
        ) from None

    from flowpod_operator import handlers

    if namespaces and all_namespaces:
        raise click.UsageError("use either --namespace or --all-namespaces, not both")
    try:
        config = OperatorConfig.from_env()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if namespaces:
        config = replace(config, namespaces=tuple(namespaces))
    if all_namespaces:
        config = replace(config, namespaces=())
    if image:
        config = replace(config, default_image=image)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # kopf logs every handled event at INFO: at thousands of TaskRuns that is noise. So does the
    # liveness endpoint's server, once per kubelet probe (every few seconds in a pod).
    if not verbose:
        logging.getLogger("kopf").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    handlers.configure(config)
    limit_malloc_arenas()
    kopf.run(
        standalone=True,  # one replica; no peering objects required
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        liveness_endpoint=liveness,
        memories=handlers.ForgetfulMemories(),
    )


if __name__ == "__main__":
    main()
