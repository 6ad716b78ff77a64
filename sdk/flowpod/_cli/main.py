"""The ``flowpod`` click group: the top of the command line, which only assembles the commands.

The commands live below it and never import it:

- ``flowpod._cli.local``: run, config set/unset/view, crds, version (this machine);
- ``flowpod._cli.kubernetes``: submit, get, logs, cancel (flows on a cluster);
- both load flow files through ``flowpod._cli.targets``; ``crds`` runs the generator in
  ``flowpod._cli.crds``.

Only click is imported with this module (see the command modules for what each imports on use),
so ``flowpod --help`` stays quick.
"""

from __future__ import annotations

import click

from flowpod._cli import kubernetes, local

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@kubernetes.cluster_options  # --kubeconfig, --context, -n: for every cluster command
def main() -> None:
    """flowpod: Prefect-style @task/@flow workflows, run locally or as Kubernetes pods."""


local.register(main)
kubernetes.register(main)
