"""Which files a restore drill samples, and the full-restore RTO it estimates (no server)."""

from __future__ import annotations

import pytest

from tasks.backup_manifest import FileEntry
from tasks.restore_sample import choose_sample, estimated_full_rto


def entry(path: str, size: int) -> FileEntry:
    return FileEntry(path=path, size=size, hash="0" * 64, chunks=[])


FILES = [
    entry("models/llama/model-00001.safetensors", 900),
    entry("models/llama/model-00002.safetensors", 800),
    entry("models/llama/config.json", 40),
    entry("prompts/summarise.yaml", 12),
    entry("prompts/classify.yaml", 30),
    entry("sessions/redis-export.jsonl.zst", 500),
] + [entry(f"prompts/extra-{i:02d}.yaml", 20) for i in range(20)]
SOURCES = ["models", "prompts", "sessions"]


def test_no_budget_restores_every_file() -> None:
    assert choose_sample(FILES, SOURCES, None, seed="s1") == FILES


def test_every_source_is_sampled_even_past_the_budget() -> None:
    sample = choose_sample(FILES, SOURCES, 100, seed="s1")
    paths = [f.path for f in sample]
    # each source's smallest file: the session export alone is 500 bytes, over the whole budget
    assert {"models/llama/config.json", "prompts/summarise.yaml", "sessions/redis-export.jsonl.zst"} <= set(paths)
    assert paths == [f.path for f in FILES if f.path in paths]  # manifest order
    assert not any("model-0000" in p for p in paths)


def test_the_rest_of_the_budget_is_filled_and_never_exceeded() -> None:
    coverage = 40 + 12 + 500
    sample = choose_sample(FILES, SOURCES, coverage + 100, seed="s1")
    spent = sum(f.size for f in sample)
    assert coverage < spent <= coverage + 100
    assert all(f.size > coverage + 100 - spent for f in FILES if f not in sample)  # nothing left would still fit


def test_each_snapshot_samples_different_files_and_the_same_snapshot_the_same() -> None:
    picks = {seed: tuple(f.path for f in choose_sample(FILES, SOURCES, 40 + 12 + 500 + 60, seed=seed))
             for seed in ("a1", "b2", "c3", "d4")}
    assert choose_sample(FILES, SOURCES, 612, seed="a1") == choose_sample(FILES, SOURCES, 612, seed="a1")
    assert len(set(picks.values())) > 1


def test_a_whole_restore_is_its_own_rto_and_a_sample_scales_by_bytes() -> None:
    assert estimated_full_rto(12.0, 1000, 10, 1000, 10) == 12.0
    assert estimated_full_rto(2.0, 100, 3, 1000, 10) == pytest.approx(20.0)
    assert estimated_full_rto(1.0, 0, 2, 0, 8) == pytest.approx(4.0)  # empty files: by count
