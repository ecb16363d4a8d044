"""open_state: every adapter ready in one call (dev profile, no services)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cadenza_state import RunRecord, StateSettings, open_state
from sqlalchemy import select

pytestmark = pytest.mark.unit


async def test_open_state_dev_profile_round_trip(tmp_path: Path, unique_id: str) -> None:
    settings = StateSettings.dev(tmp_path).model_copy(update={"redis_key_prefix": unique_id})
    state = await open_state(settings)
    try:
        async with state.sessions() as session, session.begin():
            session.add(RunRecord(tenant_id="t", workflow_name="w", spec={}, inputs={}))
        async with state.sessions() as session:
            assert len((await session.scalars(select(RunRecord))).all()) == 1
        assert await state.hot.acquire_lease("k", "me", 1000)
        assert await state.objects.put("a/b", b"x") == "a/b"
        assert (tmp_path / "objects" / "a" / "b").read_bytes() == b"x"
    finally:
        await state.hot.redis.delete(state.hot.key("k"))
        await state.aclose()
