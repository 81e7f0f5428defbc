"""prefect.yaml's Kubernetes variants against the Kubernetes base job template shipped beside them.

No cluster here: these checks are what can be proven offline (variables declared and well-typed,
parameters valid for the flows, GPU requests wired into the job manifest)."""

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from deployments.deploy import LOCAL_POOL, local_deployments
from flows.backup import BackupParams
from flows.checkpoint_verification import CheckpointLocation, VerifyOptions
from flows.replication import ReplicationParams

ROOT = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((ROOT / "prefect.yaml").read_text())
TEMPLATE = json.loads((ROOT / "deployments" / "kubernetes" / "base-job-template.json").read_text())
K8S = [d for d in SPEC["deployments"] if d["work_pool"]["name"] == "llm-resilience-kubernetes"]
PARAMS = {"flows/replication.py:replicate": {"params": ReplicationParams},
          "flows/backup.py:backup": {"params": BackupParams},
          "flows/checkpoint_verification.py:verify_checkpoint": {"location": CheckpointLocation, "options": VerifyOptions}}


def test_there_are_kubernetes_variants_and_make_deploy_skips_them() -> None:
    assert {d["name"] for d in K8S} == {"replicate-k8s", "backup-k8s", "verify-checkpoint-gpu"}
    local = local_deployments()
    assert "replicate" in local and not {d["name"] for d in K8S} & set(local)
    assert all(d["work_pool"]["name"] == LOCAL_POOL for d in SPEC["deployments"] if d["name"] in local)


def test_every_template_placeholder_is_a_declared_variable() -> None:
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", json.dumps(TEMPLATE["job_configuration"])))
    assert used == set(TEMPLATE["variables"]["properties"])


@pytest.mark.parametrize("deployment", K8S, ids=lambda d: d["name"])
def test_job_variables_fit_the_template_and_parameters_fit_the_flow(deployment: dict) -> None:
    variables = deployment["work_pool"]["job_variables"]
    jsonschema.validate(variables, {**TEMPLATE["variables"], "additionalProperties": False})
    assert {"image", "cpu_request", "memory_request", "memory_limit"} <= set(variables)
    for name, model in PARAMS[deployment["entrypoint"]].items():
        model.model_validate(deployment["parameters"].get(name, {}))


def test_gpu_variant_requests_and_limits_whole_gpus() -> None:
    gpu = next(d for d in K8S if d["name"] == "verify-checkpoint-gpu")["work_pool"]["job_variables"]
    assert gpu["gpu_count"] == 1
    resources = TEMPLATE["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "{{ gpu_count }}"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**gpu, "gpu_count": 0.5}, TEMPLATE["variables"])
