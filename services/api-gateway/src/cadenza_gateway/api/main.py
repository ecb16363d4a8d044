"""The API router: every route module, mounted once."""

from __future__ import annotations

from fastapi import APIRouter

from .routes import (
    agents,
    api_keys,
    approvals,
    audit,
    budgets,
    calls,
    cancel,
    collections,
    datasets,
    dead_letters,
    evaluations,
    events,
    health,
    ingest,
    provider_keys,
    replay,
    resume,
    runs,
    schedules,
    schemas,
    timeline,
    triggers,
    usage,
    workflows,
)

api_router = APIRouter()
api_router.include_router(workflows.router)
api_router.include_router(agents.router)
api_router.include_router(runs.router)
api_router.include_router(replay.router)
api_router.include_router(calls.router)
api_router.include_router(usage.router)
api_router.include_router(cancel.router)
api_router.include_router(resume.router)
api_router.include_router(approvals.router)
api_router.include_router(dead_letters.router)
api_router.include_router(events.router)
api_router.include_router(timeline.router)
api_router.include_router(evaluations.router)
api_router.include_router(datasets.router)
api_router.include_router(collections.router)
api_router.include_router(api_keys.router)
api_router.include_router(audit.router)
api_router.include_router(provider_keys.router)
api_router.include_router(budgets.router)
api_router.include_router(triggers.router)
api_router.include_router(schedules.router)
api_router.include_router(ingest.router)
api_router.include_router(schemas.router)
api_router.include_router(health.router)
