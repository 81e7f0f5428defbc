"""PUT bodies streamed straight from a source GET: pure pieces, no S3 calls.

- ``ExactReader`` sends exactly the object's size: a source that ends early is an error, never a
  shorter object.
- ``VerifyingReader`` reads the source once and hashes every byte as it passes (part MD5s in the
  source's layout and the full-object MD5, both in about the time of one: ``tasks.twin_md5``; a
  SHA-256 if the source recorded one). It checks what the
  source says about itself *before* it hands over the last block, so a read that does not verify
  makes the PUT end short: the store never completes it and nothing becomes visible.
- ``check_source_parts`` decides what a source written in parts can prove. Its ETag is an MD5 of
  part MD5s, so it checks the read only in the layout it was written with. A store that does not
  report that layout leaves guesses (a few likely part sizes, all hashed in the same read); if
  none rebuilds the ETag that proves nothing, so the copy goes on (the destination still has to
  hold exactly the bytes read) and says its read went unchecked, instead of failing a good object
  on every run.
"""

from __future__ import annotations

import hashlib
from typing import Any

from tasks.part_streaming import PartHasher, PartLayout, composite_etag, etag_part_count
from tasks.twin_md5 import parts_and_whole_md5

MIB = 1024 * 1024


class VerificationFailed(Exception):
    """The bytes at the destination (or read from the source) do not match the checksums."""


def plain_md5_etag(etag: str) -> bool:
    """A single-part ETag: the store's MD5 of the bytes."""
    return "-" not in etag and len(etag) == 32


def check_source_bytes(md5_hex: str | None, src_etag: str, recorded_sha256: str | None, sha_hex: str | None) -> None:
    """The bytes read must match the source's plain ETag (its MD5) and any SHA-256 it recorded."""
    if md5_hex is not None and plain_md5_etag(src_etag) and md5_hex != src_etag:
        raise VerificationFailed(f"bytes read from the source do not match its ETag {src_etag}")
    if recorded_sha256 and sha_hex and recorded_sha256 != sha_hex:
        raise VerificationFailed("bytes read from the source do not match their recorded llmr-sha256")


def check_source_parts(own: list[bytes], alternates: list[list[bytes]], layout: PartLayout, source_etag: str, *,
                       recorded_sha256: str | None = None) -> str | None:
    """Check the bytes read against a source ETag written in parts. ``own`` holds the part MD5s
    of the bytes cut in ``layout`` (used only when ``layout.matches_source``), ``alternates`` those
    in each of ``layout.alternates``. Raises when the first layout is confirmed and does not
    rebuild the ETag (the bytes are wrong). Returns why the read went unchecked when no guess
    rebuilds it and no recorded SHA-256 checks it instead; None when the read was checked (or the
    ETag is plain: see ``check_source_bytes``)."""
    count = etag_part_count(source_etag)
    if count is None:
        return None
    part_md5s = ([own] if layout.matches_source else []) + alternates
    composites = [composite_etag(digests) for digests in part_md5s]
    if source_etag in composites:
        return None
    if layout.confirmed and composites:
        raise VerificationFailed(f"bytes read from the source do not match its multipart ETag {source_etag} (got {composites[0]})")
    if recorded_sha256:
        return None
    if composites:
        tried = ", ".join(f"{size} bytes" for size in layout.source_part_sizes)
        return f"source written in {count} parts: its store did not report their size, and no likely size ({tried}) rebuilds its ETag"
    return f"source written in {count} parts of an unknown size, so its ETag cannot be rebuilt"


class ExactReader:
    """A read-only stream of exactly ``size`` bytes for a streamed PUT body: a source that ends
    early is an error (never a shorter object), and it cannot rewind (botocore then fails the
    request and the whole object is retried)."""

    def __init__(self, stream: Any, size: int) -> None:
        self._stream = stream
        self.size = size
        self.sent = 0

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.sent
        want = left if n is None or n < 0 else min(n, left)
        if want <= 0:
            return b""
        chunk = self._stream.read(want)
        if not chunk:
            raise VerificationFailed(f"source stream ended after {self.sent} of {self.size} bytes")
        self.sent += len(chunk)
        return chunk

    def tell(self) -> int:
        return self.sent

    def seek(self, offset: int, whence: int = 0) -> int:
        if (offset, whence) in ((self.sent, 0), (0, 1)):
            return self.sent
        raise OSError("a streamed source cannot rewind")

    def __len__(self) -> int:
        return self.size


class VerifyingReader(ExactReader):
    """One read of the source, hashed on the way through; the last block is held back until the
    source's own checksums (multipart ETag rebuilt from part MD5s in ``layout``, plain ETag,
    recorded SHA-256) agree with the bytes. ``md5_hex`` is then the full-object MD5 that the
    destination's ETag must equal. A failed check is kept in ``error`` as well as raised, because
    botocore reports a body that raised as a stream it could not rewind. ``unchecked`` says why,
    when nothing the source stored could check the read (see ``check_source_parts``)."""

    def __init__(self, stream: Any, layout: PartLayout, *, source_etag: str, recorded_sha256: str | None = None,
                 block: int = MIB) -> None:
        super().__init__(stream, layout.size)
        self.layout = layout
        self.source_etag = source_etag
        self.recorded_sha256 = recorded_sha256
        self.error: VerificationFailed | None = None
        self.unchecked: str | None = None
        self._block_size = max(1, block)
        self._sha = hashlib.sha256() if recorded_sha256 else None
        self._md5s = parts_and_whole_md5(max(layout.bounds(1)[1], 1) if layout.count else 1, layout.size)
        self._alternates = [PartHasher(size) for size in layout.alternates]
        self._read_from_source = 0
        self._block = b""
        self._view = memoryview(b"")
        self._pos = 0
        self._verified = layout.size == 0
        if self._verified:
            self._finish()

    @property
    def md5_hex(self) -> str:
        if not self._verified:
            raise VerificationFailed(f"the source was not read to its end ({self._read_from_source} of {self.size} bytes)")
        return self._md5s.whole_digest().hex()

    def read(self, n: int = -1) -> bytes | memoryview:
        """Up to ``n`` bytes of the current block, as a view: the sender only passes them to the
        socket, so slicing a copy of every byte (1 GiB per GiB copied) was pure overhead."""
        if self._pos >= len(self._block):
            if self.sent >= self.size:
                return b""
            self._next_block()
        end = len(self._block) if n is None or n < 0 else min(len(self._block), self._pos + n)
        chunk = self._view[self._pos:end]
        self._pos = end
        self.sent += len(chunk)
        return chunk

    def _next_block(self) -> None:
        block = self._read_exact(min(self._block_size, self.size - self._read_from_source))
        self._md5s.update(block)
        if self._sha is not None:
            self._sha.update(block)
        for hasher in self._alternates:
            hasher.update(block)
        self._read_from_source += len(block)
        if self._read_from_source == self.size:
            self._finish()  # before the last block leaves: a source that does not verify never completes the PUT
        self._block, self._view, self._pos = block, memoryview(block), 0

    def _read_exact(self, want: int) -> bytes:
        pieces, got = [], 0
        while got < want:
            chunk = self._stream.read(want - got)
            if not chunk:
                self._fail(f"source stream ended after {self._read_from_source + got} of {self.size} bytes")
            pieces.append(chunk)
            got += len(chunk)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _finish(self) -> None:
        try:
            self.unchecked = check_source_parts(self._md5s.part_digests(), [h.digests() for h in self._alternates],
                                                self.layout, self.source_etag, recorded_sha256=self.recorded_sha256)
            check_source_bytes(self._md5s.whole_digest().hex(), self.source_etag, self.recorded_sha256,
                               self._sha.hexdigest() if self._sha is not None else None)
        except VerificationFailed as exc:
            self._fail(str(exc))
        self._verified = True

    def _fail(self, message: str) -> None:
        self.error = VerificationFailed(message)
        raise self.error
