"""A real OpenAI-compatible server for tests: llama.cpp's HTTP server (inside ``xllamacpp``)
over the embedded model, with the tool chat template Cadenza ships. One per test session
and module that asks for it; nothing is downloaded (the model is a package file)."""

from __future__ import annotations

from cadenza_llm import OpenAICompatibleProvider, OpenAIProviderSettings
from cadenza_llm.llama_server import LlamaServer, packaged_model

from . import service_missing


def start_llama_server() -> LlamaServer:
    """Start it, or fail under CI=true / skip elsewhere when it cannot start."""
    try:
        server = LlamaServer(packaged_model(), context_tokens=2048)
        server.start()
    except Exception as exc:  # a missing model package, a build without the server...
        service_missing(f"llama.cpp server could not start: {type(exc).__name__}: {exc}")
    return server


def llama_provider(server: LlamaServer, **settings: object) -> OpenAICompatibleProvider:
    """The ``openai_compatible`` provider pointed at ``server`` (no retries: a failure shows)."""
    values: dict[str, object] = {
        "base_url": server.base_url,
        "max_attempts": 1,
        "timeout_s": 120.0,
        **settings,
    }
    return OpenAICompatibleProvider("llamacpp", OpenAIProviderSettings.model_validate(values))
