"""tasks/twin_md5.py: the part MD5s and whole-object MD5 of a stream, checked against hashlib."""

import hashlib
import random

import pytest

from tasks import twin_md5
from tasks.twin_md5 import SplitMD5, TwinMD5, parts_and_whole_md5

HASHERS = [SplitMD5, TwinMD5]


def _expected(data: bytes, part_size: int) -> tuple[list[bytes], bytes]:
    parts = [hashlib.md5(data[i:i + part_size]).digest() for i in range(0, len(data), part_size)]
    return parts, hashlib.md5(data).digest()


def _chunks(data: bytes, rng: random.Random, largest: int) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, largest)
        out.append(data[i:i + n])
        i += n
    return out


@pytest.mark.parametrize("hasher", HASHERS)
@pytest.mark.parametrize("part_size", [64, 128, 1024, 4096])
@pytest.mark.parametrize("size", [0, 1, 55, 56, 63, 64, 65, 127, 1023, 1024, 1025, 4096 * 3 + 17])
def test_digests_equal_hashlib_whatever_the_chunking(hasher, part_size: int, size: int) -> None:
    rng = random.Random(size * 31 + part_size)
    data = rng.randbytes(size)
    want = _expected(data, part_size)
    for chunks in ([data], _chunks(data, rng, 7), _chunks(data, rng, 300), _chunks(data, rng, 5000)):
        h = hasher(part_size)
        for chunk in chunks:
            h.update(memoryview(chunk) if len(chunk) % 2 else chunk)
        assert (h.part_digests(), h.whole_digest()) == want, (hasher.__name__, part_size, size, len(chunks))


@pytest.mark.parametrize("hasher", HASHERS)
def test_digests_so_far_do_not_disturb_the_stream(hasher) -> None:
    data = random.Random(5).randbytes(5000)
    h = hasher(1024)
    h.update(data[:1500])
    assert h.part_digests() == _expected(data[:1500], 1024)[0]
    assert h.whole_digest() == hashlib.md5(data[:1500]).digest()
    h.update(data[1500:])
    assert (h.part_digests(), h.whole_digest()) == _expected(data, 1024)


def test_split_takes_any_part_size() -> None:
    data = random.Random(9).randbytes(3333)
    h = SplitMD5(1000)
    h.update(data)
    assert (h.part_digests(), h.whole_digest()) == _expected(data, 1000)


def test_the_compiled_twin_is_built_and_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make install` compiles tasks/_twin_md5.c; without it verification costs ~1.8x the CPU."""
    assert twin_md5.NATIVE, "tasks._twin_md5 was not compiled: run `uv pip install -e .` (needs a C compiler)"
    from tasks import md5_lanes

    monkeypatch.setattr(md5_lanes, "ENGINE", None)  # the AVX-512 lanes come first where they run
    assert isinstance(parts_and_whole_md5(16 * 1024 * 1024), TwinMD5)
    assert isinstance(parts_and_whole_md5(1000), SplitMD5)  # parts not whole blocks: the states would fall out of step


def test_twin_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="multiple of 64"):
        TwinMD5(1000)
    with pytest.raises(ValueError, match="positive"):
        parts_and_whole_md5(0)
    state, other = bytearray(16), bytearray(16)
    with pytest.raises(ValueError, match="whole 64-byte blocks"):
        twin_md5.compress2(state, other, b"x" * 65)
    with pytest.raises(ValueError, match="16 bytes"):
        twin_md5.compress2(bytearray(15), other, b"x" * 64)
    with pytest.raises(TypeError):
        twin_md5.compress2(bytes(16), other, b"x" * 64)  # a state must be writable
    with pytest.raises(ValueError, match="whole 64-byte blocks"):
        twin_md5.compress1(state, b"x" * 65)
    with pytest.raises(TypeError):
        twin_md5.compress1(bytes(16), b"x" * 64)


def test_split_hashes_part_one_once_and_carries_its_state_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the compiled twin, the whole-object MD5 takes over part 1's state instead of
    hashing those bytes a second time."""
    fed = []
    real = hashlib.md5

    class Counting:
        def __init__(self, inner: object = None) -> None:
            self._h = inner if inner is not None else real()

        def update(self, data: bytes) -> None:
            fed.append(len(memoryview(data)))
            self._h.update(data)

        def copy(self) -> "Counting":
            return Counting(self._h.copy())

        def digest(self) -> bytes:
            return self._h.digest()

    monkeypatch.setattr(twin_md5.hashlib, "md5", Counting)
    data = random.Random(11).randbytes(10_000)
    h = SplitMD5(1024)
    for i in range(0, len(data), 700):
        h.update(data[i:i + 700])
    monkeypatch.undo()
    assert (h.part_digests(), h.whole_digest()) == _expected(data, 1024)
    assert sum(fed) == 2 * len(data) - 1024


@pytest.mark.parametrize("hasher", HASHERS)
def test_part_digest_gives_each_part_as_soon_as_it_has_bytes(hasher) -> None:
    data = random.Random(13).randbytes(2 * 1024 + 100)
    parts, _ = _expected(data, 1024)
    h = hasher(1024)
    with pytest.raises(IndexError, match="part 1 has no bytes yet"):
        h.part_digest(1)
    h.update(data[:1024])
    assert h.part_digest(1) == parts[0]
    with pytest.raises(IndexError):
        h.part_digest(2)
    h.update(data[1024:])
    assert [h.part_digest(n) for n in (1, 2, 3)] == parts  # the last, shorter part included
