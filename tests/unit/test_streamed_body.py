"""One read of the source, hashed on the way to a single PUT: what VerifyingReader sends and refuses."""

from __future__ import annotations

import hashlib
import io
import random
from dataclasses import replace

import pytest

from tasks.part_streaming import PartLayout, composite_etag
from tasks.replication_plan import META_MD5, META_MD5_IN_TAG, META_SOURCE_ETAG, TAG_MD5
from tasks.s3_listing import read_metadata
from tasks.s3_location import S3Location
from tasks.streamed_body import VerificationFailed, VerifyingReader, check_source_parts

KIB = 1024
DATA = random.Random(7).randbytes(50 * KIB + 123)
PART = 16 * KIB


def parted_etag(data: bytes, part: int) -> str:
    return composite_etag([hashlib.md5(data[i:i + part]).digest() for i in range(0, len(data), part)])


def layout(data: bytes = DATA, part: int = PART, *, confirmed: bool = True) -> PartLayout:
    """The source's own layout; ``confirmed``: its store reported it (else it is a guess)."""
    return PartLayout(len(data), part, -(-len(data) // part), matches_source=True, confirmed=confirmed)


def drain(reader: VerifyingReader, n: int = 3000) -> tuple[bytes, Exception | None]:
    """Read like http.client does (fixed-size reads) until the end or an error."""
    out = bytearray()
    try:
        while chunk := reader.read(n):
            out += chunk
    except VerificationFailed as exc:
        return bytes(out), exc
    return bytes(out), None


def test_sends_exactly_the_source_bytes_and_knows_their_md5_after_one_read() -> None:
    stream = io.BytesIO(DATA + b"bytes past the listed size")
    reader = VerifyingReader(stream, layout(), source_etag=parted_etag(DATA, PART), block=10 * KIB)
    with pytest.raises(VerificationFailed, match="not read to its end"):
        _ = reader.md5_hex
    sent, error = drain(reader)
    assert error is None and sent == DATA and len(reader) == len(DATA)
    assert reader.md5_hex == hashlib.md5(DATA).hexdigest()
    assert stream.tell() == len(DATA)  # read once, never past the object


def test_a_source_that_does_not_rebuild_its_multipart_etag_never_sends_its_last_block() -> None:
    wrong = bytearray(DATA)
    wrong[-1] ^= 0x01
    reader = VerifyingReader(io.BytesIO(bytes(wrong)), layout(), source_etag=parted_etag(DATA, PART), block=10 * KIB)
    sent, error = drain(reader)
    assert isinstance(error, VerificationFailed) and "multipart ETag" in str(error)
    assert reader.error is error  # kept for the copier: botocore reports it as an unrewindable body
    assert len(sent) < len(DATA) and sent == bytes(wrong[:len(sent)])  # the PUT ends short: the store never completes it
    with pytest.raises(VerificationFailed):
        _ = reader.md5_hex


def test_plain_etag_and_recorded_sha256_are_checked_before_the_last_block() -> None:
    md5 = hashlib.md5(DATA).hexdigest()
    whole = PartLayout(len(DATA), len(DATA), 1)
    sent, error = drain(VerifyingReader(io.BytesIO(DATA), whole, source_etag=md5))
    assert error is None and sent == DATA
    sent, error = drain(VerifyingReader(io.BytesIO(DATA), whole, source_etag="0" * 32))
    assert error is not None and "do not match its ETag" in str(error) and len(sent) < len(DATA)
    sent, error = drain(VerifyingReader(io.BytesIO(DATA), whole, source_etag=md5, recorded_sha256="f" * 64))
    assert error is not None and "llmr-sha256" in str(error) and len(sent) < len(DATA)
    good_sha = hashlib.sha256(DATA).hexdigest()
    assert drain(VerifyingReader(io.BytesIO(DATA), whole, source_etag=md5, recorded_sha256=good_sha))[1] is None


class CountingMd5:
    """hashlib.md5 that counts the bytes it is fed, copies included."""

    fed = 0
    real = hashlib.md5

    def __init__(self, data: bytes = b"", inner: object = None) -> None:
        self._h = inner if inner is not None else CountingMd5.real()
        self.update(data)

    def update(self, data: bytes) -> None:
        CountingMd5.fed += len(data)
        self._h.update(data)  # type: ignore[attr-defined]

    def copy(self) -> CountingMd5:
        return CountingMd5(inner=self._h.copy())  # type: ignore[attr-defined]

    def digest(self) -> bytes:
        return self._h.digest()  # type: ignore[attr-defined]

    def hexdigest(self) -> str:
        return self._h.hexdigest()  # type: ignore[attr-defined]


@pytest.mark.parametrize("parted", [False, True], ids=["plain-etag", "multipart-etag"])
def test_every_byte_goes_through_md5_once_for_both_the_parts_and_the_whole_object(monkeypatch: pytest.MonkeyPatch, parted: bool) -> None:
    """MD5 is CPU-bound on large copies: the part MD5s and the whole-object MD5 come out of one
    pass (two states in one loop, tasks/_twin_md5.c), and a plain-ETag source (one part, which is
    the whole) is hashed exactly once, by hashlib."""
    import tasks.streamed_body as streamed_body
    import tasks.twin_md5 as twin_md5

    assert twin_md5.NATIVE, "tasks._twin_md5 is not compiled here"
    plan = layout() if parted else PartLayout(len(DATA), len(DATA), 1)
    etag = parted_etag(DATA, PART) if parted else hashlib.md5(DATA).hexdigest()
    twin_fed = []
    real_compress2 = twin_md5.compress2

    def counting_compress2(a: bytearray, b: bytearray, data: bytes) -> None:
        twin_fed.append(len(memoryview(data)))
        real_compress2(a, b, data)

    padding = []  # each digest's last one or two blocks, hashed on a copy of its state
    real_finish = twin_md5._finish

    def counting_finish(state: bytes, tail: bytes, length: int) -> bytes:
        padding.append(64 if len(tail) < 56 else 128)
        return real_finish(state, tail, length)

    monkeypatch.setattr(twin_md5, "compress2", counting_compress2)
    monkeypatch.setattr(twin_md5, "_finish", counting_finish)
    monkeypatch.setattr(streamed_body.hashlib, "md5", CountingMd5)
    CountingMd5.fed = 0
    reader = VerifyingReader(io.BytesIO(DATA), plan, source_etag=etag, block=5 * KIB)
    sent, error = drain(reader)
    assert error is None and sent == DATA
    monkeypatch.undo()
    assert reader.md5_hex == hashlib.md5(DATA).hexdigest()
    if parted:
        assert sum(twin_fed) - sum(padding) == len(DATA) // 64 * 64  # every whole block once, for both digests
        assert len(padding) <= plan.count + 3
        assert CountingMd5.fed == 16 * plan.count  # hashlib only rebuilds the ETag from the part MD5s
    else:
        assert twin_fed == [] and CountingMd5.fed == len(DATA)


def test_a_source_that_ends_early_is_an_error_not_a_shorter_object() -> None:
    reader = VerifyingReader(io.BytesIO(DATA[:20 * KIB]), layout(), source_etag=parted_etag(DATA, PART), block=8 * KIB)
    sent, error = drain(reader)
    assert error is not None and f"ended after {20 * KIB} of {len(DATA)}" in str(error)
    assert len(sent) <= 20 * KIB


def test_a_layout_not_known_to_be_the_sources_is_not_held_to_its_etag_and_says_so() -> None:
    """When the source's part size cannot be known, its multipart ETag cannot be rebuilt: the
    destination check (its ETag = our MD5) still binds what was sent, and the read is reported
    unchecked."""
    other = PartLayout(len(DATA), PART, -(-len(DATA) // PART), matches_source=False)
    reader = VerifyingReader(io.BytesIO(DATA), other, source_etag="0" * 32 + "-4")
    sent, error = drain(reader)
    assert error is None and sent == DATA and reader.md5_hex == hashlib.md5(DATA).hexdigest()
    assert reader.unchecked is not None and "written in 4 parts of an unknown size" in reader.unchecked


def test_wrong_guesses_of_the_part_size_copy_a_good_source_and_report_its_read_unchecked() -> None:
    """A store that does not report part 1's size leaves guesses. Guesses that do not rebuild the
    ETag prove nothing about the bytes: failing would fail this good object on every run."""
    real = parted_etag(DATA, PART)
    guessed = replace(layout(part=PART - KIB, confirmed=False), alternates=(PART + KIB,))
    reader = VerifyingReader(io.BytesIO(DATA), guessed, source_etag=real, block=10 * KIB)
    sent, error = drain(reader)
    assert error is None and sent == DATA
    assert reader.unchecked is not None
    assert f"no likely size ({PART - KIB} bytes, {PART + KIB} bytes) rebuilds its ETag" in reader.unchecked


def test_a_guess_hashed_on_the_side_checks_the_read() -> None:
    """The likeliest guess is the layout the copy uses; the others are hashed in the same read."""
    real = parted_etag(DATA, PART)
    guessed = replace(layout(part=PART - KIB, confirmed=False), alternates=(PART + KIB, PART))
    reader = VerifyingReader(io.BytesIO(DATA), guessed, source_etag=real, block=7 * KIB)
    assert drain(reader) == (DATA, None) and reader.unchecked is None
    wrong = bytearray(DATA)
    wrong[PART + 5] ^= 1
    reader = VerifyingReader(io.BytesIO(bytes(wrong)), guessed, source_etag=real, block=7 * KIB)
    assert drain(reader) == (bytes(wrong), None) and reader.unchecked is not None  # unconfirmed: no proof either way
    # a confirmed size too large for part buffers is hashed on the side, and holds the read to it
    other = PartLayout(len(DATA), PART - KIB, 4, matches_source=False, confirmed=True, alternates=(PART,))
    assert drain(VerifyingReader(io.BytesIO(DATA), other, source_etag=real)) == (DATA, None)
    sent, error = drain(VerifyingReader(io.BytesIO(bytes(wrong)), other, source_etag=real))
    assert isinstance(error, VerificationFailed) and len(sent) < len(DATA)


def test_a_right_guess_checks_the_read_and_a_confirmed_layout_that_misses_fails_it() -> None:
    right = VerifyingReader(io.BytesIO(DATA), layout(confirmed=False), source_etag=parted_etag(DATA, PART))
    assert drain(right) == (DATA, None) and right.unchecked is None
    confirmed_wrong = VerifyingReader(io.BytesIO(DATA), layout(part=PART - KIB), source_etag=parted_etag(DATA, PART))
    sent, error = drain(confirmed_wrong)
    assert isinstance(error, VerificationFailed) and "multipart ETag" in str(error) and len(sent) < len(DATA)


def test_check_source_parts_what_a_source_can_prove() -> None:
    digests = [hashlib.md5(DATA[i:i + PART]).digest() for i in range(0, len(DATA), PART)]
    etag = parted_etag(DATA, PART)
    assert check_source_parts(digests, [], layout(), etag) is None
    assert check_source_parts(digests, [], layout(), hashlib.md5(DATA).hexdigest()) is None  # plain ETag: checked by its MD5
    with pytest.raises(VerificationFailed, match="multipart ETag"):
        check_source_parts(digests[::-1], [], layout(), etag)
    assert "rebuilds its ETag" in (check_source_parts(digests[::-1], [], layout(confirmed=False), etag) or "")
    two = replace(layout(confirmed=False), alternates=(PART + KIB,))
    assert check_source_parts(digests[::-1], [digests], two, etag) is None  # any guess that rebuilds it
    # a layout that cannot be the source's: its own part MD5s prove nothing, only the alternates count
    apart = replace(layout(confirmed=False), matches_source=False, alternates=(PART + KIB,))
    assert "rebuilds its ETag" in (check_source_parts(digests, [digests[::-1]], apart, etag) or "")
    assert check_source_parts(digests[::-1], [digests], apart, etag) is None
    # a SHA-256 the source recorded checks the read instead (check_source_bytes compares it)
    assert check_source_parts(digests[::-1], [], layout(confirmed=False), etag, recorded_sha256="ab" * 32) is None
    assert "unknown size" in (check_source_parts([], [], PartLayout(len(DATA), PART, 4), etag) or "")


class FakeClient:
    def __init__(self, objects: dict[str, dict[str, str]], tags: dict[str, list[dict[str, str]]]) -> None:
        self.objects, self.tags, self.tag_reads = objects, tags, []

    def head_object(self, Bucket: str, Key: str) -> dict:  # noqa: N803
        return {"Metadata": self.objects[Key]}

    def get_object_tagging(self, Bucket: str, Key: str) -> dict:  # noqa: N803
        self.tag_reads.append(Key)
        return {"TagSet": self.tags.get(Key, [])}


def test_read_metadata_merges_the_md5_tag_only_where_the_metadata_points_to_it() -> None:
    loc = S3Location("b", "bucket", "p/", None)
    client = FakeClient(
        {"p/tagged": {META_SOURCE_ETAG: "x-3", META_MD5_IN_TAG: "1"}, "p/plain": {META_SOURCE_ETAG: "y", META_MD5: "y"},
         "p/untagged": {META_SOURCE_ETAG: "z-2", META_MD5_IN_TAG: "1"}},
        {"p/tagged": [{"Key": "team", "Value": "ml"}, {"Key": TAG_MD5, "Value": "abc"}]},
    )
    got = read_metadata(loc, ["tagged", "plain", "untagged"], concurrency=2, client=client)
    assert got["tagged"][META_MD5] == "abc"
    assert got["plain"] == {META_SOURCE_ETAG: "y", META_MD5: "y"}
    assert META_MD5 not in got["untagged"]  # no tag: no MD5, so the planner copies it again
    assert sorted(client.tag_reads) == ["p/tagged", "p/untagged"]
