"""The ``flowpod`` commands for flows on Kubernetes, added to the group by ``register``.

    flowpod submit flows/etl.py:etl --param day=2026-01-01 --wait    (flowpod._cli.submit)
    flowpod get flowruns|taskruns [NAME] [-A] [-l SEL] [-o FORMAT] [-w]   (flowpod._cli.get)
    flowpod describe|inspect flowrun|taskrun NAME              (flowpod._cli.describe)
    flowpod logs FLOWRUN [-f] [--task NAME] [--tail N]         (flowpod._cli.logs)
    flowpod cancel FLOWRUN [--wait]                            (flowpod._cli.submit)

Each command has a module of its own; what they share - the group's ``--kubeconfig``,
``--context`` and ``-n`` (``cluster_options``), the API seam ``make_api`` that unit tests
replace, and the error form of API failures - is in ``flowpod._cli.access``. The progress view
of ``--wait`` is ``flowpod._cli.progress``. Only click (and rich, when a live view starts) is
imported with these modules; the Kubernetes client, pydantic and boto3 when a command runs.
Exit codes: 0 success, 1 the flow run did not complete (or the cluster refused the call, or the
cluster or the store cannot be used), 2 a usage error.
"""

from __future__ import annotations

import click

from flowpod._cli.access import cluster_options
from flowpod._cli.describe import describe_command, inspect_command
from flowpod._cli.get import get_command
from flowpod._cli.logs import logs_command
from flowpod._cli.submit import cancel_command, submit_command

__all__ = ["cluster_options", "register"]


def register(main: click.Group) -> None:
    """Add submit, get, describe (and inspect), logs and cancel to the ``flowpod`` group."""
    for command in (submit_command, get_command, describe_command, inspect_command,
                    logs_command, cancel_command):
        main.add_command(command)
