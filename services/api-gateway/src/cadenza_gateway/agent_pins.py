"""Agent pinning lives in cadenza_runtime (every way a run starts pins its agents)."""

from cadenza_runtime.agent_pins import AgentPins, matches_pins, resolve_agents

__all__ = ["AgentPins", "matches_pins", "resolve_agents"]
