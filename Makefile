# The two commands of the README. Both set everything up on a fresh machine.
SHELL := /bin/bash
# uv from PATH, else the PyPI package's module entry point (works right after `pip install uv`).
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)

.PHONY: demo test test-deploy lint typecheck bootstrap

# Install uv (from PyPI) and the locked Python environment, compiled to bytecode once (as the
# Dockerfile does): where PYTHONDONTWRITEBYTECODE is set (this machine sets it), nothing is
# ever cached, and every process start — each service a test starts — compiled every module
# it imports from source again (~2.7 s of CPU for a worker; an e2e file ran 46 s, now 30).
# Python still checks each cached file against its source, so an edit is never run stale.
bootstrap:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --quiet --compile-bytecode
	@$(UV) run --frozen --no-sync python -m compileall -q -j 0 apps libs services

# 1. Cadenza's main job: a multi-agent workflow (payment failure triage: LLM agents on the
#    embedded model, tools reading seeded reference data, a condition on the structured
#    classification) end to end on `cadenza dev`, printing its result.
demo: bootstrap
	$(UV) run cadenza dev --fresh --run examples/payment-triage

lint: bootstrap
	$(UV) run ruff check .
	$(UV) run ruff format --check .

typecheck: bootstrap
	$(UV) run mypy

# 2. The whole test suite: starts real Kafka, PostgreSQL, Redis, MinIO and Prometheus (installing
#    what is missing), then lint, types, and every pytest suite (unit, integration, e2e).
test: bootstrap lint typecheck
	$(UV) run cadenza infra up --with prometheus
	$(UV) run pytest

# Not part of `make test` (minutes, needs dockerd): builds the image on the Debian base
# (infra/docker/base-image.sh, cached), runs the services as containers with
# docker-compose.yml + docker-compose.host.yml against `cadenza infra up`, submits a
# workflow and an agent run, stops everything. Run it before submitting changes to the
# Dockerfile, compose files, infra/docker or the services' entry points (docs/deploy.md).
test-deploy: bootstrap
	@docker info >/dev/null 2>&1 || { echo "dockerd is not running (Debian: apt-get install docker.io debootstrap; then, as root: dockerd &)"; exit 1; }
	$(UV) run cadenza infra up
	$(UV) run pytest -m deploy tests/deploy
