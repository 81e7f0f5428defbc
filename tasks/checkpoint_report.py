"""The verification report: a verdict per file and per checkpoint, as a model, table rows and markdown."""

from __future__ import annotations

import posixpath
from collections import Counter
from datetime import datetime, timezone
from enum import Enum

from pydantic import BaseModel, Field

from tasks.checkpoint_findings import Finding, FindingKind
from tasks.checkpoint_verifier import FileResult, checkpoint_of, file_format


class Verdict(str, Enum):
    ok = "ok"
    warning = "warning"
    corrupt = "corrupt"
    dangerous = "dangerous"

    @classmethod
    def of(cls, findings: list[Finding]) -> "Verdict":
        worst = max((f.severity for f in findings), key=lambda s: s.rank, default=None)
        return cls.ok if worst is None else cls(worst.value)

    @property
    def failed(self) -> bool:
        return self in (Verdict.corrupt, Verdict.dangerous)


class FileVerdict(BaseModel):
    path: str
    format: str
    size: int
    verdict: Verdict
    digest: str | None = None
    findings: list[Finding] = Field(default_factory=list)


class CheckpointVerdict(BaseModel):
    checkpoint: str  # directory relative to the prefix ('' = the prefix itself)
    verdict: Verdict
    files: int
    bytes: int
    findings: list[Finding] = Field(default_factory=list)


class CheckpointReport(BaseModel):
    location: str
    checked_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    hash_algorithm: str = ""
    manifest_action: str = ""   # written / checked / skipped
    replica: str | None = None
    files: list[FileVerdict] = Field(default_factory=list)
    checkpoints: list[CheckpointVerdict] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)  # every finding, files and cross-checks
    seconds: float = 0.0

    @property
    def verdict(self) -> Verdict:
        return Verdict.of(self.findings)

    @property
    def failed(self) -> bool:
        return self.verdict.failed

    def kinds(self) -> Counter[FindingKind]:
        return Counter(f.kind for f in self.findings)

    def table_rows(self) -> list[dict[str, str]]:
        rows = [
            {"checkpoint": c.checkpoint or ".", "file": "", "tensor": "", "offset": "", "verdict": c.verdict.value,
             "kind": "", "detail": f"{c.files} files, {c.bytes} bytes, {len(c.findings)} findings"}
            for c in self.checkpoints
        ]
        for f in self.findings:
            rows.append({
                "checkpoint": finding_checkpoint(f.file, self.replica) or ".", "file": f.file, "tensor": f.tensor or "",
                "offset": "" if f.offset is None else str(f.offset), "verdict": f.severity.value,
                "kind": f.kind.value, "detail": f.detail,
            })
        return rows

    def markdown(self, max_findings: int = 200) -> str:
        lines = [
            f"# Checkpoint verification: **{self.verdict.value}**",
            "",
            f"- location: `{self.location}`" + (f" (replica compared: `{self.replica}`)" if self.replica else ""),
            f"- checked at {self.checked_at:%Y-%m-%d %H:%M:%S} UTC in {self.seconds:.2f} s; "
            f"{len(self.files)} files, {sum(f.size for f in self.files)} bytes; hash {self.hash_algorithm}; manifest {self.manifest_action}",
            "",
            "| checkpoint | verdict | files | bytes | findings |",
            "|---|---|---|---|---|",
        ]
        lines += [f"| `{c.checkpoint or '.'}` | {c.verdict.value} | {c.files} | {c.bytes} | {len(c.findings)} |" for c in self.checkpoints]
        if self.findings:
            lines += ["", "## Findings", "", "| kind | file | tensor | offset | detail |", "|---|---|---|---|---|"]
            for f in self.findings[:max_findings]:
                detail = f.detail.replace("|", "\\|")
                lines.append(f"| {f.kind.value} | `{f.file}` | {f.tensor or ''} | {'' if f.offset is None else f.offset} | {detail} |")
            if len(self.findings) > max_findings:
                lines.append(f"\n... and {len(self.findings) - max_findings} more (see the table artifact)")
        return "\n".join(lines)


def finding_checkpoint(file: str, replica: str | None) -> str:
    """The checkpoint directory a finding belongs to. A replica's findings name their file as
    ``<replica>:<path>``; only that label is cut off, since the label may be a URL and a path may
    hold a colon of its own."""
    if not file:
        return ""
    if replica and file.startswith(f"{replica}:"):
        file = file[len(replica) + 1:]
    return checkpoint_of(file)


def build_report(
    location: str,
    results: list[FileResult],
    extra_findings: list[Finding],
    *,
    hash_algorithm: str,
    manifest_action: str,
    replica: str | None = None,
) -> CheckpointReport:
    """Verdicts per file and per checkpoint directory; cross-check findings land on the file they name."""
    by_file: dict[str, list[Finding]] = {r.path: list(r.findings) for r in results}
    for f in extra_findings:
        if f.file in by_file:
            by_file[f.file].append(f)
    files = [
        FileVerdict(path=r.path, format=r.format, size=r.size, verdict=Verdict.of(by_file[r.path]),
                    digest=r.digest.digest if r.digest else None, findings=by_file[r.path])
        for r in results
    ]
    all_findings = [f for r in results for f in r.findings] + list(extra_findings)
    weights_dirs = set(checkpoint_dirs([r.path for r in results]))
    groups: dict[str, list[FileResult]] = {d: [] for d in weights_dirs}
    for r in results:
        if checkpoint_of(r.path) in weights_dirs:
            groups[checkpoint_of(r.path)].append(r)
    for f in extra_findings:  # a missing shard or file may name a directory with no file left
        groups.setdefault(finding_checkpoint(f.file, replica), [])
    checkpoints = []
    for directory in sorted(groups):
        members = groups[directory]
        found = [f for f in all_findings if finding_checkpoint(f.file, replica) == directory]
        checkpoints.append(CheckpointVerdict(
            checkpoint=directory, verdict=Verdict.of(found), files=len(members), bytes=sum(m.size for m in members), findings=found,
        ))
    return CheckpointReport(
        location=location, hash_algorithm=hash_algorithm, manifest_action=manifest_action, replica=replica,
        files=files, checkpoints=checkpoints, findings=all_findings,
    )


def is_checkpoint_dir(paths: list[str]) -> bool:
    return any(file_format(p) != "other" for p in paths)


def checkpoint_dirs(paths: list[str]) -> list[str]:
    groups: dict[str, list[str]] = {}
    for p in paths:
        groups.setdefault(posixpath.dirname(p), []).append(p)
    return sorted(d for d, members in groups.items() if is_checkpoint_dir(members))
