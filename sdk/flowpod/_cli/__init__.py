"""The ``flowpod`` command line: the local commands (``main``), the cluster commands
(``kubernetes``) and CRD generation (``crds``)."""

from flowpod._cli.main import main

__all__ = ["main"]
