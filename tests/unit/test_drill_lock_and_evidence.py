"""Overlapping drills are refused; a dead holder releases its claim; evidence renders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tasks.drill_journal import DrillJournal, summary_markdown, write_local
from tasks.drill_load import TurnRecord
from tasks.drill_lock import DrillOverlapError, claim_targets
from tasks.drill_measurements import Marks, measure
from tasks.drill_timeline_chart import render_timeline
from tasks.regional_failover import FailbackPolicy


def test_a_second_drill_on_the_same_target_is_refused(tmp_path: Path) -> None:
    with claim_targets(tmp_path, ["llm-region-a"], experiment="first", run="r1"):
        with pytest.raises(DrillOverlapError, match=r"llm-region-a is held by another drill \(experiment first, run r1"):
            with claim_targets(tmp_path, ["redis-region-a", "llm-region-a"], experiment="second", run="r2"):
                pass
        with claim_targets(tmp_path, ["llm-region-b"], experiment="other", run="r3"):
            pass  # a different target is free
    with claim_targets(tmp_path, ["llm-region-a"], experiment="third", run="r4"):
        pass  # released after the first drill ended


def test_a_killed_holder_releases_its_claim(tmp_path: Path) -> None:
    code = (f"from tasks.drill_lock import claim_targets; import os, signal, pathlib\n"
            f"with claim_targets(pathlib.Path({str(tmp_path)!r}), ['llm-region-a'], experiment='x', run='y'):\n"
            f"    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == -9
    with claim_targets(tmp_path, ["llm-region-a"], experiment="after", run="z"):
        pass


def test_timeline_png_and_summary(tmp_path: Path) -> None:
    t0 = 1000.0
    records = [TurnRecord(0, i, t0 + i * 0.5, 100 + i, 200, "region-a" if i < 10 or i > 20 else "region-b")
               for i in range(40)] + [TurnRecord(1, 1, t0 + 5.2, 2000, 504, None, "timeout")]
    marks = Marks(load_started=t0, fault_injected=t0 + 5, rollback_done=t0 + 10.5, ended=t0 + 20)
    m = measure(records, marks, [], primary="region-a", secondary="region-b", lost_turns=0, acknowledged=40)
    png = render_timeline(records, marks, m, title="crash")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    journal = DrillJournal(experiment={"name": "crash", "description": "d"}, run="r", started_at=t0,
                           status="failed", reasons=["SLO max_failover_ms breached"], marks=marks, measurements=m)
    md = summary_markdown(journal, png, {"journal": "http://x/journal.json"})
    assert "**FAILED**" in md and "SLO max_failover_ms breached" in md
    assert "data:image/png;base64," in md and "1 of 41" in md
    files = write_local(journal, png, tmp_path / "ev")
    assert DrillJournal.model_validate_json(files["journal"].read_text()).reasons == journal.reasons
    assert files["timeline"].read_bytes() == png


@pytest.mark.parametrize("steps", [[50, 10, 100], [10, 50], [0, 100], [10, 10, 100]])
def test_failback_steps_must_rise_to_100(steps: list[int]) -> None:
    with pytest.raises(ValueError, match="must increase strictly"):
        FailbackPolicy(steps_percent=steps)
