"""`make demo`'s table of runs: it covers prefect.yaml, its order gives each run what it needs,
its parameters are ones the flows accept, and its summary names every run that did not complete.
The seeded checkpoint is a valid safetensors file by the project's verifier and by the reference
library."""

from __future__ import annotations

from pathlib import Path

import fsspec
import numpy as np
import pytest
import yaml
from safetensors.numpy import load as load_safetensors

from deployments import demo, demo_seed
from deployments.demo import RUNS, DemoRun, RunOutcome, deployment_names, deployments_in, plan_problems, summary
from deployments.settings import PROJECT_ROOT
from tasks.checkpoint_verifier import VerifySettings, list_checkpoint_files, verify_files

ORDER = [r.deployment for r in RUNS]


def test_every_deployment_in_prefect_yaml_has_exactly_one_demo_run() -> None:
    names = deployment_names()
    from deployments.deploy import local_deployments

    assert len(names) == len(local_deployments()) >= 20
    assert plan_problems(RUNS, names) == []
    assert sorted(ORDER) == sorted(names)


def test_a_new_deployment_without_a_demo_entry_is_named(tmp_path: Path) -> None:
    spec = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    spec["deployments"].append({"name": "health-check-fast", "entrypoint": "flows/health.py:health_check",
                                "work_pool": {"name": "llm-resilience-local"}})
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert plan_problems(RUNS, deployment_names(path)) == [
        "no demo entry for deployment health-check/health-check-fast (add it to RUNS in deployments/demo.py)"]
    extra = (*RUNS, DemoRun("gone/gone", {}, "x"), RUNS[0])
    assert plan_problems(extra, deployment_names()) == [
        "demo entry gone/gone is not a deployment in prefect.yaml", "demo entry health-check/health-check appears 2 times"]


def _before(first: str, then: str) -> bool:
    return ORDER.index(first) < ORDER.index(then)


def test_each_run_comes_after_what_it_needs() -> None:
    assert ORDER[0] == "health-check/health-check"
    assert _before("replicate/replicate", "replication-status/replication-status")
    assert _before("replicate/replicate", "verify-checkpoint/verify-checkpoint")  # compares region-b's copy
    for needs_snapshot in ("verify-backup/verify-backup", "restore/restore", "prune/prune", "restore-drill/restore-drill"):
        assert _before("backup/backup", needs_snapshot)
    for needs_candidate in ("prompt-regression/prompt-regression", "promote-prompt/promote-prompt"):
        assert _before("manage-prompt/manage-prompt", needs_candidate)
    assert _before("prompt-regression/prompt-regression-nightly", "promote-prompt/promote-prompt")
    drills = [d for d in ORDER if d.startswith("failover-drill/")]
    assert len(drills) == 5 and all(RUNS[ORDER.index(d)].settle_after for d in drills)
    assert ORDER[-2:] == ["regional-failover/regional-failover", "failback/failback"]  # ends in the normal state
    assert all(_before(d, "regional-failover/regional-failover") for d in drills)


def test_restore_writes_only_into_the_scratch_block() -> None:
    params = RUNS[ORDER.index("restore/restore")].parameters["params"]
    assert params["target"] == demo_seed.SCRATCH_BLOCK not in {"region-a", "region-b"}


def test_replicate_never_deletes_what_only_region_b_holds() -> None:
    """The demo's replicate (and the scheduled one) use the defaults: deletes on, region-b's own
    backup repository and drill evidence excluded from both listings."""
    from flows.replication import ReplicationParams
    from tasks.s3_location import S3Location

    from flows.replication import _exclusions

    params = ReplicationParams(**RUNS[ORDER.index("replicate/replicate")].parameters.get("params", {}))
    assert params.delete and params.exclude_prefixes == ["backups/", "drills/"]
    b = S3Location("region-b", "llm-resilience-region-b", "")
    assert _exclusions(params, b) == (".llmr-quarantine/", "backups/", "drills/")


def test_verify_checkpoint_points_at_the_seeded_checkpoint() -> None:
    params = RUNS[ORDER.index("verify-checkpoint/verify-checkpoint")].parameters
    assert params["location"] == {"storage": "region-a", "prefix": demo_seed.CHECKPOINT_PREFIX}
    assert all(key.startswith(params["location"]["prefix"] + "/") for key in demo_seed.demo_checkpoint())


DEPLOYMENTS = deployments_in()


@pytest.mark.parametrize("run", RUNS, ids=ORDER)
def test_parameters_are_ones_the_flow_accepts(run: DemoRun) -> None:
    """Merged over the deployment's own, as the server does; a typo or a bad value fails here."""
    flow, entry = DEPLOYMENTS[run.deployment]
    merged = {**(entry.get("parameters") or {}), **run.parameters}
    flow.validate_parameters(merged)  # parameter models refuse unknown keys, nested ones too


def test_a_bad_parameter_is_caught_by_that_check() -> None:
    flow, _ = DEPLOYMENTS["restore/restore"]
    with pytest.raises(Exception, match="workers"):
        flow.validate_parameters({"params": {"target": "x", "workers": 0}})
    with pytest.raises(Exception, match="tagret"):
        flow.validate_parameters({"params": {"tagret": "x"}})
    with pytest.raises(Exception, match="keep_dayly"):
        DEPLOYMENTS["prune/prune"][0].validate_parameters({"params": {"policy": {"keep_dayly": 30}}})


def test_summary_names_each_run_that_did_not_complete_and_exits_1() -> None:
    ok = RunOutcome("health-check/health-check", "Completed", 4.2, "http://ui/runs/flow-run/1", completed=True)
    bad = RunOutcome("failover-drill/drill-model-server-hang", "Failed", 61.0, "http://ui/runs/flow-run/2",
                     "drill failed: p99 latency 4100 ms > 3000 ms")
    missing = RunOutcome("gone/gone", "NOT STARTED", 0.1, message="ObjectNotFound: gone/gone")
    text, code = summary([ok, bad, missing], "http://ui")
    assert code == 1
    assert "1 of 3 runs completed" in text and "Prefect UI: http://ui" in text
    assert ("DID NOT COMPLETE: failover-drill/drill-model-server-hang: Failed: drill failed: p99 latency 4100 ms "
            "> 3000 ms (http://ui/runs/flow-run/2)") in text
    assert "DID NOT COMPLETE: gone/gone: NOT STARTED: ObjectNotFound: gone/gone" in text
    assert "DID NOT COMPLETE: health-check" not in text
    assert summary([ok], "http://ui")[1] == 0


def test_a_run_that_raises_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    import prefect.deployments

    def refuse(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("deployment not found")

    monkeypatch.setattr(prefect.deployments, "run_deployment", refuse)
    out = demo.run_one(RUNS[0], demo.load_settings())
    assert (out.completed, out.state, out.message) == (False, "NOT STARTED", "RuntimeError: deployment not found")


def test_seeded_checkpoint_is_valid_safetensors(tmp_path: Path) -> None:
    for key, data in demo_seed.demo_checkpoint().items():
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(data)
        loaded = load_safetensors(data)
        for name, array in demo_seed.tiny_tensors().items():
            np.testing.assert_array_equal(loaded[name], array)
            assert loaded[name].dtype == array.dtype
    fs = fsspec.filesystem("file")
    files = list_checkpoint_files(fs, str(tmp_path))
    results = verify_files(fs, str(tmp_path), files, VerifySettings(tensor_stats=True))
    assert [r.path for r in results] == list(demo_seed.demo_checkpoint())
    assert [f.kind for r in results for f in r.findings] == []
    assert [t.name for t in results[0].tensors] == list(demo_seed.tiny_tensors())


def test_seeded_checkpoint_bytes_are_the_same_every_time() -> None:
    assert demo_seed.demo_checkpoint() == demo_seed.demo_checkpoint()


def test_seeding_twice_writes_nothing_the_second_time(tmp_path: Path) -> None:
    from blocks import StorageTarget
    from tasks.prompt_registry import PromptRegistry

    target = StorageTarget(url=f"file://{tmp_path}")
    first, second = demo_seed.SeedReport(), demo_seed.SeedReport()
    demo_seed.put_if_changed(target, demo_seed.DEMO_OBJECTS, first)
    demo_seed.put_if_changed(target, demo_seed.DEMO_OBJECTS, second)
    assert sorted(first.written) == sorted(demo_seed.DEMO_OBJECTS) and second.written == []
    (tmp_path / "demo" / "README.txt").write_bytes(b"changed")
    third = demo_seed.SeedReport()
    demo_seed.put_if_changed(target, demo_seed.DEMO_OBJECTS, third)
    assert third.written == ["demo/README.txt"]

    registry = PromptRegistry.from_target(target)
    demo_seed.seed_prompt(registry, first)
    registry.create_version("capitals", demo_seed.CANDIDATE_TEMPLATE, params=demo_seed.PROMPT_PARAMS)
    registry.move_label("capitals", "production", 2, actor="test", reason="promoted")
    demo_seed.seed_prompt(registry, second)
    assert [v.template for v in registry.versions("capitals")] == [demo_seed.BASELINE_TEMPLATE,
                                                                  demo_seed.CANDIDATE_TEMPLATE]
    assert registry.labels("capitals") == {"production": 2}  # a later run's promotion is left alone
