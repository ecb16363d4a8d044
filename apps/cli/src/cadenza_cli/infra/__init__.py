"""Local infrastructure for Cadenza: `cadenza infra up|down|status` (see docs/infra.md)."""

from cadenza_cli.infra.cli import infra_app

__all__ = ["infra_app"]
