"""Streaming large objects in parts with bounded memory: pure pieces, no S3 calls.

- ``ByteBudget`` caps the bytes of part buffers alive at once across every large copy of a batch
  (a byte budget, not a count: parts of different sizes share it fairly).
- ``plan_parts`` picks the part layout. When the source was itself written in parts, copying with
  the *same* layout makes the MD5-of-part-MD5s we compute equal to the source's ETag, so one MD5
  pass per byte verifies both ends (source bytes read = source ETag; destination = our part MD5s).
- ``PartBuffer`` is an anonymous mmap sized to one part: filled in place from the socket
  (``readinto``, no intermediate copies), handed to botocore as a seekable file, unmapped after,
  so its pages go back to the OS at once instead of fragmenting the heap.
"""

from __future__ import annotations

import hashlib
import mmap
import threading
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024
MIN_PART = 5 * MIB  # S3's minimum size of every part but the last
MAX_PARTS = 10_000
# Part sizes the common S3 tools write with, in MiB (aws cli and boto3 8, minio-go 16, rclone 5,
# s5cmd 50, and the doublings tools grow into): tried first when a store does not report a layout.
COMMON_PART_MIB = (8, 16, 5, 64, 50, 32, 128, 100, 10, 25)
MAX_GUESSES = 4  # each guess costs one more MD5 pass over the object, on such stores only


class ByteBudget:
    """At most ``capacity`` bytes held at once; a request larger than the whole budget is clamped
    to it (it then runs alone), so one oversized part can never deadlock the batch."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"byte budget must be positive, got {capacity}")
        self.capacity = capacity
        self._held = 0
        self.peak = 0
        self._cond = threading.Condition()

    @property
    def held(self) -> int:
        return self._held

    def acquire(self, n: int) -> int:
        """Block until ``n`` bytes fit; returns the amount to pass to ``release``."""
        n = min(max(n, 0), self.capacity)
        with self._cond:
            while self._held + n > self.capacity:
                self._cond.wait()
            self._held += n
            self.peak = max(self.peak, self._held)
        return n

    def release(self, n: int) -> None:
        with self._cond:
            self._held -= n
            if self._held < 0:
                raise RuntimeError("byte budget released more than it handed out")
            self._cond.notify_all()


@dataclass(frozen=True)
class PartLayout:
    """How an object of ``size`` bytes is cut: ``count`` parts of ``part_size`` (the last shorter).
    ``matches_source``: the source's ETag may have been built from this same layout, so the
    composite ETag we compute is checked against it. ``alternates``: other part sizes the source
    may have been written with, hashed on the side (``source_part_sizes`` lists them all).
    ``confirmed``: the first of those is certain (the store reported part 1's size, or there is
    one part), so a composite that misses it proves the bytes wrong; otherwise they are guesses,
    and a miss proves nothing."""

    size: int
    part_size: int
    count: int
    matches_source: bool = False
    confirmed: bool = False
    alternates: tuple[int, ...] = field(default=())

    @property
    def source_part_sizes(self) -> tuple[int, ...]:
        return ((self.part_size,) if self.matches_source else ()) + self.alternates

    def bounds(self, number: int) -> tuple[int, int]:
        """(offset, length) of 1-based part ``number``."""
        start = (number - 1) * self.part_size
        return start, min(self.part_size, self.size - start)


def etag_part_count(etag: str) -> int | None:
    """The part count of a multipart ETag (``<md5>-<n>``), None for a plain one."""
    head, sep, tail = etag.strip('"').rpartition("-")
    if not sep or not tail.isdigit() or len(head) != 32:
        return None
    return int(tail)


def fits_layout(size: int, part_size: int, count: int) -> bool:
    """``count`` equal parts of ``part_size`` (the last one shorter, not empty) make ``size``."""
    return part_size >= 1 and (count - 1) * part_size < size <= count * part_size


def source_part_size(size: int, etag: str, first_part_size: int | None = None) -> int | None:
    """The part size the source was written with, when it can be known: the store's answer for
    part 1 (``first_part_size``) if it is consistent, else the most likely guess (see
    ``guessed_part_sizes``). None for plain ETags."""
    count = etag_part_count(etag)
    if count is None:
        return None
    if first_part_size and fits_layout(size, first_part_size, count):
        return first_part_size
    if count == 1:
        return size
    guesses = guessed_part_sizes(size, etag)
    return guesses[0] if guesses else None


def guessed_part_sizes(size: int, etag: str, limit: int = MAX_GUESSES) -> list[int]:
    """Part sizes that cut ``size`` into the ETag's part count, most likely first: the common
    tools' sizes, then the smallest whole-MiB sizes (what tools pick when they grow the part
    size to stay within 10,000 parts). Empty for plain ETags and single parts."""
    count = etag_part_count(etag)
    if count is None or count < 2 or size <= 0:
        return []
    out = [mib * MIB for mib in COMMON_PART_MIB if fits_layout(size, mib * MIB, count)]
    even = -(-size // count)  # equal parts, rounded up
    part = -(-even // MIB) * MIB  # to a whole MiB
    while len(out) < limit and fits_layout(size, part, count):
        if part not in out:
            out.append(part)
        part += MIB
    return out[:limit]


class PartHasher:
    """MD5 of every ``part_size`` run of the bytes fed to it in order, however they are chunked:
    a candidate source layout checked on the side (the layout a copy uses, with the whole-object
    MD5 beside it, is ``tasks.twin_md5``'s)."""

    def __init__(self, part_size: int) -> None:
        if part_size <= 0:
            raise ValueError(f"part size must be positive, got {part_size}")
        self.part_size = part_size
        self._md5 = hashlib.md5()
        self._left = part_size
        self._digests: list[bytes] = []

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while len(view):
            take = min(self._left, len(view))
            self._md5.update(view[:take])
            self._left -= take
            view = view[take:]
            if self._left == 0:
                self._digests.append(self._md5.digest())
                self._md5, self._left = hashlib.md5(), self.part_size

    def digests(self) -> list[bytes]:
        """The part MD5s so far, a last shorter part included."""
        if self._left == self.part_size:
            return list(self._digests)
        return [*self._digests, self._md5.digest()]


def plan_parts(size: int, preferred: int, *, source_part: int | None = None, max_part: int,
               confirmed: bool = False) -> PartLayout:
    """Parts for copying ``size`` bytes: the source's own part size when it is known and within
    [5 MiB, ``max_part``] (so the source ETag verifies the read; a single part may be smaller),
    else ``preferred``, grown when needed to stay within S3's 10,000 parts."""
    if size < 0 or preferred <= 0 or max_part < MIN_PART:
        raise ValueError(f"bad part plan input: size={size} preferred={preferred} max_part={max_part}")
    if source_part and (MIN_PART <= source_part or source_part >= size) and source_part <= max_part and fits_layout(size, source_part, max(1, -(-size // source_part))):
        return PartLayout(size, source_part, max(1, -(-size // source_part)), matches_source=True, confirmed=confirmed)
    part = max(preferred, MIN_PART, -(-size // MAX_PARTS))
    return PartLayout(size, part, max(1, -(-size // part)))


def composite_etag(part_md5s: list[bytes]) -> str:
    """The ETag S3 gives a multipart object: MD5 of the concatenated part MD5s, ``-<count>``."""
    return f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{len(part_md5s)}"


class PartBuffer:
    """One part's bytes in an anonymous mmap; a seekable read-only file for botocore (so retries
    can rewind it) that never copies the whole part."""

    def __init__(self, length: int) -> None:
        self.length = length
        self._map = mmap.mmap(-1, max(length, 1))
        self.view = memoryview(self._map)[:length]

    # -- the file interface botocore and http.client use --------------------------------------
    def read(self, n: int = -1) -> bytes:
        pos = self._map.tell()
        end = self.length if n is None or n < 0 else min(self.length, pos + n)
        self._map.seek(max(end, pos))
        return bytes(self.view[pos:end])

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._map.tell(), 2: self.length}[whence]
        self._map.seek(min(max(base + offset, 0), self.length))
        return self._map.tell()

    def tell(self) -> int:
        return self._map.tell()

    def __len__(self) -> int:
        return self.length

    def close(self) -> None:
        self.view.release()
        self._map.close()


def readinto_exact(stream: Any, view: memoryview) -> int:
    """Fill ``view`` from ``stream`` (anything with ``readinto``, or else ``read``); returns the
    bytes read, fewer only at end of stream."""
    filled = 0
    total = len(view)
    readinto = getattr(stream, "readinto", None)
    while filled < total:
        if readinto is not None:
            n = readinto(view[filled:])
        else:
            chunk = stream.read(total - filled)
            n = len(chunk)
            view[filled:filled + n] = chunk
        if not n:
            break
        filled += n
    return filled
