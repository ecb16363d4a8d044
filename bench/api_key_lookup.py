"""What authenticating a request with an API key costs the gateway: the key's row read on
every request (a revoked key stops working at once, on every replica), in this process on
the real PostgreSQL (a fresh schema, dropped after).

    uv run cadenza infra up
    uv run python bench/api_key_lookup.py          # about 10 s

Rows, alternated ``--rounds`` times, medians of each round's mean over ``--lookups``:
- credential: ``keys.get_credential``, what a request runs (one statement on asyncpg):
  ``credential_cpu_us``, ``credential_wall_us``.
- baseline: ``keys.get_key``, the same row through the ORM (``orm_cpu_us``,
  ``orm_wall_us``), what requests ran before; ``ratio_credential_vs_orm_cpu``.
The LAST line printed is the JSON result.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop
from cadenza_events import BusSettings
from cadenza_state import StateSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dispatch import drop_schema


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from cadenza_gateway.auth import keys
    from cadenza_runtime import open_resources, tune_gc

    schema = "benchkey" + uuid.uuid4().hex[:8]
    state = StateSettings(
        database_schema=schema,
        redis_key_prefix=f"{schema}:",
        object_store="local",
        object_store_dir=Path(tempfile.mkdtemp(prefix="cadenza-bench-key-")),
    )
    bus = BusSettings(backend="memory", topic_prefix=f"{schema}.")
    resources = await open_resources(bus, state, start_relay=False)
    try:
        async with resources.sessions() as session, session.begin():
            issued = await keys.create_key(
                session=session,
                tenant_id="bench",
                name="bench",
                scopes=["runs:read"],
                created_by="bench",
            )
        key_id = issued.record.id
        tune_gc()

        async def credential() -> Any:
            async with resources.reads() as session:
                return await keys.get_credential(session, key_id)

        async def orm() -> Any:
            async with resources.reads() as session:
                return await keys.get_key(session=session, key_id=key_id)

        async def mean(call: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
            for _ in range(args.lookups // 10):  # warm: pool, prepared statement
                await call()
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(args.lookups):
                await call()
            n = args.lookups
            return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6

        samples: dict[str, list[tuple[float, float]]] = {"credential": [], "orm": []}
        for _ in range(args.rounds):
            samples["credential"].append(await mean(credential))
            samples["orm"].append(await mean(orm))
    finally:
        await resources.close()
        await drop_schema(StateSettings(database_schema=schema))
    out: dict[str, Any] = {"lookups": args.lookups, "rounds": args.rounds}
    for name, values in samples.items():
        out[f"{name}_cpu_us"] = round(statistics.median(c for c, _ in values), 1)
        out[f"{name}_wall_us"] = round(statistics.median(w for _, w in values), 1)
    out["ratio_credential_vs_orm_cpu"] = round(out["credential_cpu_us"] / out["orm_cpu_us"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    print(json.dumps(uvloop.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
