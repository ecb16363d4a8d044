"""`cadenza keys …` as an operator and a tenant admin type them, against `cadenza dev`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cadenza_cli.dev import DevStack, dev_settings
from cadenza_runtime import open_resources
from cadenza_state import ApiKeyRecord
from support.cli import run_cli

pytestmark = pytest.mark.unit


async def cadenza(*args: str, **env: str) -> tuple[int, str, str]:
    return await run_cli(*args, env=env)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[DevStack]:
    resources = await open_resources(*dev_settings(tmp_path))
    dev = DevStack(resources, port=0, data_dir=tmp_path)
    await dev.start()
    yield dev
    await dev.stop()


# Eight CLI processes (each imports every service): slow on a busy machine.
@pytest.mark.timeout(480)
async def test_bootstrap_then_create_list_rotate_revoke(stack: DevStack, tmp_path: Path) -> None:
    database = {"CADENZA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cadenza.db'}"}
    code, out, err = await cadenza("keys", "bootstrap", "--tenant", "acme", **database)
    assert code == 0, err
    admin = out.strip()
    assert admin.startswith("cdz_")
    assert "shown once" in err
    as_admin = {"CADENZA_API_KEY": admin, "CADENZA_URL": stack.url}

    code, out, err = await cadenza("keys", "create", "ci", "-s", "runs:read", **as_admin)
    assert code == 0, err
    ci = out.strip()
    ci_prefix = "_".join(ci.split("_")[:2])

    code, out, err = await cadenza("keys", "list", "--json", **as_admin)
    assert code == 0, err
    listed = json.loads(out)
    assert {k["prefix"] for k in listed} == {ci_prefix, "_".join(admin.split("_")[:2])}
    assert ci.split("_", 2)[2] not in out  # never the secret again

    # The ci key reads runs of acme, and may not manage keys.
    code, out, err = await cadenza("runs", "list", CADENZA_API_KEY=ci, CADENZA_URL=stack.url)
    assert code == 0, err
    code, _, err = await cadenza("keys", "list", CADENZA_API_KEY=ci, CADENZA_URL=stack.url)
    assert code == 2
    assert "403" in err
    assert "admin" in err

    code, out, err = await cadenza("keys", "rotate", ci_prefix, **as_admin)
    assert code == 0, err
    rotated = out.strip()
    assert rotated != ci
    code, _, err = await cadenza("runs", "list", CADENZA_API_KEY=ci, CADENZA_URL=stack.url)
    assert code == 2
    assert "401" in err
    assert "revoked" in err

    code, out, err = await cadenza("keys", "revoke", rotated, **as_admin)
    assert code == 0, err
    assert out.strip() == f"revoked {'_'.join(rotated.split('_')[:2])}"
    async with stack.resources.sessions() as session:
        record = await session.get(ApiKeyRecord, rotated.split("_")[1])
    assert record is not None
    assert record.revoked_at is not None


async def test_bootstrap_refuses_unknown_scopes_and_bad_tenants(tmp_path: Path) -> None:
    database = {"CADENZA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"}
    code, _, err = await cadenza("keys", "bootstrap", "--tenant", "acme", "-s", "fly", **database)
    assert code == 2
    assert "unknown scopes" in err
    code, _, err = await cadenza("keys", "bootstrap", "--tenant", "bad tenant", **database)
    assert code == 2
    assert "tenant ids match" in err
