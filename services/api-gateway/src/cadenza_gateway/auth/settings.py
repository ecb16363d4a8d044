"""Authentication, JWT and rate-limit configuration (env prefix ``CADENZA_GATEWAY_AUTH_``)."""

from __future__ import annotations

from cadenza_state import SecretsSettings
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class AuthSettings(BaseSettings):
    """How callers prove who they are, and how much they may ask."""

    model_config = SettingsConfigDict(env_prefix="CADENZA_GATEWAY_AUTH_", extra="ignore")

    anonymous_access: bool = Field(
        default=False,
        description="DEV MODE ONLY: a request without a credential acts as the gateway's "
        "`default_tenant` with every scope. `cadenza dev` turns it on; refused unless the "
        "gateway listens on a loopback address. A credential that is sent is still checked.",
    )
    api_key_pepper: SecretStr = Field(
        default=SecretStr(""),
        description="Secret key of the HMAC-SHA256 that API key secrets are stored under; "
        "with it, a copy of the database alone cannot check guessed keys. Changing it "
        "invalidates every key. Empty = no pepper.",
    )
    jwt_jwks_url: str = Field(
        default="",
        description="JWKS URL of the OIDC identity provider whose access tokens (JWT) are "
        "accepted as bearer tokens. Empty = JWTs are refused (API keys only).",
    )
    jwt_issuer: str = Field(default="", description="Required `iss` of accepted tokens.")
    jwt_audience: str = Field(default="", description="Required `aud` of accepted tokens.")
    jwt_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256"],
        description="Signature algorithms accepted (asymmetric only: the gateway never holds "
        "the signing key).",
    )
    jwt_tenant_claim: str = Field(
        default="tenant", description="Claim holding the caller's tenant id."
    )
    jwt_scopes_claim: str = Field(
        default="scope",
        description="Claim holding the scopes: a space-separated string (OAuth 2 `scope`) or "
        "a list (e.g. `scp`, `permissions`).",
    )
    jwt_leeway_s: float = Field(
        default=30.0, ge=0, description="Clock skew tolerated on `exp`, `nbf` and `iat`."
    )
    jwks_cache_s: float = Field(
        default=300.0, gt=0, description="How long fetched signing keys are trusted."
    )
    jwks_min_refresh_s: float = Field(
        default=10.0,
        ge=0,
        description="A token signed by an unknown key id refetches the JWKS (key rotation), "
        "at most this often.",
    )
    rate_limit_per_minute: int = Field(
        default=0,
        ge=0,
        description="Requests per minute a tenant may make (all its keys and tokens "
        "together), counted in Redis across gateway replicas. 0 = unlimited.",
    )
    rate_limit_key_per_minute: int = Field(
        default=0,
        ge=0,
        description="Requests per minute one API key or token subject may make. 0 = unlimited.",
    )
    tenant_rate_limits: dict[str, int] = Field(
        default_factory=dict,
        description="Per-tenant overrides of `rate_limit_per_minute` (JSON object in the "
        "environment, e.g. '{\"acme\": 6000}'); 0 = unlimited for that tenant.",
    )
    max_active_runs: int = Field(
        default=0,
        ge=0,
        description="Unfinished (pending + running) runs a tenant may have at once; a new run "
        "beyond it is a 429. 0 = unlimited.",
    )
    tenant_max_active_runs: dict[str, int] = Field(
        default_factory=dict,
        description="Per-tenant overrides of `max_active_runs` (JSON object); 0 = unlimited.",
    )
    secrets: SecretsSettings = Field(
        default_factory=SecretsSettings,
        description="Master key of tenants' provider keys (env prefix CADENZA_SECRETS_, "
        "shared with the workers that decrypt them).",
    )
    metrics_token: SecretStr = Field(
        default=SecretStr(""),
        description="Bearer token an operator's scraper sends to read `/metrics` (its labels "
        "name tenants). Empty = `/metrics` answers only in dev mode (`anonymous_access`).",
    )

    @field_validator("jwt_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        symmetric = [a for a in value if not a.startswith(("RS", "PS", "ES", "EdDSA"))]
        if symmetric or not value:
            raise ValueError(f"only asymmetric algorithms (RS*, PS*, ES*, EdDSA): {symmetric}")
        return value

    @property
    def jwt_enabled(self) -> bool:
        return bool(self.jwt_jwks_url)
