"""LLM settings. Env prefix ``CADENZA_LLM_``; nested values use ``__`` or JSON, e.g.
``CADENZA_LLM_PROVIDERS__OPENAI__API_KEY=sk-...`` or
``CADENZA_LLM_PROVIDERS='{"openai": {"base_url": "https://api.openai.com/v1", "api_key": "sk-..."}}'``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

RESERVED_PROVIDERS = ("local", "replay")


class Price(BaseModel):
    """USD per million tokens."""

    input_per_mtok: float = Field(ge=0, description="USD per 1M input (prompt) tokens.")
    output_per_mtok: float = Field(ge=0, description="USD per 1M output (completion) tokens.")


class OpenAIProviderSettings(BaseModel):
    """One OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, LiteLLM...)."""

    base_url: str = Field(
        description="Base URL up to and including the API version, e.g. https://api.openai.com/v1 "
        "or http://127.0.0.1:11434/v1 (Ollama); `/chat/completions` is appended."
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="Bearer key; omitted when unset (local servers). Never logged or traced.",
    )
    timeout_s: float = Field(default=60.0, gt=0, description="Per-attempt HTTP timeout.")
    max_attempts: int = Field(
        default=4,
        ge=1,
        le=20,
        description="Attempts per call, first included, on retryable errors.",
    )
    initial_backoff_s: float = Field(
        default=0.5, ge=0, description="First retry delay; doubles per attempt, with jitter."
    )
    max_backoff_s: float = Field(default=20.0, ge=0, description="Cap of one retry delay.")
    max_retry_after_s: float = Field(
        default=60.0, ge=0, description="Cap on a server's `Retry-After` we are willing to wait."
    )
    stream: bool = Field(
        default=False,
        description="Use server-sent-event streaming (`stream: true`); the response is assembled "
        "from the chunks, usage via `stream_options.include_usage`.",
    )
    schema_with_tools: bool = Field(
        default=False,
        description="Send `response_format` also on turns that offer tools. Off by default: "
        "servers that enforce the schema as a grammar (llama.cpp) then answer at once without "
        "calling a tool; turn on for servers that combine both correctly (OpenAI).",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")


class LLMSettings(BaseSettings):
    """Providers, local model, record/replay, prices and telemetry. Env prefix ``CADENZA_LLM_``."""

    model_config = SettingsConfigDict(
        env_prefix="CADENZA_LLM_", env_nested_delimiter="__", extra="ignore"
    )

    providers: dict[str, OpenAIProviderSettings] = Field(
        default_factory=dict,
        description="OpenAI-compatible providers by name (the `provider` in `provider:model`). "
        "`local` and `replay` are reserved.",
    )
    local_models: dict[str, Path] = Field(
        default_factory=dict,
        description="Extra GGUF models for the `local` provider, name -> file path "
        "(added to the built-in `smollm2-135m`).",
    )
    local_threads: int = Field(default=2, ge=1, description="CPU threads of the embedded model.")
    local_context_tokens: int = Field(
        default=4096, ge=256, description="Context window (n_ctx) of the embedded model."
    )
    local_max_tokens: int = Field(
        default=512, ge=1, description="Output cap of the embedded model when a request sets none."
    )
    local_max_string_chars: int | None = Field(
        default=128,
        ge=1,
        description="maxLength given to JSON strings without one in the embedded model's "
        "constrained output (tool arguments, structured answers), so a tiny model cannot run "
        "on inside a string until max_tokens cuts the JSON off. Empty/null: no cap.",
    )
    cassette_mode: Literal["off", "record", "replay"] = Field(
        default="off",
        description="`record`: every provider's responses are written to the cassette; "
        "`replay`: every `provider:model` is answered from the cassette (a miss is an error).",
    )
    cassette_path: Path = Field(
        default=Path("cassettes/llm.json"),
        description="Cassette file (JSON); a directory means `<dir>/cassette.json`. "
        "The `replay` provider and record mode use it.",
    )
    replay_delay_s: float = Field(
        default=0.0,
        ge=0,
        le=600,
        description="Seconds each replayed answer takes (0 = at once): a slow model on demand, "
        "e.g. to stop a worker in the middle of an agent loop in crash tests.",
    )
    prices: dict[str, Price] = Field(
        default_factory=dict,
        description='Price overrides, "provider:model" (or "provider:*") -> '
        "{input_per_mtok, output_per_mtok} in USD, merged over the built-in table.",
    )
    capture_content: bool = Field(
        default=False,
        description="Attach prompts and responses to spans (gen_ai.input/output.messages). "
        "Off by default: they may hold personal data.",
    )

    @model_validator(mode="after")
    def _no_reserved_names(self) -> LLMSettings:
        for name in self.providers:
            if name in RESERVED_PROVIDERS or ":" in name or not name:
                raise ValueError(
                    f"providers: {name!r} is not a valid provider name "
                    f"(reserved: {', '.join(RESERVED_PROVIDERS)}; no ':')"
                )
        return self

    def cassette_file(self) -> Path:
        path = self.cassette_path
        return path / "cassette.json" if path.is_dir() else path
