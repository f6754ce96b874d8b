# The inferfleet operator image: Kopf running operator/main.py as a non-root user.
#   docker build -t inferfleet:dev .
# Layered for the build cache: the third-party wheels come from pyproject.toml alone, so a source
# change rebuilds only inferfleet's own wheel and its install (seconds), not the dependencies.
# The runtime stage installs only wheels (no compiler, no pip cache, no sources) and the Kopf
# entry file.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS deps
WORKDIR /src
COPY pyproject.toml ./
# pip's download cache is a BuildKit cache mount: a rebuild fetches nothing again, and the cache
# never lands in a layer.
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
      >requirements.txt \
 && pip wheel --wheel-dir /wheels -r requirements.txt \
 && mv requirements.txt /wheels/

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sizing ./sizing
COPY controllers ./controllers
COPY inferfleet ./inferfleet
RUN --mount=type=cache,target=/root/.cache/pip pip wheel --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
# No .pyc writes at run time: the root filesystem is read-only (pip precompiles at install).
# The user has no home: matplotlib (inferfleet's report commands) and huggingface_hub (model
# resolution; the chart points it at its own bounded emptyDir) keep their files in /tmp.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    HF_HOME=/tmp/huggingface \
    HF_HUB_DISABLE_TELEMETRY=1
RUN groupadd --gid 65532 inferfleet \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin inferfleet
RUN --mount=type=bind,from=deps,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels -r /wheels/requirements.txt
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels inferfleet
# Not a package on purpose (it would shadow the standard library's `operator`): Kopf loads it
# by path, and it imports the installed controllers.
COPY operator/main.py /app/operator/main.py
WORKDIR /app
USER 65532:65532
# 8080: Kopf's health endpoint (liveness/readiness); 9090: the operator's Prometheus metrics.
EXPOSE 8080 9090
ENTRYPOINT ["kopf"]
# The Helm chart replaces these with the namespaces, peering and log level it is given.
CMD ["run", "/app/operator/main.py", "--all-namespaces", "--standalone", \
     "--liveness=http://0.0.0.0:8080/healthz"]
