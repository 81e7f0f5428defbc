"""The drill's timeline as a PNG a person can read at a glance.

Top: the latency of every request (by the region that answered; failures as red crosses on
the axis), with the fault period shaded and detection, failover, rollback and recovery marked.
Bottom: failed requests per second.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no screen: render to memory only

import matplotlib.pyplot as plt  # noqa: E402

from tasks.drill_load import TurnRecord  # noqa: E402
from tasks.drill_measurements import Marks, Measurements  # noqa: E402

COLORS = {"region-a": "#1f77b4", "region-b": "#2ca02c"}


def render_timeline(records: Sequence[TurnRecord], marks: Marks, m: Measurements, *, title: str) -> bytes:
    t0 = marks.load_started
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    for backend in sorted({r.backend for r in records if r.ok and r.backend}):
        xs = [r.sent_at - t0 for r in records if r.ok and r.backend == backend]
        ys = [r.latency_ms for r in records if r.ok and r.backend == backend]
        top.scatter(xs, ys, s=10, color=COLORS.get(backend), label=f"served by {backend}")
    failed = [r for r in records if not r.ok]
    if failed:
        top.scatter([r.sent_at - t0 for r in failed], [r.latency_ms for r in failed], s=28, marker="x",
                    color="#d62728", label="failed")
    for ax in (top, bottom):
        ax.axvspan(marks.fault_injected - t0, marks.rollback_done - t0, color="#ff7f0e", alpha=0.12)
    events = [("fault", marks.fault_injected, "#ff7f0e"), ("rollback", marks.rollback_done, "#9467bd")]
    for label, ms, base, color in (("detected", m.detect_ms, marks.fault_injected, "#8c564b"),
                                   ("failed over", m.failover_ms, marks.fault_injected, "#2ca02c"),
                                   ("recovered", m.recover_ms, marks.rollback_done, "#1f77b4")):
        if ms is not None:
            events.append((label, base + ms / 1000, color))
    for label, at, color in events:
        top.axvline(at - t0, color=color, linestyle="--", linewidth=1)
        top.annotate(label, (at - t0, 1.0), xycoords=("data", "axes fraction"), rotation=90, fontsize=8,
                     va="top", ha="right", color=color)
    top.set_yscale("log")
    top.set_ylabel("latency (ms)")
    top.set_title(title, fontsize=10)
    top.legend(loc="upper left", fontsize=8)
    per_second = Counter(int(r.sent_at - t0) for r in failed)
    end = int(marks.ended - t0) + 1
    bottom.bar(range(end), [per_second.get(s, 0) for s in range(end)], color="#d62728", width=0.9)
    bottom.set_ylabel("failed/s")
    bottom.set_xlabel("seconds since load started")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=90)
    plt.close(fig)
    return out.getvalue()
