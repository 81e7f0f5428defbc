"""tasks/md5_lanes.py and tasks/_md5_lanes.c: many MD5 chains in one AVX-512 pass, against hashlib."""

import hashlib
import os
import random
import threading
from pathlib import Path

import pytest

from tasks import md5_lanes, twin_md5
from tasks.md5_lanes import LaneEngine, LanedTwinMD5
from tasks.twin_md5 import _INIT, TwinMD5, parts_and_whole_md5

CPU_HAS_AVX512 = " avx512f" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else False
needs_lanes = pytest.mark.skipif(not CPU_HAS_AVX512, reason="this CPU has no AVX-512: the lanes never run here")
KIB = 1024


def _expected(data: bytes, part_size: int) -> tuple[list[bytes], bytes]:
    parts = [hashlib.md5(data[i:i + part_size]).digest() for i in range(0, len(data), part_size)]
    return parts, hashlib.md5(data).digest()


def test_the_lanes_are_built_and_chosen_where_the_cpu_has_avx512() -> None:
    """`make install` compiles tasks/_md5_lanes.c beside the twin; replication then hashes with it."""
    assert md5_lanes.compress16 is not None, "tasks._md5_lanes was not compiled: run `uv pip install -e .`"
    wanted = CPU_HAS_AVX512 and os.environ.get("LLMR_MD5_LANES", "1") != "0"
    assert md5_lanes.AVAILABLE == wanted
    assert isinstance(parts_and_whole_md5(16 * 1024 * 1024), LanedTwinMD5 if wanted else TwinMD5)


def test_without_the_lanes_the_twin_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(md5_lanes, "ENGINE", None)
    assert isinstance(parts_and_whole_md5(16 * 1024 * 1024), TwinMD5)
    with pytest.raises(RuntimeError, match="not available"):
        LanedTwinMD5(1024)


@needs_lanes
@pytest.mark.parametrize("lanes", [1, 2, 3, 8, 15, 16])
def test_compress16_advances_each_state_over_its_own_buffer(lanes: int) -> None:
    rng = random.Random(lanes)
    blocks = 37
    buffers = [rng.randbytes(64 * blocks + rng.randint(0, 100)) for _ in range(lanes)]  # longer is fine
    states = [bytearray(_INIT) for _ in range(lanes)]
    md5_lanes.compress16(states, [memoryview(b) if i % 2 else b for i, b in enumerate(buffers)], blocks)
    for state, buf in zip(states, buffers):
        assert twin_md5._finish(state, b"", 64 * blocks) == hashlib.md5(buf[:64 * blocks]).digest()
    md5_lanes.compress16(states, buffers, 0)  # no blocks: nothing changes
    assert twin_md5._finish(states[0], b"", 64 * blocks) == hashlib.md5(buffers[0][:64 * blocks]).digest()


@needs_lanes
def test_compress16_refuses_what_it_cannot_do() -> None:
    state = bytearray(_INIT)
    with pytest.raises(ValueError, match="1 to 16 states"):
        md5_lanes.compress16([bytearray(_INIT) for _ in range(17)], [b"x" * 64] * 17, 1)
    with pytest.raises(ValueError, match="as many buffers"):
        md5_lanes.compress16([state], [b"x" * 64, b"y" * 64], 1)
    with pytest.raises(ValueError, match="buffer 0 holds 64 bytes, fewer than 2 blocks"):
        md5_lanes.compress16([state], [b"x" * 64], 2)
    with pytest.raises(ValueError, match="16 bytes"):
        md5_lanes.compress16([bytearray(15)], [b"x" * 64], 1)
    with pytest.raises(BufferError):
        md5_lanes.compress16([bytes(16)], [b"x" * 64], 1)  # a state must be writable
    assert state == bytearray(_INIT)


def _laned(part_size: int, size: int | None = None, **engine: int) -> LanedTwinMD5:
    return LanedTwinMD5(part_size, size, engine=LaneEngine(**engine))


@needs_lanes
@pytest.mark.parametrize("part_size", [64, 1024, 4096])
@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 1023, 1024, 1025, 4096 * 3 + 17])
def test_laned_digests_equal_hashlib_whatever_the_chunking(part_size: int, size: int) -> None:
    rng = random.Random(size * 31 + part_size)
    data = rng.randbytes(size)
    want = _expected(data, part_size)
    for largest in (size or 1, 7, 300, 5000):
        h = _laned(part_size, high_water=1024)
        i = 0
        while i < size:
            n = rng.randint(1, largest)
            h.update(data[i:i + n] if n % 2 else memoryview(data[i:i + n]))
            i += n
        assert (h.part_digests(), h.whole_digest()) == want, (part_size, size, largest)
        assert [h.part_digest(n) for n in range(1, len(want[0]) + 1)] == want[0]


@needs_lanes
def test_an_object_that_fits_in_one_part_is_one_chain() -> None:
    data = random.Random(3).randbytes(4096)
    engine = LaneEngine(min_lanes=1)
    h = LanedTwinMD5(4096, 4096, engine=engine)
    h.update(data)
    assert (h.part_digests(), h.whole_digest()) == ([hashlib.md5(data).digest()], hashlib.md5(data).digest())
    with pytest.raises(ValueError, match="more than the 4096 bytes announced"):
        h.update(b"x")


@needs_lanes
def test_bytes_wait_until_enough_chains_have_some_then_share_one_pass() -> None:
    """Four twins (eight lanes): nothing is hashed while three have bytes waiting; the fourth's
    bytes tip the threshold and one pass hashes all eight chains."""
    engine = LaneEngine(min_lanes=8, high_water=1 << 30)
    rng = random.Random(8)
    datas = [rng.randbytes(64 * KIB) for _ in range(4)]
    twins = [LanedTwinMD5(16 * KIB, engine=engine) for _ in datas]
    for twin, data in zip(twins[:3], datas):
        twin.update(data)
    assert not engine.passes
    twins[3].update(datas[3])
    assert engine.passes and {lanes for lanes, _ in engine.passes} == {8}
    # Every byte once per chain (its part chain and its whole chain), no more.
    assert sum(lanes * blocks * 64 for lanes, blocks in engine.passes) == 2 * sum(map(len, datas))
    for twin, data in zip(twins, datas):
        assert (twin.part_digests(), twin.whole_digest()) == _expected(data, 16 * KIB)


@needs_lanes
def test_a_chain_never_holds_more_than_its_high_water_unhashed() -> None:
    engine = LaneEngine(min_lanes=16, high_water=128 * KIB)  # one twin never reaches 16 lanes
    h = LanedTwinMD5(1024 * KIB, engine=engine)
    data = random.Random(4).randbytes(2048 * KIB)
    peak = 0
    for i in range(0, len(data), 64 * KIB):
        h.update(data[i:i + 64 * KIB])
        peak = max(peak, h._group.pending)
    assert 0 < peak <= 128 * KIB + 64 * KIB
    assert (h.part_digests(), h.whole_digest()) == _expected(data, 1024 * KIB)


@needs_lanes
def test_a_buffer_the_caller_may_reuse_is_hashed_before_update_returns() -> None:
    engine = LaneEngine(min_lanes=16, high_water=1 << 30)
    h = LanedTwinMD5(4096, engine=engine)
    buf = bytearray(random.Random(6).randbytes(8192))
    original = bytes(buf)
    h.update(buf)
    buf[:] = b"\0" * len(buf)  # e.g. the next part read into the same buffer
    assert (h.part_digests(), h.whole_digest()) == _expected(original, 4096)


@needs_lanes
def test_many_threads_share_the_lanes_and_each_gets_its_own_digests() -> None:
    engine = LaneEngine(min_lanes=6, high_water=96 * KIB)
    results: dict[int, tuple[list[bytes], bytes]] = {}
    datas = {n: random.Random(n).randbytes(random.Random(n).randint(100 * KIB, 700 * KIB)) for n in range(12)}
    part = 64 * KIB

    def copy(n: int) -> None:
        rng, data, i = random.Random(100 + n), datas[n], 0
        h = LanedTwinMD5(part, len(data), engine=engine) if n % 3 else LanedTwinMD5(len(data) + 64 - len(data) % 64,
                                                                                      len(data), engine=engine)
        while i < len(data):
            k = rng.randint(1, 40 * KIB)
            h.update(data[i:i + k])
            i += k
        results[n] = (h.part_digests(), h.whole_digest())

    threads = [threading.Thread(target=copy, args=(n,)) for n in datas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for n, data in datas.items():
        want = _expected(data, part) if n % 3 else ([hashlib.md5(data).digest()], hashlib.md5(data).digest())
        assert results[n] == want, n
    assert engine.passes, "twelve threads never shared a pass"
    assert not engine._waiting and not engine._running
