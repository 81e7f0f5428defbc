"""Generate the checkpoint test corpus: real safetensors files (the `safetensors` library + numpy),
sharded checkpoints with their index, small GGUF files, and torch-style pickles written opcode by
opcode (torch is not installed, and the scanner must never need it). Then corrupt them on purpose.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

DTYPES = [np.float32, np.float16, np.float64, np.int32, np.int64, np.uint8, np.int8, np.bool_]


def tensors(seed: int = 0, count: int = 8, scale: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(count):
        dtype = DTYPES[i % len(DTYPES)]
        shape = (4 * scale + i, 3 + i % 3)
        if dtype == np.bool_:
            arr = rng.integers(0, 2, size=shape).astype(bool)
        elif np.issubdtype(dtype, np.floating):
            arr = (rng.standard_normal(shape) + 2.0).astype(dtype)
        else:
            arr = rng.integers(1, 100, size=shape).astype(dtype)
        out[f"layers.{i}.weight"] = arr
    return out


def write_single(directory: Path, name: str = "model.safetensors", seed: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    save_file(tensors(seed), str(path), metadata={"format": "np"})
    return path


def write_sharded(directory: Path, shards: int = 3, per_shard: int = 4, seed: int = 1) -> Path:
    """Shards named like transformers' (model-00001-of-00003.safetensors) and their index."""
    directory.mkdir(parents=True, exist_ok=True)
    all_tensors = tensors(seed, count=shards * per_shard)
    names = sorted(all_tensors)
    weight_map, total = {}, 0
    for s in range(shards):
        shard = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: all_tensors[n] for n in names[s * per_shard : (s + 1) * per_shard]}
        save_file(part, str(directory / shard), metadata={"format": "np"})
        for n, arr in part.items():
            weight_map[n] = shard
            total += arr.nbytes
    index = directory / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return index


def raw_safetensors(path: Path, header: dict | bytes | str, data: bytes = b"", *, length: int | None = None) -> Path:
    """A hand-made safetensors file: any header (even a broken one) and data."""
    if isinstance(header, dict):
        header = json.dumps(header, separators=(",", ":"))
    if isinstance(header, str):
        header = header.encode()
    n = len(header) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + header + data)
    return path


def header_of(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def rewrite_header(path: Path, mutate) -> Path:  # noqa: ANN001 - mutate(header dict) -> None
    header, data = header_of(path)
    mutate(header)
    return raw_safetensors(path, header, data)


def flip_bit(path: Path, offset: int, bit: int = 0) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([b ^ (1 << bit)]))


def truncate(path: Path, drop: int) -> None:
    size = path.stat().st_size
    os.truncate(path, size - drop)


# ----------------------------------------------------------------------------- GGUF

def _gguf_string(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("<Q", len(raw)) + raw


def write_gguf(path: Path, *, magic: bytes = b"GGUF", version: int = 3, misalign: bool = False,
               out_of_bounds: bool = False, truncate_header: bool = False) -> Path:
    """A small valid GGUF (two F32 tensors), or one broken in the named way."""
    kvs = [
        _gguf_string("general.architecture") + struct.pack("<I", 8) + _gguf_string("llama"),
        _gguf_string("general.alignment") + struct.pack("<I", 4) + struct.pack("<I", 32),
        _gguf_string("tokenizer.ggml.tokens") + struct.pack("<I", 9) + struct.pack("<IQ", 8, 3)
        + b"".join(_gguf_string(t) for t in ("a", "b", "c")),
    ]
    t0 = np.arange(16, dtype=np.float32)
    t1 = np.arange(8, dtype=np.float32)
    off1 = 64 + (4 if misalign else 0) + (4096 if out_of_bounds else 0)
    infos = [
        _gguf_string("tok_embd.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 4, 4) + struct.pack("<I", 0) + struct.pack("<Q", 0),
        _gguf_string("output.weight") + struct.pack("<I", 1) + struct.pack("<Q", 8) + struct.pack("<I", 0) + struct.pack("<Q", off1),
    ]
    head = magic + struct.pack("<I", version) + struct.pack("<QQ", len(infos), len(kvs)) + b"".join(kvs) + b"".join(infos)
    if truncate_header:
        path.write_bytes(head[: len(head) - 10])
        return path
    pad = (-len(head)) % 32
    data = t0.tobytes() + b"\0" * (64 - t0.nbytes) + t1.tobytes() + (b"\0" * 32 if misalign else b"")
    path.write_bytes(head + b"\0" * pad + data)
    return path


# ----------------------------------------------------------------------------- pickles

def _unicode(s: str) -> bytes:
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def torch_state_dict_pickle(names: tuple[str, ...] = ("weight", "bias")) -> bytes:
    """What torch.save writes to data.pkl for an OrderedDict of float tensors (protocol 2)."""
    out = b"\x80\x02" + _global("collections", "OrderedDict") + b")R" + b"("
    for i, name in enumerate(names):
        out += _unicode(name)
        out += _global("torch._utils", "_rebuild_tensor_v2")
        out += b"("  # args tuple of _rebuild_tensor_v2
        # persistent id ('storage', torch.FloatStorage, key, location, numel)
        out += b"(" + _unicode("storage") + _global("torch", "FloatStorage") + _unicode(str(i)) + _unicode("cpu") + b"K\x04" + b"tQ"
        out += b"K\x00"                       # storage offset
        out += b"K\x02K\x02\x86"              # size (2, 2)
        out += b"K\x02K\x01\x86"              # stride (2, 1)
        out += b"\x89"                        # requires_grad False
        out += _global("collections", "OrderedDict") + b")R"  # backward hooks
        out += b"tR"
    out += b"u."
    return out


def malicious_pickle(module: str, name: str, arg: str = "echo pwned") -> bytes:
    """A protocol-2 pickle that calls module.name(arg) when loaded (never loaded here)."""
    return b"\x80\x02" + _global(module, name) + b"(" + _unicode(arg) + b"tR."


class _Reduce:
    def __init__(self, fn, args):  # noqa: ANN001
        self.fn, self.args = fn, args

    def __reduce__(self):  # noqa: ANN204
        return self.fn, self.args


def stack_global_pickle() -> bytes:
    """A real pickle.dumps (protocol 4: STACK_GLOBAL + memo) of a payload calling os.system."""
    return pickle.dumps(_Reduce(os.system, ("echo pwned",)), protocol=4)


def torch_zip(path: Path, data_pkl: bytes, root: str = "archive") -> Path:
    """The torch.save zip layout: <root>/data.pkl, <root>/data/<key>, version, byteorder."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{root}/data.pkl", data_pkl)
        zf.writestr(f"{root}/byteorder", "little")
        zf.writestr(f"{root}/data/0", np.ones(4, dtype=np.float32).tobytes())
        zf.writestr(f"{root}/data/1", np.zeros(4, dtype=np.float32).tobytes())
        zf.writestr(f"{root}/version", "3\n")
    return path


def zip_bytes(data_pkl: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", data_pkl)
    return buf.getvalue()
