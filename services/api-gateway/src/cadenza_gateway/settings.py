"""Gateway configuration (env prefix ``CADENZA_GATEWAY_``)."""

from __future__ import annotations

from ipaddress import ip_address

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .auth.settings import AuthSettings

MIB = 1024 * 1024
# Tenant ids travel in events, Redis keys and logs: keep them to a safe alphabet.
TENANT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


class GatewaySettings(BaseSettings):
    """How the HTTP API listens and what it accepts."""

    model_config = SettingsConfigDict(env_prefix="CADENZA_GATEWAY_", extra="ignore")

    host: str = Field(
        default="127.0.0.1",
        description="Interface to listen on; 0.0.0.0 exposes the API to the network.",
    )
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port of the HTTP API.")
    max_body_bytes: int = Field(
        default=MIB,
        gt=0,
        description="Largest request body accepted, counted while reading (413 beyond it).",
    )
    max_document_bytes: int = Field(
        default=25 * MIB,
        gt=0,
        description="Largest document accepted by `POST /v1/collections/{c}/documents` "
        "(413 beyond it); uploads are exempt from `max_body_bytes`.",
    )
    public_url: str = Field(
        default="",
        description="Base URL clients reach the gateway at (e.g. https://cadenza.example.com); "
        "used for Location headers and the workflow JSON Schema `$id`. Empty = derived from "
        "each request.",
    )
    default_tenant: str = Field(
        default="default",
        pattern=TENANT_ID_PATTERN,
        description="Tenant of requests without a credential, in dev mode only "
        "(`CADENZA_GATEWAY_AUTH_ANONYMOUS_ACCESS`); otherwise the credential decides.",
    )
    max_event_bytes: int = Field(
        default=900 * 1024,
        gt=0,
        description="Largest spec + inputs a run may carry: its plan.requested event must fit "
        "in one Kafka message (the broker's default limit is 1 MiB).",
    )
    agent_tools: list[str] = Field(
        default_factory=list,
        description="Tool names agents may list in `tools` besides cadenza_workflow."
        "BUILTIN_TOOLS: the extra tools your workers register (JSON list in the environment, "
        "e.g. '[\"get_transaction\"]'). Any other name is refused when the agent is registered.",
    )
    readiness_timeout_s: float = Field(
        default=2.0, gt=0, description="Time limit of each /readyz dependency check."
    )
    event_stream_heartbeat_s: float = Field(
        default=15.0,
        gt=0,
        description="A run's SSE event stream sends a comment line (`: ping`) this often, "
        "so proxies and clients keep a quiet stream open for as long as the run lives.",
    )
    event_stream_block_s: float = Field(
        default=5.0,
        gt=0,
        description="How long one blocking read of a run's event log (Redis XREAD BLOCK) "
        "waits for a new event before the stream checks whether the run ended without "
        "a terminal event in its log (SSE and WebSocket).",
    )

    auth: AuthSettings = Field(
        default_factory=AuthSettings,
        description="Credentials, JWT and rate limits (env prefix CADENZA_GATEWAY_AUTH_).",
    )

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _no_anonymous_on_the_network(self) -> GatewaySettings:
        if self.auth.anonymous_access and not _is_loopback(self.host):
            raise ValueError(
                f"anonymous access (dev mode) on {self.host}: it would give anyone who can "
                "reach the gateway every scope of the default tenant; listen on 127.0.0.1 or "
                "turn CADENZA_GATEWAY_AUTH_ANONYMOUS_ACCESS off"
            )
        return self


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False
