"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from ...auth.operator import require_operator
from ...models import HealthPublic, ReadinessPublic
from ...problems import NotReady, problem_responses
from ...readiness import run_checks
from ..deps import ResourcesDep, SettingsDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthPublic, summary="Liveness")
async def healthz() -> HealthPublic:
    """The process is up and serving; says nothing about its dependencies."""
    return HealthPublic()


@router.get(
    "/readyz",
    response_model=ReadinessPublic,
    summary="Readiness",
    responses=problem_responses(503),
)
async def readyz(resources: ResourcesDep, settings: SettingsDep) -> ReadinessPublic:
    """Ready when the database answers `SELECT 1`, Redis answers `PING` and Kafka answers a
    metadata request; 503 names each failed check."""
    healthy, checks = await run_checks(resources, settings.readiness_timeout_s)
    if not healthy:
        failed = ", ".join(
            f"{name} ({result})" for name, result in checks.items() if result.startswith("failed")
        )
        raise NotReady(f"not ready: {failed}", checks=checks)
    return ReadinessPublic(checks=checks)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Metrics"},
        **problem_responses(401),
    },
    dependencies=[Depends(require_operator)],
)
async def metrics_endpoint() -> Response:
    """Operators only (labels name tenants): the metrics token, or dev mode."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
