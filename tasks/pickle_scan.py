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
from collections.abc import Iterator
from enum import Enum
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
_SAME_OBJECT_OPS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}  # fill the object below, leave it there
_MARK = pickletools.markobject


class _NotStr(Enum):
    """A stack value known not to be a str (STACK_GLOBAL refuses it); None stands for 'could be anything'."""

    NOT_STR = "not a str"


_Value = str | _NotStr | None
_NOT_STR = _NotStr.NOT_STR
# Opcodes whose result may be any object (a call's result, a global, a persistent id, a buffer).
_ANY_RESULT = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4",
               "PERSID", "BINPERSID", "NEXT_BUFFER", "READONLY_BUFFER"}


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


def _text(arg: object) -> str:
    return arg if isinstance(arg, str) else arg.decode("latin-1") if isinstance(arg, bytes) else str(arg)


def iter_pickle_globals(stream: BinaryIO) -> Iterator[tuple[str, str, int]]:
    """(module, name, position) of each import of one pickle, in the order the unpickler meets them.

    The unpickler's stack (MARK fences included) and memo are mirrored exactly, holding the
    string values and _NOT_STR or None for anything else: STACK_GLOBAL names what ``pickle.loads``
    would import, whatever PUT/MEMOIZE/GET games the pickle plays (MEMOIZE stores at ``len(memo)``,
    which PUTs to arbitrary indexes grow too). Raises ValueError where the unpickler fails too
    (junk opcode, stack underflow, unknown memo index, STACK_GLOBAL on a non-string): imports
    already yielded have run by then, later ones never do.
    """
    stack: list[_Value] = []
    marks: list[list[_Value]] = []  # the stacks saved by each open MARK
    memo: dict[int, _Value] = {}
    for op, arg, pos in pickletools.genops(stream):
        name = op.name
        if name == "MARK":
            marks.append(stack)
            stack = []
            continue
        if name == "POP" and not stack and marks:  # POP on an empty slice drops the MARK
            stack = marks.pop()
            continue
        if name in _PUT_OPS or name == "MEMOIZE":  # store the top, leave the stack as it is
            if not stack:
                raise ValueError(f"{name} at byte {pos} finds an empty stack")
            memo[len(memo) if name == "MEMOIZE" else int(arg)] = stack[-1]
            continue
        before = op.stack_before
        if _MARK in before:
            if not marks:
                raise ValueError(f"{name} at byte {pos} finds no MARK")
            stack = marks.pop()
            before = before[: before.index(_MARK)]
        if len(stack) < len(before):
            raise ValueError(f"{name} at byte {pos} pops {len(before)} items from a stack of {len(stack)}")
        popped = stack[len(stack) - len(before):]
        del stack[len(stack) - len(before):]
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            yield module, attr, pos
        elif name == "STACK_GLOBAL":
            module, attr = popped
            if module is _NOT_STR or attr is _NOT_STR:
                raise ValueError(f"STACK_GLOBAL at byte {pos} needs two strings")
            if module is None or attr is None:
                yield "<unknown>", "<STACK_GLOBAL with computed operands>", pos
            else:
                yield module, attr, pos
        if name in _STRING_OPS:
            stack.append(_text(arg))
        elif name in _GET_OPS:
            if int(arg) not in memo:
                raise ValueError(f"{name} at byte {pos} reads memo index {arg}, which was never stored")
            stack.append(memo[int(arg)])
        elif name == "DUP":
            stack += popped * 2
        elif name in _SAME_OBJECT_OPS:
            stack.append(popped[0])
        elif name == "STOP":
            return
        else:
            stack += [None if name in _ANY_RESULT else _NOT_STR] * len(op.stack_after)


def _import_finding(module: str, name: str, file: str, where: str, offset: int) -> Finding | None:
    kind = classify_global(module, name)
    if kind is None:
        return None
    label = "runs code or reaches outside the process" if kind is FindingKind.pickle_dangerous_global else "is not a known tensor-rebuild function"
    return finding(kind, file, f"{where} imports {module}.{name}, which {label}", offset=offset)


def scan_pickle_stream(stream: BinaryIO, file: str, *, member: str | None = None, base_offset: int = 0) -> list[Finding]:
    """Every import finding in the pickles at the start of ``stream`` (legacy torch.save writes several).

    A pickle that breaks off still has its earlier imports reported: the unpickler ran them
    before reaching the break. The break itself is a finding for the first pickle, or for a later
    one that imported something; a later one that breaks before importing anything is taken for
    the raw tensor bytes that follow the pickles of a legacy checkpoint.
    """
    findings: list[Finding] = []
    where = f"{file}:{member}" if member else file
    for index in range(MAX_CONSECUTIVE_PICKLES):
        start = stream.tell()
        head = stream.read(1)
        if not head:
            break
        stream.seek(start)
        imports: list[tuple[str, str, int]] = []
        error: Exception | None = None
        try:
            for item in iter_pickle_globals(stream):
                imports.append(item)
        except Exception as exc:  # noqa: BLE001 - genops raises ValueError and friends on junk
            error = exc
        for module, name, pos in imports:
            found = _import_finding(module, name, file, where, base_offset + start + pos)
            if found is not None:
                findings.append(found)
        if error is None:
            continue
        if index == 0 and not imports:
            findings.append(finding(FindingKind.pickle_invalid, file, f"{where} is not a pickle: {error}"[:300], offset=base_offset + start))
        elif imports:
            detail = f"{where}: pickle {index + 1} breaks off after {len(imports)} import(s), which loading runs first: {error}"
            findings.append(finding(FindingKind.pickle_invalid, file, detail[:300], offset=base_offset + start))
        break  # raw tensor bytes follow the pickles of a legacy checkpoint
    return findings


def scan_pickle_file(fileobj: BinaryIO, file: str) -> list[Finding]:
    """A torch zip checkpoint (every ``.pkl`` member) or a bare pickle file."""
    head = fileobj.read(4)
    fileobj.seek(0)
    if head == ZIP_MAGIC:
        try:
            archive = zipfile.ZipFile(fileobj)
        except Exception as exc:  # noqa: BLE001 - a hostile central directory raises BadZipFile, NotImplementedError, ValueError ...
            return [finding(FindingKind.zip_invalid, file, f"zip archive unreadable: {type(exc).__name__}: {exc}", offset=0)]
        findings: list[Finding] = []
        members = [i for i in archive.infolist() if i.filename.endswith(".pkl")]
        if not members:
            return [finding(FindingKind.zip_invalid, file, "zip archive holds no .pkl member (torch.save writes <name>/data.pkl)")]
        for info in members:
            try:
                data = archive.read(info)  # the pickle part only: tensors live in other members
            except Exception as exc:  # noqa: BLE001 - bad CRC, odd compression, encrypted, corrupt deflate (zlib.error) ...
                findings.append(finding(FindingKind.zip_invalid, file, f"member {info.filename}: {type(exc).__name__}: {exc}", offset=info.header_offset))
                continue
            findings += scan_pickle_stream(io.BytesIO(data), file, member=info.filename, base_offset=info.header_offset)
        return findings
    return scan_pickle_stream(fileobj, file)
