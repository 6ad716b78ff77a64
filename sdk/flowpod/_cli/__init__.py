"""The ``flowpod`` command line, layered top-down: ``main`` (the click group) registers the
commands of ``local`` (run, config, crds, version) and ``kubernetes`` (submit, get, describe,
logs, cancel: one module each, sharing ``cluster``), which load flow files through
``targets``; ``crds`` is the CRD generator behind ``flowpod crds``."""

from flowpod._cli.main import main

__all__ = ["main"]
