"""LLM providers behind one interface: OpenAI-compatible endpoints, an embedded local model and
record/replay cassettes, with spans, metrics and a price table. See docs/llm.md."""

from .cassette import Cassette, RecordingProvider, ReplayProvider, request_key
from .errors import (
    AuthError,
    BadRequestError,
    CassetteMissError,
    InvalidOutputError,
    LLMError,
    ProviderUnavailableError,
    RateLimitedError,
    UnknownModelError,
    UnknownProviderError,
)
from .local import PACKAGED_MODELS, LocalProvider
from .openai_compatible import OpenAICompatibleProvider
from .prices import DEFAULT_PRICES, PriceTable
from .provider import Provider
from .registry import ProviderRegistry
from .settings import LLMSettings, OpenAIProviderSettings, Price
from .telemetry import InstrumentedProvider
from .types import (
    ChatRequest,
    ChatResponse,
    ToolCall,
    ToolChoice,
    ToolSpec,
    Usage,
    assistant_message,
    tool_message,
)

__all__ = [
    "DEFAULT_PRICES",
    "PACKAGED_MODELS",
    "AuthError",
    "BadRequestError",
    "Cassette",
    "CassetteMissError",
    "ChatRequest",
    "ChatResponse",
    "InstrumentedProvider",
    "InvalidOutputError",
    "LLMError",
    "LLMSettings",
    "LocalProvider",
    "OpenAICompatibleProvider",
    "OpenAIProviderSettings",
    "Price",
    "PriceTable",
    "Provider",
    "ProviderRegistry",
    "ProviderUnavailableError",
    "RateLimitedError",
    "RecordingProvider",
    "ReplayProvider",
    "ToolCall",
    "ToolChoice",
    "ToolSpec",
    "UnknownModelError",
    "UnknownProviderError",
    "Usage",
    "assistant_message",
    "request_key",
    "tool_message",
]
