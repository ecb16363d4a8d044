from __future__ import annotations

import numpy as np
import pytest
from cadenza_retrieval import DIMENSIONS, get_embedder

pytestmark = pytest.mark.unit

SENTENCES = [
    "How long do refunds take?",
    "Refunds are issued within 14 days of the return.",
    "The cafeteria opens at noon on weekdays.",
    "Parcels ship from the Rotterdam warehouse.",
]


def test_vectors_are_unit_length_and_batch_independent() -> None:
    embedder = get_embedder()
    batch = embedder.encode(SENTENCES)
    assert batch.shape == (len(SENTENCES), DIMENSIONS)
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    one = embedder.encode([SENTENCES[2]])[0]
    assert float(one @ batch[2]) > 0.9999, "padding in a batch must not change a vector"


def test_related_sentences_are_closer_than_unrelated_ones() -> None:
    question, answer, other, _ = get_embedder().encode(SENTENCES)
    assert question @ answer > question @ other + 0.3


async def test_async_encoding_returns_the_same_vectors() -> None:
    embedder = get_embedder()
    (vector,) = await embedder.aencode([SENTENCES[0]], query=True)
    assert float(vector @ embedder.encode([SENTENCES[0]])[0]) > 0.9999
