"""Byte budget, part planner, part buffers, streamed bodies and listing-page parsing: no server."""

import hashlib
import io
import random
import threading
import time
from dataclasses import replace

import pytest

from tasks.part_streaming import (
    MIB,
    ByteBudget,
    PartBuffer,
    PartHasher,
    composite_etag,
    etag_part_count,
    fits_layout,
    guessed_part_sizes,
    plan_parts,
    readinto_exact,
    source_part_size,
)
from tasks.replication_copy import ExactReader, ObjectCopier, VerificationFailed
from tasks.s3_listing import ListingPageError, parse_listing_page


def test_part_hasher_gives_the_part_md5s_however_the_bytes_are_chunked() -> None:
    data = random.Random(3).randbytes(10_000)
    want = [hashlib.md5(data[i:i + 1024]).digest() for i in range(0, len(data), 1024)]
    for chunk in (1, 100, 1024, 3000, 10_000):
        hasher = PartHasher(1024)
        for i in range(0, len(data), chunk):
            hasher.update(data[i:i + chunk])
        assert hasher.digests() == want
    exact = PartHasher(1000)
    exact.update(data)
    assert len(exact.digests()) == 10  # no empty last part
    with pytest.raises(ValueError):
        PartHasher(0)


def test_byte_budget_bounds_bytes_in_flight_and_clamps_oversized_requests() -> None:
    budget = ByteBudget(10)
    held = 0
    peak = 0
    lock = threading.Lock()

    def work(n: int) -> None:
        nonlocal held, peak
        got = budget.acquire(n)
        with lock:
            held += got
            peak = max(peak, held)
        time.sleep(0.005)
        with lock:
            held -= got
        budget.release(got)

    threads = [threading.Thread(target=work, args=(n,)) for n in (4, 6, 3, 7, 5, 2, 8) * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak <= 10 and budget.peak <= 10 and budget.held == 0
    assert budget.acquire(25) == 10  # larger than the budget: runs alone instead of deadlocking
    budget.release(10)
    with pytest.raises(RuntimeError):
        budget.release(1)
    with pytest.raises(ValueError):
        ByteBudget(0)


def test_part_layout_follows_the_sources_parts_when_known() -> None:
    size = 128 * MIB
    etag = "0" * 32 + "-8"
    assert etag_part_count(etag) == 8 and etag_part_count("0" * 32) is None and etag_part_count("abc-2") is None
    assert source_part_size(size, etag) == 16 * MIB  # smallest whole-MiB size making 8 parts
    assert source_part_size(size, etag, first_part_size=17 * MIB) == 17 * MIB  # the store's answer wins
    assert source_part_size(size, etag, first_part_size=3 * MIB) == 16 * MIB  # inconsistent answer ignored
    assert source_part_size(size, "0" * 32) is None
    # without the store's answer: the common tools' sizes first, then the smallest whole MiBs
    assert guessed_part_sizes(40 * MIB + 7, "0" * 32 + "-3") == [16 * MIB, 14 * MIB, 15 * MIB, 17 * MIB]
    assert guessed_part_sizes(100 * MIB, "0" * 32 + "-13") == [8 * MIB]
    assert guessed_part_sizes(size, "0" * 32 + "-1") == [] and guessed_part_sizes(size, "0" * 32) == []
    assert all(fits_layout(30 * MIB + 7, p, 2) for p in guessed_part_sizes(30 * MIB + 7, "0" * 32 + "-2"))
    layout = plan_parts(size, 8 * MIB, source_part=16 * MIB, max_part=64 * MIB)
    assert (layout.part_size, layout.count, layout.matches_source, layout.confirmed) == (16 * MIB, 8, True, False)
    assert plan_parts(size, 8 * MIB, source_part=16 * MIB, max_part=64 * MIB, confirmed=True).confirmed
    assert layout.bounds(8) == (112 * MIB, 16 * MIB)
    # too large a source part for the memory budget: our own part size, not claimed to match
    big = plan_parts(size, 8 * MIB, source_part=128 * MIB, max_part=64 * MIB)
    assert (big.part_size, big.count, big.matches_source) == (8 * MIB, 16, False)
    assert not plan_parts(size, 8 * MIB, source_part=128 * MIB, max_part=64 * MIB, confirmed=True).confirmed
    # one part under S3's 5 MiB minimum (a small object written through the multipart API) is its own layout
    one = plan_parts(4 * MIB + 1, 8 * MIB, source_part=4 * MIB + 1, max_part=5 * MIB, confirmed=True)
    assert (one.part_size, one.count, one.matches_source) == (4 * MIB + 1, 1, True)
    assert not plan_parts(9 * MIB, 8 * MIB, source_part=3 * MIB, max_part=64 * MIB).matches_source  # 3 parts under 5 MiB: not S3's
    odd = plan_parts(10 * MIB + 3, 5 * MIB, max_part=64 * MIB)
    assert odd.count == 3 and odd.bounds(3) == (10 * MIB, 3)
    huge = plan_parts(100_000 * 5 * MIB, 5 * MIB, max_part=64 * MIB)
    assert huge.count <= 10_000
    with pytest.raises(ValueError):
        plan_parts(10, 0, max_part=64 * MIB)


def test_only_a_confirmed_source_layout_is_left_to_the_stores_to_check() -> None:
    """Copying in the source's own parts with no hashing here needs the store's word on the part
    size: a guessed size, other sizes hashed on the side, a plain ETag or a recorded SHA-256 (which
    only our hash can check) keep our own MD5s."""
    etag = "0" * 32 + "-8"
    confirmed = plan_parts(128 * MIB, 8 * MIB, source_part=16 * MIB, max_part=64 * MIB, confirmed=True)
    assert ObjectCopier._store_checkable(confirmed, etag, None)
    assert not ObjectCopier._store_checkable(plan_parts(128 * MIB, 8 * MIB, source_part=16 * MIB, max_part=64 * MIB), etag, None)
    assert not ObjectCopier._store_checkable(replace(confirmed, alternates=(8 * MIB,)), etag, None)
    assert not ObjectCopier._store_checkable(confirmed, etag, "ab" * 32)
    assert not ObjectCopier._store_checkable(confirmed, "0" * 32, None)
    assert not ObjectCopier._store_checkable(confirmed, "0" * 32 + "-7", None)  # a count the layout does not make
    too_big = plan_parts(128 * MIB, 8 * MIB, source_part=128 * MIB, max_part=64 * MIB, confirmed=True)
    assert not ObjectCopier._store_checkable(too_big, "0" * 32 + "-1", None)  # copied in our own parts


def test_composite_etag_is_the_md5_of_part_md5s() -> None:
    parts = [b"a" * 10, b"b" * 7]
    md5s = [hashlib.md5(p).digest() for p in parts]
    assert composite_etag(md5s) == hashlib.md5(md5s[0] + md5s[1]).hexdigest() + "-2"


def test_part_buffer_fills_in_place_and_reads_back_like_a_file() -> None:
    data = bytes(range(256)) * 40
    buf = PartBuffer(len(data))
    assert readinto_exact(io.BytesIO(data + b"tail"), buf.view) == len(data)
    assert hashlib.md5(buf.view).digest() == hashlib.md5(data).digest()
    assert len(buf) == len(data)
    assert buf.read(100) == data[:100] and buf.tell() == 100
    assert buf.read() == data[100:] and buf.read(5) == b""
    assert buf.seek(0) == 0 and buf.read(3) == data[:3]  # botocore rewinds for a retry
    buf.close()
    short = PartBuffer(10)
    assert readinto_exact(io.BytesIO(b"12345"), short.view) == 5  # the caller sees the short read
    short.close()

    class ReadOnly:  # no readinto: falls back to read
        def __init__(self) -> None:
            self.src = io.BytesIO(b"xyz" * 5)

        def read(self, n: int) -> bytes:
            return self.src.read(min(n, 4))

    other = PartBuffer(15)
    assert readinto_exact(ReadOnly(), other.view) == 15 and bytes(other.view) == b"xyz" * 5
    other.close()


def test_streamed_body_never_sends_more_or_less_than_the_object() -> None:
    body = ExactReader(io.BytesIO(b"0123456789extra"), 10)
    assert len(body) == 10 and body.seek(0) == 0
    assert body.read(4) == b"0123" and body.read() == b"456789" and body.read() == b""
    with pytest.raises(OSError):
        body.seek(0)  # cannot rewind: the whole object is retried instead
    short = ExactReader(io.BytesIO(b"0123"), 10)
    short.read(4)
    with pytest.raises(VerificationFailed, match="ended after 4 of 10"):
        short.read(6)


PAGE = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix>
<KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
<NextContinuationToken>tok+1/=</NextContinuationToken>
<Contents><Key>p/a+b%C3%BC.txt</Key><LastModified>2026-11-24T00:00:01.000Z</LastModified>
<ETag>&quot;9ef97c1d91fbc026bd3435b8914357bd&quot;</ETag><Size>7</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>p/big</Key><LastModified>2026-11-24T00:00:02Z</LastModified><ETag>"aa-3"</ETag><Size>123</Size></Contents>
</ListBucketResult>"""


def test_listing_page_parser_decodes_keys_etags_and_times() -> None:
    page = parse_listing_page(PAGE)
    assert page.truncated and page.next_token == "tok+1/="
    assert page.objects[0] == ("p/a bü.txt", 7, "9ef97c1d91fbc026bd3435b8914357bd", 1795478401.0)
    assert page.objects[1] == ("p/big", 123, "aa-3", 1795478402.0)
    last = parse_listing_page(PAGE.replace(b"<IsTruncated>true", b"<IsTruncated>false"))
    assert not last.truncated


def test_listing_page_parser_refuses_errors_and_garbage() -> None:
    with pytest.raises(ListingPageError, match="SlowDown"):
        parse_listing_page(b"<Error><Code>SlowDown</Code></Error>")
    with pytest.raises(ListingPageError, match="not XML"):
        parse_listing_page(b"<html")
