"""BM25 keyword vectors for hybrid search, as Qdrant sparse vectors.

A chunk's vector holds the BM25 term-frequency part of each term, ``tf·(k1+1) / (tf +
k1·(1-b+b·len/avglen))``; Qdrant multiplies in the IDF from its own collection statistics
at query time (the sparse vector's ``Modifier.IDF``), so the score of a query — a vector of
1s over its terms — is the chunk's BM25 score. Terms are lower-cased word tokens, with
English stop words dropped and a light plural/verb-suffix folding, hashed to 31-bit ids.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter

K1 = 1.2
B = 0.75
AVERAGE_TERMS = 150.0
"""Typical terms per chunk (~1000 characters); BM25 length normalisation needs a corpus
average, which an incremental index does not know, so a fixed, typical one stands in."""

# Words, with a possessive/contraction tail ("customer's", "don't") split off below.
_WORD = re.compile(r"[0-9a-z]+(?:['\u2019][a-z]+)?")
_STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is
    it its itself just me more most my myself no nor not now of off on once only or other our
    ours ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we
    were what when where which while who whom why will with you your yours yourself
    yourselves""".split()  # noqa: SIM905 - a word list reads better as text
)


def _fold(word: str) -> str:
    """Fold common English suffixes so `refunds`/`refund`, `policies`/`policy` match."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed") and not word.endswith("eed"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def terms(text: str) -> list[str]:
    words = (w.replace("\u2019", "'").split("'")[0] for w in _WORD.findall(text.lower()))
    return [_fold(w) for w in words if w and w not in _STOP_WORDS]


def term_id(term: str) -> int:
    return zlib.crc32(term.encode()) & 0x7FFFFFFF


def _merge(ids: list[int], weights: list[float]) -> tuple[list[int], list[float]]:
    """Sum the weights of hash collisions: Qdrant refuses duplicate indices."""
    merged: dict[int, float] = {}
    for i, w in zip(ids, weights, strict=True):
        merged[i] = merged.get(i, 0.0) + w
    return list(merged), list(merged.values())


def document_vector(text: str) -> tuple[list[int], list[float]]:
    """(indices, values) of a chunk's BM25 term weights (IDF applied by the store)."""
    counts = Counter(terms(text))
    length = sum(counts.values())
    norm = K1 * (1 - B + B * length / AVERAGE_TERMS)
    ids = [term_id(t) for t in counts]
    weights = [tf * (K1 + 1) / (tf + norm) for tf in counts.values()]
    return _merge(ids, weights)


def query_vector(text: str) -> tuple[list[int], list[float]]:
    """(indices, values) of a query: each distinct term once."""
    unique = list(dict.fromkeys(terms(text)))
    return _merge([term_id(t) for t in unique], [1.0] * len(unique))
