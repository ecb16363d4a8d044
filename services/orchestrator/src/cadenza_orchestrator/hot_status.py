"""The Redis side of a transition: the hot run status and the run-cancelled marker.

Written after the commit (PostgreSQL is the truth; Redis is a cache for polling and live
views), so a crash in between can leave a counter short until the run's next change; the
final counts are recomputed exactly when the run finishes. Each function queues its
commands on a pipeline: a batch's runs go to Redis in one round trip.
"""

from __future__ import annotations

import logging
from typing import Any

from cadenza_runtime import keys
from cadenza_state import HotState, utcnow

log = logging.getLogger("cadenza.orchestrator")


def set_counts(
    hot: HotState,
    pipe: Any,
    run_id: str,
    *,
    tenant_id: str,
    status: str,
    total: int,
    done: int,
    ttl_s: int,
) -> None:
    """Absolute status (at planning and when the run finishes)."""
    fields: dict[str, str | int | float] = {
        "tenant_id": tenant_id,  # the gateway serves the hash only to this tenant
        "status": status,
        "tasks_total": total,
        "tasks_done": done,
        "updated_at": utcnow().isoformat(),
    }
    hot.stage_run_status(pipe, run_id, fields, {}, ttl_s)


def add_counts(
    hot: HotState, pipe: Any, run_id: str, *, status: str, added: int, done: int, ttl_s: int
) -> None:
    """Incremental status after a result: O(1) whatever the run's size."""
    hot.stage_run_status(
        pipe,
        run_id,
        {"status": status, "updated_at": utcnow().isoformat()},
        {"tasks_total": added, "tasks_done": done},
        ttl_s,
    )


def mark_cancelled(hot: HotState, pipe: Any, run_id: str, *, ttl_s: int) -> None:
    """Tell workers running tasks of a failed run to stop (they watch this key)."""
    pipe.set(hot.key(keys.run_cancelled(run_id)), "1", ex=ttl_s)
