"""Example flows importable by module path, for FlowRuns that name an ``entrypoint``.

``examples/flowrun.yaml`` runs ``flowpod_examples.repo_stats:repo_stats``. An image for it puts
this folder's parent (``examples/``) on ``PYTHONPATH``, or installs the package; in the test
cluster pods run with the repository's virtualenv, so the FlowRun's env sets ``PYTHONPATH`` to the
checkout's ``examples/`` folder.
"""
