# The two commands of the README. Both set everything up on a fresh machine.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")

.PHONY: demo test lint typecheck bootstrap

# Install uv (from PyPI) and the locked Python environment.
bootstrap:
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
	@uv sync --frozen --quiet

# 1. Cadenza's main job: run an example workflow end to end on `cadenza dev` and print its result.
demo: bootstrap
	uv run cadenza dev --run examples/hello.yaml --input customer=acme

lint: bootstrap
	uv run ruff check .
	uv run ruff format --check .

typecheck: bootstrap
	uv run mypy

# 2. The whole test suite: starts real Kafka, PostgreSQL, Redis and MinIO (installing what is
#    missing), then lint, types, and every pytest suite (unit, integration, e2e).
test: bootstrap lint typecheck
	uv run cadenza infra up
	uv run pytest
