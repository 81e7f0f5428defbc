"""Checkpoint verification: will these weights load, and are they the bytes we trained?

    from blocks import StorageTarget
    from flows.checkpoint_verification import CheckpointLocation, VerifyOptions, verify_checkpoint
    report = verify_checkpoint(CheckpointLocation(storage="region-a", prefix="models/llama-7b"))
    # ^ returns the CheckpointReport, or raises CheckpointVerificationFailed (with .report)
    state = verify_checkpoint(CheckpointLocation(prefix="run-42"), target=StorageTarget(url="file:///ckpt"),
                              return_state=True)   # Failed when anything is corrupt or dangerous
    report = report_of(state)                      # the CheckpointReport either way

Checks every file under the prefix by format (safetensors and their index, GGUF, pickle), hashes
each file and each safetensors tensor in one pass, writes or checks the integrity manifest, and
with ``compare_replica`` verifies the same prefix in a second region and names every difference.
The run ends Failed when a checkpoint is corrupt or dangerous; the report is its result either way.
"""

from __future__ import annotations

import time
from enum import Enum

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.states import Completed, Failed, State
from pydantic import Field, field_validator

from blocks import StorageTarget
from tasks.checkpoint_findings import Finding, FindingKind, finding
from tasks.checkpoint_manifest import MANIFEST_NAME, HashAlgorithm, IntegrityManifest, compare_manifests, parse_manifest
from tasks.checkpoint_report import CheckpointReport, build_report, checkpoint_dirs
from tasks.checkpoint_verification import list_files, load_target, read_manifest, verify_batch, write_manifest
from tasks.checkpoint_verifier import FileResult, VerifySettings, build_manifest, cross_check_indexes
from tasks.errors import LLMResilienceError
from tasks.strict_input import StrictInput
from tasks.task_runners import TaskRunnerSettings, check_task_runner, use_task_runner

REPORT_ARTIFACT_KEY = "checkpoint-verification-report"
TABLE_ARTIFACT_KEY = "checkpoint-verification-findings"
EVENT_PREFIX = "llm-resilience.checkpoint"


class CheckpointVerificationFailed(LLMResilienceError):
    """The flow's failure: a checkpoint is corrupt or dangerous. ``report`` holds every finding."""

    def __init__(self, message: str, report: CheckpointReport):
        super().__init__(message, report)  # both in args, so the exception pickles with its report
        self.message, self.report = message, report

    def __str__(self) -> str:
        return self.message


def report_of(state: State) -> CheckpointReport:
    """The report of a ``verify_checkpoint(..., return_state=True)`` run, passed or failed."""
    result = state.result(raise_on_failure=False)
    return result.report if isinstance(result, CheckpointVerificationFailed) else result


class ManifestMode(str, Enum):
    auto = "auto"    # check against the manifest if there is one, else write it (only when clean)
    write = "write"  # (re)write the manifest from what is there now (only when clean)
    check = "check"  # the manifest must exist; every difference is a finding
    off = "off"


class CheckpointLocation(StrictInput):
    """Where the checkpoint lives: a StorageTarget block and a prefix below its root."""

    storage: str = Field(default="region-a", description="StorageTarget block name (ignored when a target is passed in Python).")
    prefix: str = Field(default="", description="Prefix below the target's root holding one or more checkpoints.")


class VerifyOptions(StrictInput):
    manifest: ManifestMode = Field(default=ManifestMode.auto, description="Write or check the integrity manifest.")
    manifest_path: str = Field(default=MANIFEST_NAME, description="Manifest path relative to the prefix.")

    @field_validator("manifest_path")
    @classmethod
    def _inside_the_prefix(cls, value: str) -> str:
        """The manifest is written below the prefix and left out of the checkpoint's listing: a path
        outside it, or onto a directory, is refused before anything is read."""
        parts = value.split("/")
        if not value or value.startswith("/") or value.endswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"manifest_path {value!r} must be a relative file path below the prefix (no '..', no leading '/')")
        return value
    hash_algorithm: HashAlgorithm = Field(
        default=HashAlgorithm.blake3, description="blake3: fast, all cores (routine). sha256: a standard digest."
    )
    tensor_stats: bool = Field(default=False, description="Report NaN, Inf and all-zero tensors (reads every tensor).")
    compare_replica: str | None = Field(
        default=None, description="StorageTarget block of a replica region (e.g. region-b): compare the same prefix there."
    )
    batch_size: int = Field(default=200, ge=1, le=10_000, description="Files per task run.")
    task_runner: TaskRunnerSettings = Field(
        default_factory=TaskRunnerSettings, description="Where file batches run: in the flow process, or on a Dask cluster."
    )


# persist_result: the report rides in the returned state. If the server answers the final state
# late, the client retries and is handed the server's copy of the state, which carries a result
# only when it was persisted; without it the report (and the exception) would be lost.
@flow(name="verify-checkpoint", log_prints=True, persist_result=True)
def verify_checkpoint(
    location: CheckpointLocation | None = None,
    options: VerifyOptions | None = None,
    target: StorageTarget | None = None,
    replica_target: StorageTarget | None = None,
) -> State:
    location = location or CheckpointLocation()
    options = options or VerifyOptions()
    check_task_runner(options.task_runner)  # an unreachable Dask scheduler stops the run before any work
    with use_task_runner(options.task_runner):  # file batches (verify_batch.submit) go to the chosen runner
        return _verify(location, options, target, replica_target)


def _verify(
    location: CheckpointLocation, options: VerifyOptions, target: StorageTarget | None, replica_target: StorageTarget | None
) -> State:
    logger = get_run_logger()
    started = time.perf_counter()
    primary = target or load_target(location.storage)
    recorded, manifest_findings = _load_recorded_manifest(primary, location.prefix, options)
    algorithm = recorded.algorithm if recorded is not None else options.hash_algorithm
    settings = VerifySettings(hash_algorithm=algorithm, tensor_stats=options.tensor_stats)
    exclude = [options.manifest_path]

    results, extra = _verify_location(primary, location.prefix, settings, exclude, options.batch_size)
    extra += manifest_findings
    manifest_action = "off"
    if results and options.manifest is not ManifestMode.off:
        all_findings = [f for r in results for f in r.findings] + extra
        manifest_action, found = _manifest_step(
            primary, location.prefix, options, recorded, build_manifest(results, algorithm), all_findings,
            unreadable=bool(manifest_findings),
        )
        extra += found

    replica_label = None
    if options.compare_replica or replica_target is not None:
        replica = replica_target or load_target(options.compare_replica)
        replica_label = options.compare_replica or replica.url
        replica_results, replica_extra = _verify_location(replica, location.prefix, settings, exclude, options.batch_size)
        # The replica's own structural findings, labelled with its region, then every difference.
        for r in replica_results:
            extra += [f.model_copy(update={"file": f"{replica_label}:{f.file}"}) for f in r.findings]
        extra += [f.model_copy(update={"file": f"{replica_label}:{f.file}"}) for f in replica_extra]
        if results and replica_results:
            extra += compare_manifests(build_manifest(results, algorithm), build_manifest(replica_results, algorithm), replica=replica_label)

    report = build_report(
        primary.path(location.prefix.strip("/")) if location.prefix.strip("/") else primary.url,
        results, extra, hash_algorithm=algorithm.value, manifest_action=manifest_action, replica=replica_label,
    )
    report.seconds = time.perf_counter() - started
    publish_report(report)
    emit_checkpoint_events(report, primary.url, location.prefix)
    kinds = ", ".join(f"{k.value} x{n}" for k, n in report.kinds().most_common())
    logger.info("checkpoint verification: %s (%d files; %s)", report.verdict.value, len(report.files), kinds or "no findings")
    if report.failed:
        message = f"checkpoint {report.verdict.value}: {kinds}"[:1000]
        return Failed(message=message, data=CheckpointVerificationFailed(message, report))
    return Completed(message=f"checkpoint {report.verdict.value}", data=report)


def _verify_location(
    target: StorageTarget, prefix: str, settings: VerifySettings, exclude: list[str], batch_size: int
) -> tuple[list[FileResult], list[Finding]]:
    files = list_files(target, prefix, exclude)
    if not files:
        return [], [finding(FindingKind.empty_prefix, "", f"no files under {target.url} prefix {prefix!r}")]
    if not checkpoint_dirs([f.path for f in files]):
        return [], [finding(FindingKind.no_checkpoint_found, "", f"{len(files)} files under {target.url} prefix {prefix!r}, none of them safetensors, GGUF or a pickle checkpoint")]
    futures = [verify_batch.submit(target, prefix, files[i : i + batch_size], settings) for i in range(0, len(files), batch_size)]
    results = [r for fut in futures for r in fut.result()]
    return results, cross_check_indexes(results)


def _load_recorded_manifest(target: StorageTarget, prefix: str, options: VerifyOptions) -> tuple[IntegrityManifest | None, list[Finding]]:
    """The manifest to check against (auto/check modes), read before hashing so its algorithm is used."""
    if options.manifest not in (ManifestMode.auto, ManifestMode.check):
        return None, []
    raw = read_manifest(target, prefix, options.manifest_path)
    if raw is None:
        if options.manifest is ManifestMode.check:
            return None, [finding(FindingKind.manifest_invalid, options.manifest_path, "manifest=check but no manifest exists at this path")]
        return None, []
    return parse_manifest(raw, options.manifest_path)


def _manifest_step(
    target: StorageTarget, prefix: str, options: VerifyOptions, recorded: IntegrityManifest | None,
    current: IntegrityManifest, findings_so_far: list[Finding], *, unreadable: bool = False,
) -> tuple[str, list[Finding]]:
    if recorded is not None:
        return "checked", compare_manifests(recorded, current)
    if options.manifest is ManifestMode.check:
        return "missing or invalid", []
    if unreadable:  # never overwrite a manifest we could not read: it may be the only record
        return "invalid (left untouched)", []
    if any(f.severity.rank >= 2 for f in findings_so_far):
        return "not written (checkpoint has findings)", []
    if options.manifest is ManifestMode.write and (existing := read_manifest(target, prefix, options.manifest_path)) is not None:
        _, invalid = parse_manifest(existing, options.manifest_path)
        if invalid:  # write replaces a manifest, never another file that happens to sit at the path
            return "invalid (left untouched)", [finding(FindingKind.manifest_invalid, options.manifest_path,
                                                        "manifest=write: a file that is not a checkpoint manifest is at this path; not overwritten")]
    path = write_manifest(target, prefix, options.manifest_path, current)
    return f"written to {path}", []


def publish_report(report: CheckpointReport) -> None:
    create_markdown_artifact(key=REPORT_ARTIFACT_KEY, markdown=report.markdown(),
                             description=f"Checkpoint verification of {report.location}: {report.verdict.value}")
    create_table_artifact(key=TABLE_ARTIFACT_KEY, table=report.table_rows(),
                          description=f"Per-checkpoint verdicts and every finding ({report.verdict.value})")


def emit_checkpoint_events(report: CheckpointReport, url: str, prefix: str) -> None:
    base = f"{url.rstrip('/')}/{prefix.strip('/')}".rstrip("/")
    checkpoints = report.checkpoints or []
    if not checkpoints:  # empty prefix / nothing found: still say so
        emit_event(
            event=f"{EVENT_PREFIX}.corrupt",
            resource={"prefect.resource.id": f"llm-resilience.checkpoint.{base}", "prefect.resource.name": base},
            payload={"verdict": report.verdict.value, "findings": [str(f) for f in report.findings[:20]]},
        )
    for c in checkpoints:
        name = f"{base}/{c.checkpoint}".rstrip("/")
        emit_event(
            event=f"{EVENT_PREFIX}.{'corrupt' if c.verdict.failed else 'verified'}",
            resource={"prefect.resource.id": f"llm-resilience.checkpoint.{name}", "prefect.resource.name": name},
            payload={
                "verdict": c.verdict.value, "files": c.files, "bytes": c.bytes,
                "finding_kinds": sorted({f.kind.value for f in c.findings}),
                "findings": [str(f) for f in c.findings[:20]],
                "manifest": report.manifest_action, "replica": report.replica,
            },
        )


if __name__ == "__main__":
    print(report_of(verify_checkpoint(return_state=True)).markdown())
