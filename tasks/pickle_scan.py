"""Scan PyTorch pickle checkpoints for imports by disassembly, never by unpickling.

A pickle can import any callable (GLOBAL / STACK_GLOBAL / INST) and call it on load: that is how
``torch.load`` rebuilds tensors and how a malicious checkpoint runs ``os.system``. Like modelscan
and picklescan, we walk the opcodes with ``pickletools.genops`` (which executes nothing) and
name every global: a denylisted one (os, subprocess, builtins.eval ...) is dangerous, and any
global not on the allowlist of tensor-rebuild functions is reported too, since it cannot be vetted.

Handles a bare pickle (legacy ``torch.save``: several pickles back to back, then raw storage
bytes) and the zip layout of ``torch.save`` since 1.6 (``archive/data.pkl`` + ``archive/data/N``).
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from typing import BinaryIO

from tasks.checkpoint_findings import Finding, FindingKind, finding

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
ZIP_MAGIC = b"PK\x03\x04"
MAX_CONSECUTIVE_PICKLES = 16

_TORCH_STORAGES = {
    f"{p}Storage" for p in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool",
                            "ComplexFloat", "ComplexDouble", "QInt8", "QUInt8", "QInt32", "QUInt4x2", "QUInt2x4", "Untyped")
}
_TORCH_DTYPES = {
    "float16", "float32", "float64", "bfloat16", "half", "float", "double", "int8", "int16", "int32", "int64",
    "uint8", "bool", "complex64", "complex128", "long", "int", "short", "float8_e4m3fn", "float8_e5m2",
}

# module -> names (or "*" for any name in that module) known to rebuild tensors and containers.
ALLOWED: dict[str, set[str]] = {
    "torch._utils": {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                     "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_sparse_tensor",
                     "_rebuild_device_tensor_from_numpy", "_rebuild_meta_tensor_no_storage",
                     "_rebuild_wrapper_subclass", "_rebuild_nested_tensor"},
    "torch._tensor": {"_rebuild_from_type_v2"},
    "torch": _TORCH_STORAGES | _TORCH_DTYPES | {"Size", "device", "Tensor", "strided", "sparse_coo", "per_tensor_affine", "contiguous_format"},
    "torch.storage": {"UntypedStorage", "TypedStorage"},
    "torch.nn.parameter": {"Parameter"},
    "collections": {"OrderedDict", "defaultdict"},
    "builtins": {"set", "frozenset", "dict", "list", "tuple", "slice", "complex", "bytearray", "bytes", "int", "float", "bool", "str", "object"},
    "__builtin__": {"set", "frozenset", "dict", "list", "tuple", "slice", "complex", "bytearray"},
    "copy_reg": {"_reconstructor"},
    "copyreg": {"_reconstructor"},
    "numpy": {"ndarray", "dtype"},
    "numpy.core.multiarray": {"_reconstruct", "scalar"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "_codecs": {"encode"},
}

# module -> names ("*" = the whole module) that run code, reach the network or touch files.
DANGEROUS: dict[str, set[str]] = {
    "os": {"*"}, "posix": {"*"}, "nt": {"*"}, "subprocess": {"*"}, "socket": {"*"}, "runpy": {"*"},
    "shutil": {"*"}, "sys": {"*"}, "pty": {"*"}, "commands": {"*"}, "webbrowser": {"*"}, "ctypes": {"*"},
    "importlib": {"*"}, "pickle": {"*"}, "_pickle": {"*"}, "marshal": {"*"}, "code": {"*"}, "requests": {"*"},
    "urllib": {"*"}, "urllib.request": {"*"}, "http.client": {"*"}, "httplib": {"*"}, "asyncio": {"*"},
    "multiprocessing": {"*"}, "signal": {"*"}, "torch.storage": {"_load_from_bytes"},
    "builtins": {"eval", "exec", "execfile", "compile", "getattr", "setattr", "delattr", "__import__", "open",
                 "input", "globals", "locals", "vars", "breakpoint", "apply"},
    "__builtin__": {"eval", "exec", "execfile", "compile", "getattr", "setattr", "delattr", "__import__", "open",
                    "input", "globals", "locals", "vars", "apply"},
}

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}


def _matches(table: dict[str, set[str]], module: str, name: str) -> bool:
    top = module.split(".")[0]
    for mod in (module, top):
        names = table.get(mod)
        if names and ("*" in names or name in names):
            return True
    return False


def classify_global(module: str, name: str) -> FindingKind | None:
    """None for an allowed global, else the finding kind it deserves."""
    if _matches(DANGEROUS, module, name):
        return FindingKind.pickle_dangerous_global
    if name in ALLOWED.get(module, set()):
        return None
    return FindingKind.pickle_unallowed_global


def pickle_globals(stream: BinaryIO) -> list[tuple[str, str, int]]:
    """(module, name, position) of every import in one pickle; raises ValueError on a malformed one."""
    found: list[tuple[str, str, int]] = []
    strings: list[str | None] = []  # recent pushes, for STACK_GLOBAL (None = not a string)
    memo: dict[int, str | None] = {}
    memo_next = 0
    for op, arg, pos in pickletools.genops(stream):
        name = op.name
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            found.append((module, attr, pos))
            strings.append(None)
        elif name == "STACK_GLOBAL":
            if len(strings) < 2 or strings[-1] is None or strings[-2] is None:
                found.append(("<unknown>", "<STACK_GLOBAL with computed operands>", pos))
            else:
                found.append((strings[-2], strings[-1], pos))
            strings.append(None)
        elif name in _STRING_OPS:
            strings.append(arg if isinstance(arg, str) else arg.decode("latin-1") if isinstance(arg, bytes) else str(arg))
        elif name in _PUT_OPS:
            memo[int(arg)] = strings[-1] if strings else None
        elif name == "MEMOIZE":
            memo[memo_next] = strings[-1] if strings else None
            memo_next += 1
        elif name in _GET_OPS:
            strings.append(memo.get(int(arg)))
        elif name == "STOP":
            break
        else:
            strings.append(None)
        if len(strings) > 64:
            del strings[:-8]
    return found


def scan_pickle_stream(stream: BinaryIO, file: str, *, member: str | None = None, base_offset: int = 0) -> list[Finding]:
    """Every import finding in the pickles at the start of ``stream`` (legacy torch.save writes several)."""
    findings: list[Finding] = []
    where = f"{file}:{member}" if member else file
    for index in range(MAX_CONSECUTIVE_PICKLES):
        start = stream.tell()
        head = stream.read(1)
        if not head:
            break
        stream.seek(start)
        try:
            imports = pickle_globals(stream)
        except Exception as exc:  # noqa: BLE001 - genops raises ValueError and friends on junk
            if index == 0:
                findings.append(finding(FindingKind.pickle_invalid, file, f"{where} is not a pickle: {exc}"[:300], offset=base_offset + start))
            break  # raw tensor bytes follow the pickles of a legacy checkpoint
        for module, name, pos in imports:
            kind = classify_global(module, name)
            if kind is not None:
                label = "runs code or reaches outside the process" if kind is FindingKind.pickle_dangerous_global else "is not a known tensor-rebuild function"
                findings.append(finding(kind, file, f"{where} imports {module}.{name}, which {label}", offset=base_offset + start + pos))
    return findings


def scan_pickle_file(fileobj: BinaryIO, file: str) -> list[Finding]:
    """A torch zip checkpoint (every ``.pkl`` member) or a bare pickle file."""
    head = fileobj.read(4)
    fileobj.seek(0)
    if head == ZIP_MAGIC:
        try:
            archive = zipfile.ZipFile(fileobj)
        except zipfile.BadZipFile as exc:
            return [finding(FindingKind.zip_invalid, file, f"zip archive unreadable: {exc}", offset=0)]
        findings: list[Finding] = []
        members = [i for i in archive.infolist() if i.filename.endswith(".pkl")]
        if not members:
            return [finding(FindingKind.zip_invalid, file, "zip archive holds no .pkl member (torch.save writes <name>/data.pkl)")]
        for info in members:
            try:
                data = archive.read(info)  # the pickle part only: tensors live in other members
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:  # bad CRC, odd compression, encrypted
                findings.append(finding(FindingKind.zip_invalid, file, f"member {info.filename}: {exc}", offset=info.header_offset))
                continue
            findings += scan_pickle_stream(io.BytesIO(data), file, member=info.filename, base_offset=info.header_offset)
        return findings
    return scan_pickle_stream(fileobj, file)
