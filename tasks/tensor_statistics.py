"""Optional per-tensor statistics: NaN, Inf and all-zero tensors, computed in streamed blocks."""

from __future__ import annotations

import numpy as np

from tasks.checkpoint_findings import Finding, FindingKind, finding

BLOCK = 16 * 1024 * 1024  # bytes per numpy pass: bounded temporaries however large the tensor

_FLOATS = {"F16": np.float16, "F32": np.float32, "F64": np.float64}
_ITEMSIZE = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}  # dtypes whose elements are decoded; the rest are bytes


class TensorStats:
    """Feed a tensor's bytes in order, in chunks of any size; read the findings at the end.

    A ranged read can end mid-element (remote sources slice fixed-size blocks), so the bytes of
    a split element wait for the next chunk: every element is decoded once, whole.
    """

    def __init__(self, name: str, dtype: str, start: int):
        self.name, self.dtype, self.start = name, dtype, start
        self.nan = self.inf = 0
        self.nonzero = False
        self.length = 0
        self._itemsize = _ITEMSIZE.get(dtype, 1)
        self._carry = b""  # the first bytes of an element the last chunk split

    def add(self, buf: memoryview | bytes) -> None:
        self.length += len(buf)
        if self._carry:
            need = self._itemsize - len(self._carry)
            self._carry += bytes(buf[:need])
            buf = buf[need:]
            if len(self._carry) < self._itemsize:
                return
            self._add_block(self._carry)
            self._carry = b""
        whole = len(buf) - len(buf) % self._itemsize
        for pos in range(0, whole, BLOCK):  # BLOCK is a multiple of every item size
            self._add_block(buf[pos : min(pos + BLOCK, whole)])
        self._carry = bytes(buf[whole:])

    def _add_block(self, block: memoryview | bytes) -> None:
        if not self.nonzero:
            wide = np.uint64 if len(block) % 8 == 0 else np.uint8
            self.nonzero = bool(np.any(np.frombuffer(block, dtype=wide)))
        if self.dtype in _FLOATS:
            arr = np.frombuffer(block, dtype=_FLOATS[self.dtype])
            self.nan += int(np.count_nonzero(np.isnan(arr)))
            self.inf += int(np.count_nonzero(np.isinf(arr)))
        elif self.dtype == "BF16":
            bits = np.frombuffer(block, dtype=np.uint16)
            special = (bits & 0x7F80) == 0x7F80
            mantissa = (bits & 0x007F) != 0
            self.nan += int(np.count_nonzero(special & mantissa))
            self.inf += int(np.count_nonzero(special & ~mantissa))

    def findings(self, file: str) -> list[Finding]:
        out = []
        if self.nan:
            out.append(finding(FindingKind.tensor_nan, file, f"{self.nan} NaN values", tensor=self.name, offset=self.start))
        if self.inf:
            out.append(finding(FindingKind.tensor_inf, file, f"{self.inf} infinite values", tensor=self.name, offset=self.start))
        if self.length and not self.nonzero and not any(self._carry):  # a trailing part-element still counts
            out.append(finding(FindingKind.tensor_all_zero, file, f"all {self.length} bytes are zero", tensor=self.name, offset=self.start))
        return out
