"""Progress of a replication run, batch by batch: pure figures, no server."""

from __future__ import annotations

from tasks.replication_copy import CopyOutcome
from tasks.replication_progress import CopyProgress, human_bytes

MIB = 1024 * 1024


def test_progress_counts_bytes_objects_and_failures_per_batch() -> None:
    p = CopyProgress(total_objects=4, total_bytes=40 * MIB, total_batches=2)
    assert p.percent == 0.0
    p.add([CopyOutcome("a", 10 * MIB, "copied"), CopyOutcome("b", 20 * MIB, "failed", error="x")])
    assert (p.batches, p.objects, p.bytes, p.failed) == (1, 2, 30 * MIB, 1)
    assert p.percent == 75.0  # by bytes: the large objects are what takes the time
    assert p.line("region-b:s3://b/p/") == (
        "region-b:s3://b/p/: batch 1/2, 2/4 objects, 30.0 MiB/40.0 MiB (75%), 1 failed"
    )
    p.add([CopyOutcome("c", 10 * MIB, "vanished"), CopyOutcome("d", 0, "copied")])
    assert p.percent == 100.0 and p.objects == 4 and p.failed == 1


def test_progress_of_empty_objects_goes_by_count_and_nothing_to_do_is_done() -> None:
    p = CopyProgress(total_objects=4, total_bytes=0, total_batches=4)
    p.add([CopyOutcome("a", 0, "copied")])
    assert p.percent == 25.0
    assert CopyProgress(total_objects=0, total_bytes=0, total_batches=0).percent == 100.0


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1536, 12 * MIB, 3 * 1024 * MIB + 200 * MIB, 2 * 1024**4)] == [
        "0 B", "1023 B", "1.5 KiB", "12.0 MiB", "3.2 GiB", "2.0 TiB",
    ]


def test_a_bar_the_api_fails_to_move_is_a_warning_not_a_failed_run(caplog) -> None:  # noqa: ANN001
    import logging
    import uuid

    import httpx

    from tasks.replication_progress import show_progress

    logger = logging.getLogger("test.replication.progress")
    p = CopyProgress(total_objects=1, total_bytes=MIB, total_batches=1)
    p.add([CopyOutcome("a", MIB, "copied")])
    moved: list[tuple[uuid.UUID, float]] = []
    bar = uuid.uuid4()
    with caplog.at_level(logging.INFO, logger=logger.name):
        show_progress(p, "region-b:s3://b/", logger, bar, lambda i, pct: moved.append((i, pct)))
        show_progress(p, "region-b:s3://b/", logger, None, lambda i, pct: moved.append((i, pct)))

        def broken(i: uuid.UUID, pct: float) -> None:
            raise httpx.ConnectError("server went away")

        show_progress(p, "region-b:s3://b/", logger, bar, broken)
    assert moved == [(bar, 100.0)]  # no bar: nothing to move
    assert [r.levelname for r in caplog.records] == ["INFO", "INFO", "INFO", "WARNING"]
    assert "progress bar not updated (server went away)" in caplog.records[-1].getMessage()
