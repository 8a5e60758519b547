# syntax=docker/dockerfile:1
#
# Ridgeline image: one image for the API, the workers and the migration step.
#
#   docker build -t ridgeline .
#   docker run --init -p 8000:8000 -v ridgeline-data:/data ridgeline
#
# The same image runs `ridgeline worker` and `ridgeline migrate` (see docker-compose.yml).
# Pass --init (or `init: true` in compose) so a real init reaps orphaned training processes
# and forwards SIGTERM.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------
# build: a virtual environment at /opt/venv with torch (CPU), the dependencies and the
# project installed in editable mode from /app.
# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch FIRST, from the CPU-only index: resolved from PyPI as a dependency it would be
# the multi-GB CUDA build. Kept in its own layer so code changes do not re-download it.
# Must match the torch pin in constraints.txt (tests/test_deploy.py checks it).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

WORKDIR /app

# The project's dependencies, read from pyproject.toml, under constraints.txt (which pins
# torch to the version installed above, so pip keeps the CPU build). Its own layer: it is
# rebuilt only when pyproject.toml or constraints.txt change.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write(chr(10).join(deps))" \
 && pip install -c constraints.txt -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The source tree. service/migrate.py finds Alembic's scripts at
# Path(service.__file__).parent.parent / "migrations", so the package must be imported
# from /app/service with /app/migrations beside it: an editable install does exactly that
# (the venv's finder points at /app/service, which the runtime stage copies to the same path).
COPY . /app
RUN pip install --no-deps -e . \
 && pip check \
 && python -m compileall -q /app/service /app/migrations \
 && python -c "import service.migrate as m; assert (m.MIGRATIONS_DIR / 'env.py').is_file(), m.MIGRATIONS_DIR"

# ---------------------------------------------------------------------------------------
# worker-spark: a worker that can run engine "spark" jobs: pyspark (the `spark` extra) in the
# venv and a Java 17 runtime for the driver's JVM. Build it with `--target worker-spark`.
# ---------------------------------------------------------------------------------------
FROM build AS build-spark
RUN python -c "import tomllib; print(chr(10).join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['spark']))" > /tmp/spark.txt \
 && pip install -c constraints.txt -r /tmp/spark.txt \
 && rm /tmp/spark.txt \
 && pip check

FROM ${PYTHON_IMAGE} AS worker-spark

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RIDGELINE_DATA_DIR=/data

# The JVM of the Spark driver; Debian bookworm (the slim base) ships OpenJDK 17.
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 ridgeline \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin ridgeline \
 && mkdir -p /data \
 && chown 10001:10001 /data

COPY --from=build-spark /opt/venv /opt/venv
COPY --from=build-spark /app /app

WORKDIR /app
USER 10001:10001
VOLUME ["/data"]
CMD ["ridgeline", "worker"]

# ---------------------------------------------------------------------------------------
# runtime: the slim base, the venv and the source tree; no compilers, no pip caches.
# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RIDGELINE_DATA_DIR=/data

RUN groupadd --system --gid 10001 ridgeline \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin ridgeline \
 && mkdir -p /data \
 && chown 10001:10001 /data

COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app

WORKDIR /app
USER 10001:10001

# SQLite file (embedded mode) and the workers' dataset cache. A fresh volume takes the
# ownership of the directory above, so uid 10001 can write it.
VOLUME ["/data"]

EXPOSE 8000

# Liveness only (/readyz also checks the database and schema). No curl in the slim image.
# Worker and migrate containers override or disable this: they serve no HTTP.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

# Binding 0.0.0.0 exposes the API beyond loopback, which requires authentication:
# RIDGELINE_AUTH=required is the default and RIDGELINE_AUTH=disabled is refused on a
# non-loopback address. Create a key with `ridgeline keys create --name NAME`.
# API only: run workers as separate containers with `ridgeline worker`.
CMD ["ridgeline", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-worker"]
