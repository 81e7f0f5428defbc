"""Random-access reads of one checkpoint file, local or remote, without loading it whole.

Local files are memory-mapped (slices are zero-copy views the hashers read straight from the
page cache); remote files (S3 through fsspec) are read with ranged reads, so a header check
costs a few KiB however large the shard is.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from typing import Protocol

import fsspec

STREAM_CHUNK = 8 * 1024 * 1024


class ByteSource(Protocol):
    size: int

    def read_at(self, offset: int, length: int) -> bytes | memoryview: ...

    def iter_range(self, start: int, end: int, chunk: int = STREAM_CHUNK) -> Iterator[memoryview | bytes]: ...

    def fileobj(self): ...  # noqa: ANN201 - a seekable binary file object

    def close(self) -> None: ...


class LocalSource:
    """A memory-mapped local file."""

    def __init__(self, path: str):
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size
        self._map = mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ) if self.size else None
        self._view = memoryview(self._map) if self._map is not None else memoryview(b"")

    def read_at(self, offset: int, length: int) -> memoryview:
        return self._view[offset : offset + length]

    def iter_range(self, start: int, end: int, chunk: int = STREAM_CHUNK) -> Iterator[memoryview]:
        # One view: blake3/hashlib walk it themselves (and blake3 spreads it over threads).
        yield self._view[start:end]

    def fileobj(self):  # noqa: ANN201
        return open(self.path, "rb")  # noqa: SIM115 - the caller closes it

    def close(self) -> None:
        os.close(self._fd)
        try:
            self._view.release()
            if self._map is not None:
                self._map.close()
        except BufferError:  # a caller still holds a slice: the mapping goes when it is collected
            pass


class RemoteSource:
    """A file on any fsspec file system, read with ranged requests."""

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, size: int | None = None):
        self.fs, self.path = fs, path
        self.size = int(size if size is not None else fs.size(path))
        self._file = fs.open(path, "rb", block_size=STREAM_CHUNK, cache_type="none")
        self._block, self._block_start = memoryview(b""), 0

    def read_at(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self.size - offset))
        if length == 0:
            return b""
        self._file.seek(offset)
        return self._file.read(length)

    def iter_range(self, start: int, end: int, chunk: int = STREAM_CHUNK) -> Iterator[memoryview]:
        """Slices of ``chunk``-sized ranged reads; tensors are visited in file order, so a run of
        small tensors shares one request instead of costing one each."""
        pos = start
        while pos < end:
            rel = pos - self._block_start
            if not (0 <= rel < len(self._block)):
                self._block_start = pos
                self._block = memoryview(self.read_at(pos, chunk))
                if not self._block:
                    raise OSError(f"{self.path}: read returned nothing at byte {pos} of {self.size}")
                rel = 0
            piece = self._block[rel : rel + (end - pos)]
            pos += len(piece)
            yield piece

    def fileobj(self):  # noqa: ANN201
        return self.fs.open(self.path, "rb", block_size=1024 * 1024)

    def close(self) -> None:
        self._file.close()


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def open_source(fs: fsspec.AbstractFileSystem, path: str, size: int | None = None) -> ByteSource:
    return LocalSource(path) if is_local(fs) else RemoteSource(fs, path, size)


class BufferedReader:
    """Sequential reads over a ByteSource in large blocks (GGUF headers hold MBs of small fields)."""

    def __init__(self, source: ByteSource, block: int = 1024 * 1024):
        self.source, self.block = source, block
        self.pos = 0
        self._buf = b""
        self._buf_start = 0

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes at the current position; raises EOFError when the file ends first."""
        if self.pos + n > self.source.size:
            raise EOFError(self.pos)
        rel = self.pos - self._buf_start
        if rel < 0 or rel + n > len(self._buf):
            self._buf_start = self.pos
            self._buf = bytes(self.source.read_at(self.pos, max(n, self.block)))
            rel = 0
        out = self._buf[rel : rel + n]
        self.pos += n
        return out
