# One image for every Cadenza service: `cadenza gateway|orchestrator|worker|rag-ingest`
# (the container's command), plus `cadenza migrate` for a migration job.
#
#   docker build -t cadenza:dev .                                   # official Python slim base
#   docker build --build-arg BASE_IMAGE=$(infra/docker/base-image.sh) -t cadenza:dev .
#
# The base must provide Python 3.11 as `python3` with the venv module (the official
# python:3.11-slim, or the Debian image infra/docker/base-image.sh builds without a registry).
# Works with the classic builder and BuildKit alike: no cache mounts, the layer order caches.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- deps: every third-party package of the lock (no workspace code) --------------------
FROM ${BASE_IMAGE} AS deps
ARG UV_VERSION=0.13.9
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=python3 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /app
# Only the lock and the workspace's pyproject files: this layer (all third-party packages,
# including the embedded chat model and the embedding model) is rebuilt only when they change.
COPY uv.lock pyproject.toml ./
COPY apps/cli/pyproject.toml apps/cli/
COPY libs/client/pyproject.toml libs/client/
COPY libs/evaluation/pyproject.toml libs/evaluation/
COPY libs/events/pyproject.toml libs/events/
COPY libs/llm/pyproject.toml libs/llm/
COPY libs/retrieval/pyproject.toml libs/retrieval/
COPY libs/runtime/pyproject.toml libs/runtime/
COPY libs/state/pyproject.toml libs/state/
COPY libs/triggers/pyproject.toml libs/triggers/
COPY libs/workflow/pyproject.toml libs/workflow/
COPY services/agent-worker/pyproject.toml services/agent-worker/
COPY services/api-gateway/pyproject.toml services/api-gateway/
COPY services/orchestrator/pyproject.toml services/orchestrator/
COPY services/rag-ingest/pyproject.toml services/rag-ingest/
COPY services/trigger/pyproject.toml services/trigger/
RUN /opt/uv/bin/uv sync --frozen --no-dev --no-install-workspace

# ---- build: the workspace packages, installed as wheels (no editable links to sources) ---
FROM deps AS build
COPY apps apps
COPY libs libs
COPY services services
RUN /opt/uv/bin/uv sync --frozen --no-dev --no-editable \
    && mkdir -p /workspace/site-packages /workspace/bin \
    && cp -a /app/.venv/lib/python3.11/site-packages/cadenza* /workspace/site-packages/ \
    && cp -a /app/.venv/bin/cadenza /workspace/bin/

# ---- runtime: the venv, examples, a health check; no uv, no compilers, not root ---------
FROM ${BASE_IMAGE} AS runtime
# The OpenMP runtime that llama.cpp (the embedded model) links; the Debian base has it.
RUN if ! ldconfig -p | grep -q 'libgomp\.so\.1'; then \
        apt-get update && apt-get install -y --no-install-recommends libgomp1 \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && groupadd --system --gid 10001 cadenza \
    && useradd --system --uid 10001 --gid cadenza --home-dir /home/cadenza --create-home \
        --shell /usr/sbin/nologin cadenza \
    && mkdir -p /data && chown cadenza:cadenza /data
# Two layers: the third-party venv (hundreds of MB, rebuilt only when the lock changes),
# then Cadenza's own packages and the `cadenza` command (small, rebuilt on every change).
COPY --from=deps /app/.venv /app/.venv
COPY --from=build /workspace/site-packages/ /app/.venv/lib/python3.11/site-packages/
COPY --from=build /workspace/bin/ /app/.venv/bin/
COPY examples /app/examples
COPY infra/docker/healthcheck.py /app/healthcheck.py
# Configuration is the environment only (see docs/deploy.md); these make a container
# reachable from outside itself and keep writable state under /data (a volume).
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/cadenza \
    CADENZA_GATEWAY_HOST=0.0.0.0 \
    CADENZA_METRICS_HOST=0.0.0.0 \
    CADENZA_RAG_SEARCH_HOST=0.0.0.0 \
    CADENZA_OBJECT_STORE_DIR=/data/objects \
    CADENZA_RETRIEVAL_QDRANT_PATH=/data/qdrant
WORKDIR /app
USER 10001:10001
VOLUME ["/data"]
# gateway API, orchestrator/worker/rag-ingest metrics, rag-ingest search API
EXPOSE 8080 9101 9102 9103 9113
# Picks the probe from the service this container runs (gateway /readyz, rag-ingest
# /healthz, orchestrator and worker /metrics).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "/app/healthcheck.py"]
# The service is PID 1 and handles SIGTERM itself: the gateway finishes in-flight requests,
# workers let running tasks finish (CADENZA_WORKER_SHUTDOWN_GRACE_S) and commit, then exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["cadenza"]
CMD ["gateway"]
