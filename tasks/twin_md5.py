"""The part MD5s and the whole-object MD5 of one stream of bytes, in about the time of one MD5.

A streamed PUT from a source written in parts checks every byte twice: the part MD5s must
rebuild the source's multipart ETag (the read is right), and the whole-object MD5 must equal the
ETag the destination computes (the write is right). Both run over the same bytes, and MD5 is
bound by the latency of its one dependency chain, so the compiled ``tasks._twin_md5`` advances
both states in one loop in about the time of one (measured: 513 MiB/s for the pair against
283 MiB/s for two hashlib passes; the README's Verify bullet). Where it is not built, or the part size is not a whole number of
64-byte blocks (then the two states fall out of step), ``SplitMD5`` does the same with hashlib:
part 1 is hashed once and its state carried on as the whole-object hash.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any, Protocol

try:
    from tasks._twin_md5 import compress1, compress2
except ImportError:  # not compiled here: the hashlib path below gives the same digests
    compress1 = compress2 = None

NATIVE = compress2 is not None
BLOCK = 64
_INIT = struct.pack("<4I", 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)


class PartsAndWhole(Protocol):
    def update(self, data: bytes | memoryview) -> None: ...
    def part_digests(self) -> list[bytes]: ...
    def part_digest(self, number: int) -> bytes: ...
    def whole_digest(self) -> bytes: ...


def parts_and_whole_md5(part_size: int, size: int | None = None) -> PartsAndWhole:
    """The fastest hasher that gives both for parts of ``part_size``: the shared AVX-512 lanes
    (``tasks.md5_lanes``) where they run, else ``TwinMD5``, else hashlib. An object of ``size``
    bytes that fits in one part needs one MD5 only: its part is the whole."""
    if part_size <= 0:
        raise ValueError(f"part size must be positive, got {part_size}")
    if part_size % BLOCK == 0:
        from tasks import md5_lanes  # it imports this module

        if md5_lanes.ENGINE is not None:
            return md5_lanes.LanedTwinMD5(part_size, size)
    if NATIVE and part_size % BLOCK == 0 and (size is None or size > part_size):
        return TwinMD5(part_size)
    return SplitMD5(part_size)


def _finish(state: bytes, tail: bytes, length: int) -> bytes:
    """The digest of a message of ``length`` bytes whose whole blocks left ``state`` and whose
    last ``len(tail)`` (< 64) bytes are ``tail``: RFC 1321's padding, on copies of the state."""
    pad = tail + b"\x80" + b"\0" * ((55 - len(tail)) % BLOCK) + struct.pack("<Q", (length * 8) & (2**64 - 1))
    mine, spare = bytearray(state), bytearray(_INIT)
    compress2(mine, spare, pad)
    return bytes(mine)


class TwinMD5:
    """Two MD5 states in step over whole blocks: ``_part`` restarts at every part boundary (a
    multiple of 64 bytes, so both states always stand at the same block boundary), ``_whole``
    runs over everything. Bytes short of a whole block wait in ``_tail``."""

    def __init__(self, part_size: int) -> None:
        if part_size <= 0 or part_size % BLOCK:
            raise ValueError(f"TwinMD5 needs a part size that is a positive multiple of {BLOCK}, got {part_size}")
        self.part_size = part_size
        self._part = bytearray(_INIT)
        self._whole = bytearray(_INIT)
        self._tail = bytearray()
        self._in_part = 0  # bytes of the current part fed so far (its tail included)
        self._total = 0
        self._digests: list[bytes] = []

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            take = min(len(view), self.part_size - self._in_part)
            self._feed(view[:take])
            view = view[take:]
            if self._in_part == self.part_size:  # the tail is empty here: parts are whole blocks
                self._close_part()
                self._in_part = 0

    def _close_part(self) -> None:
        self._digests.append(_finish(self._part, b"", self.part_size))
        self._part[:] = _INIT

    def _blocks(self, data: bytes | memoryview) -> None:
        """Advance both states over whole blocks (``tasks.md5_lanes`` defers this to its engine)."""
        compress2(self._part, self._whole, data)

    def _feed(self, view: memoryview) -> None:
        self._in_part += len(view)
        self._total += len(view)
        if self._tail:
            fill = min(BLOCK - len(self._tail), len(view))
            self._tail += view[:fill]
            view = view[fill:]
            if len(self._tail) < BLOCK:
                return
            self._blocks(bytes(self._tail))
            self._tail.clear()
        whole = len(view) - len(view) % BLOCK
        if whole:
            self._blocks(view[:whole])
        self._tail += view[whole:]

    def part_digests(self) -> list[bytes]:
        """The MD5 of every part so far, a last shorter part included."""
        if not self._in_part:
            return list(self._digests)
        return [*self._digests, _finish(self._part, bytes(self._tail), self._in_part)]

    def part_digest(self, number: int) -> bytes:
        """The MD5 of 1-based part ``number``: a finished part, or the one being fed."""
        if number <= len(self._digests):
            return self._digests[number - 1]
        if number == len(self._digests) + 1 and self._in_part:
            return _finish(self._part, bytes(self._tail), self._in_part)
        raise IndexError(f"part {number} has no bytes yet ({len(self._digests)} finished)")

    def whole_digest(self) -> bytes:
        return _finish(self._whole, bytes(self._tail), self._total)


class SplitMD5:
    """The same with hashlib: one MD5 per part, and the whole-object MD5 carried on from part 1's
    state, so part 1 is hashed once and every later byte twice."""

    def __init__(self, part_size: int) -> None:
        if part_size <= 0:
            raise ValueError(f"part size must be positive, got {part_size}")
        self.part_size = part_size
        self._md5: Any = hashlib.md5()  # hashlib's hash type is private
        self._whole: Any = None  # from the end of part 1 on
        self._left = part_size
        self._digests: list[bytes] = []

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            take = min(self._left, len(view))
            piece = view[:take]
            self._md5.update(piece)
            if self._whole is not None:
                self._whole.update(piece)
            self._left -= take
            view = view[take:]
            if self._left == 0:
                self._digests.append(self._md5.digest())
                if self._whole is None:
                    self._whole = self._md5.copy()
                self._md5, self._left = hashlib.md5(), self.part_size

    def part_digests(self) -> list[bytes]:
        if self._left == self.part_size:
            return list(self._digests)
        return [*self._digests, self._md5.digest()]

    def part_digest(self, number: int) -> bytes:
        if number <= len(self._digests):
            return self._digests[number - 1]
        if number == len(self._digests) + 1 and self._left < self.part_size:
            return self._md5.digest()
        raise IndexError(f"part {number} has no bytes yet ({len(self._digests)} finished)")

    def whole_digest(self) -> bytes:
        return (self._whole if self._whole is not None else self._md5).digest()
