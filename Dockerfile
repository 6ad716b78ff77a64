# flowpod's one image: the operator (`flowpod-operator`, the default command), the flow and task
# runners of the pods the operator starts (`python -m flowpod.pod flow|task ...`) and the `flowpod`
# CLI, with `flowpod ui`, the dashboard the chart runs with ui.enabled. The Helm chart and the
# operator always set the container's `command`, so the image has no ENTRYPOINT that an override
# would have to work around.
#
#   docker build -t flowpod:dev .                                     (or: make image)
#   docker build -t my-flows:1 --build-arg EXTRA_REQUIREMENTS="pandas==2.2.3 requests" .
#
# EXTRA_REQUIREMENTS holds space-separated pip requirement specs (no quotes inside) for what your
# flows import; they are resolved together with flowpod's own dependencies, so a conflict fails
# the build instead of breaking flowpod at run time. For a requirements file (comments dropped,
# one line per spec), pass its lines:
#   docker build --build-arg EXTRA_REQUIREMENTS="$(sed 's/#.*//' requirements-extra.txt | tr '\n' ' ')" .
#   make image EXTRA_REQUIREMENTS="$(sed 's/#.*//' requirements-extra.txt | tr '\n' ' ')"
# The base image has no compiler, so every requirement needs a wheel for the image's platform.
#
# tests/packaging checks this file against the code: the wheel built from exactly what is copied
# below holds every entry point, the final USER is the uid the operator runs pods as, and there is
# no ENTRYPOINT.

# Pinned by tag so that the builder and the final stage are the same Python at the same path: the
# venv's bin/python is a symlink to /usr/local/bin/python of this image.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: the wheel, and a venv with it and all dependencies ---------------------------------
FROM ${PYTHON_IMAGE} AS builder

# No pip cache: nothing in this stage but /opt/flowpod is kept, and layers stay small while it runs.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# A current pip in the venv: its resolver settles conflicting bounds among the dependencies in
# seconds (kubernetes 37.0.2 wants python-dateutil>=3, which botocore forbids, so pip must step
# back to 37.0.1), where the pip that Debian's Python 3.11 bundles backtracks for a long time.
RUN python -m venv /opt/flowpod \
    && /opt/flowpod/bin/python -m pip install --upgrade "pip>=25"

WORKDIR /src

# flowpod's dependencies first, read from pyproject.toml alone: this layer (the slow downloads)
# stays cached while only the source changes, which is every `make kind-load` of a dev loop. The
# image runs the operator and the chart's dashboard (ui.enabled: `flowpod ui`), so the `operator`
# (kopf) and `ui` (starlette, jinja2, uvicorn) extras are installed with the base dependencies.
COPY pyproject.toml ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; extras = p["optional-dependencies"]; print("\n".join(p["dependencies"] + extras["operator"] + extras["ui"]))' \
        > /tmp/requirements.txt \
    && /opt/flowpod/bin/python -m pip install -r /tmp/requirements.txt

# What the wheel is built from and nothing else (see .dockerignore): pyproject names README.md as
# the readme, and packages are found under sdk/, operator/ and examples/ (flowpod_examples ships).
COPY README.md ./
COPY sdk/ sdk/
COPY operator/ operator/
COPY examples/ examples/
# A wheel rather than `pip install .`: the venv gets an ordinary install, not a link to /src.
# pip's build isolation fetches the build backend pyproject.toml asks for (setuptools>=77).
RUN python -m pip wheel --no-deps --wheel-dir /wheels .

# Declared this late so that changing it rebuilds only the last layer of this stage.
ARG EXTRA_REQUIREMENTS=""
# One resolve of flowpod and the extras together, so pip refuses extras that conflict with
# flowpod's pins. The wheel's name is expanded first; then `set -f`, so the specs are split on
# spaces but never globbed (`requests[socks]` is a requirement, not a file pattern).
# Then every module of the venv is compiled here, explicitly: pods run with a read-only root
# filesystem and PYTHONDONTWRITEBYTECODE, so a module without its .pyc would be compiled again in
# every pod (one per task attempt), and pip's own compiling can be turned off (PIP_NO_COMPILE).
# Timestamp .pyc files stay valid in the final stage: COPY --from keeps the sources' mtimes.
RUN wheel="$(echo /wheels/flowpod-*.whl)" \
    && set -f \
    && /opt/flowpod/bin/python -m pip install "${wheel}[operator,ui]" ${EXTRA_REQUIREMENTS} \
    && /opt/flowpod/bin/python -m pip check \
    && /opt/flowpod/bin/python -m compileall -q -j 0 /opt/flowpod/lib

# --- final: the venv on a fresh base image, run as an unprivileged user --------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="flowpod" \
      org.opencontainers.image.description="Kubernetes-native workflow engine for Python: the operator, the flow and task pod runners and the flowpod CLI" \
      org.opencontainers.image.source="https://github.com/flowpod/flowpod" \
      org.opencontainers.image.licenses="Apache-2.0"

# PYTHONDONTWRITEBYTECODE: the venv is read-only for the user and compiled in the builder (the
# base image's standard library comes compiled); pods are short-lived, so writing .pyc files
# elsewhere would only cost time. PYTHONUNBUFFERED: pod logs
# appear as they are written, and nothing is lost in a buffer when a pod is killed at its deadline.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/flowpod \
    PATH=/opt/flowpod/bin:$PATH

# uid/gid 1000: the operator runs task and flow pods as uid 1000 (OperatorConfig.run_as_user) with
# runAsNonRoot, so the image's user is that uid and owns its home (FLOWPOD_HOME defaults to
# ~/.flowpod). --no-log-init keeps a sparse lastlog file from bloating the layer.
RUN groupadd --gid 1000 flowpod \
    && useradd --no-log-init --uid 1000 --gid 1000 --create-home --home-dir /home/flowpod \
        --shell /usr/sbin/nologin flowpod

# Only the venv: no wheel, no source tree and no pip cache reach this stage.
COPY --from=builder /opt/flowpod /opt/flowpod

# Numeric, so that Kubernetes can verify runAsNonRoot without looking up a user name.
USER 1000:1000
WORKDIR /home/flowpod

CMD ["flowpod-operator"]
