"""flowpod's web dashboard (``flowpod ui``, the chart's ``ui.enabled``): the runs on a cluster,
live, read-only by default. ``hub`` watches the cluster once for every browser, ``views`` turns
objects into what pages show, ``preview`` reads results safely, ``app`` serves it all.
Needs the ``ui`` extra (Starlette, Jinja2, uvicorn)."""
