#!/usr/bin/env bash
# Build the Cadenza image on a machine with no image registry: the Debian base from
# infra/docker/base-image.sh (cached), then the Dockerfile with that base.
#
#   infra/docker/build-image.sh [TAG]        # default tag cadenza:dev
#
# CADENZA_BASE_IMAGE_OVERRIDE=python:3.11-slim-bookworm uses that base instead (a machine
# that reaches a registry). Builds with the host's network (PyPI for `uv sync`), with the
# classic builder unless DOCKER_BUILDKIT=1 (the Dockerfile needs neither's extras).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tag="${1:-cadenza:dev}"
base="${CADENZA_BASE_IMAGE_OVERRIDE:-$("$repo/infra/docker/base-image.sh")}"
start=$SECONDS
DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}" docker build --network host \
    --build-arg "BASE_IMAGE=$base" -t "$tag" "$repo" >&2
echo "build-image: $tag on $base in $((SECONDS - start)) s," \
    "$(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')" >&2
echo "$tag"
