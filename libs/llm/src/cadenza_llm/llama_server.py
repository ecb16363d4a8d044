"""The llama.cpp HTTP server inside ``xllamacpp``, serving a local GGUF model over the OpenAI
chat-completions API — a real OpenAI-compatible server for tests, and for anyone who wants the
embedded model behind an ``openai_compatible`` provider.

The model's own chat template is replaced by ``templates/chatml-tools.jinja``: SmolLM2's
template has no tool support, and llama.cpp silently drops a request's ``tools`` with it.

    python -m cadenza_llm.llama_server [--port 8090] [--model smollm2-135m]
"""

from __future__ import annotations

import argparse
import secrets
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import UnknownModelError
from .local import PACKAGED_MODELS, packaged_model_path

TOOL_TEMPLATE = "chatml-tools.jinja"


def tool_chat_template() -> str:
    """The shipped ChatML template with tool support (Jinja, as llama.cpp's ``--jinja``)."""
    return resources.files("cadenza_llm").joinpath("templates", TOOL_TEMPLATE).read_text()


def packaged_model(name: str = "smollm2-135m") -> Path:
    spec = PACKAGED_MODELS.get(name)
    path = packaged_model_path(spec) if spec is not None else None
    if path is None:
        raise UnknownModelError(f"packaged model {name!r} is not installed")
    return path


@dataclass
class LlamaServer:
    """One llama.cpp server process-thread. ``start()`` loads the model and listens;
    the listener lives as long as the object (xllamacpp stops it when it is collected)."""

    model_path: Path
    port: int = 0  # 0: any free port
    threads: int = 2
    context_tokens: int = 4096
    api_key: str | None = None
    chat_template: str | None = None  # None: the shipped tool template
    _server: Any = None

    def start(self) -> str:
        """Start serving; returns the base URL up to ``/v1``."""
        import xllamacpp as xlc

        params = xlc.CommonParams()
        params.model.path = str(self.model_path)
        params.n_ctx = self.context_tokens
        params.cpuparams.n_threads = self.threads
        params.port = self.port
        params.warmup = False
        params.verbosity = -1
        params.use_jinja = True
        params.chat_template = self.chat_template or tool_chat_template()
        params.model_alias = [self.model_path.stem]
        if self.api_key:
            params.api_keys = [self.api_key]
        self._server = xlc.Server(params)
        return self.base_url

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("server not started")
        return f"{self._server.listening_address}/v1"

    def stop(self) -> None:
        self._server = None  # xllamacpp shuts the listener down on deallocation


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="a packaged model name")
    parser.add_argument("--model-path", type=Path, help="any GGUF file instead")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--api-key", default=None, help="require this bearer key")
    parser.add_argument("--random-key", action="store_true", help="generate and print a key")
    args = parser.parse_args(argv)
    key = secrets.token_hex(16) if args.random_key else args.api_key
    server = LlamaServer(
        args.model_path or packaged_model(args.model), args.port, args.threads, api_key=key
    )
    print(f"serving {server.model_path.name} at {server.start()}", flush=True)
    if args.random_key:
        print(f"api key: {key}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
