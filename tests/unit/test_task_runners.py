"""The task-runner setting: validated addresses, a clear error for a dead scheduler, ordered batches."""

import pytest
from pydantic import ValidationError

from tasks.errors import ConfigurationError
from tasks.task_runners import TaskRunnerSettings, build_dask_runner, check_task_runner, iter_batches, run_batches
from tests.ports import free_ports


def test_default_is_the_flow_process_and_needs_no_check() -> None:
    settings = TaskRunnerSettings()
    assert settings.kind == "default" and settings.dask_address is None
    check_task_runner(settings)  # nothing to reach


def test_unreachable_scheduler_names_the_setting() -> None:
    dead = free_ports(1)[0]
    with pytest.raises(ConfigurationError) as err:
        check_task_runner(TaskRunnerSettings(kind="dask", dask_address=f"tcp://127.0.0.1:{dead}"), timeout_s=2)
    assert "task_runner.dask_address" in str(err.value) and str(dead) in str(err.value)


def test_addresses_are_normalised_and_nonsense_is_refused() -> None:
    assert TaskRunnerSettings(kind="dask", dask_address="10.0.0.5:8786").dask_address == "tcp://10.0.0.5:8786"
    with pytest.raises(ValidationError) as err:
        TaskRunnerSettings(kind="dask", dask_address="http://scheduler")
    assert "dask_address" in str(err.value)


def test_dask_runner_is_a_local_cluster_or_the_given_address() -> None:
    local = build_dask_runner(TaskRunnerSettings(kind="dask", dask_workers=3))
    assert local.cluster_kwargs["n_workers"] == 3 and local.address is None
    remote = build_dask_runner(TaskRunnerSettings(kind="dask", dask_address="tcp://10.0.0.5:8786"))
    assert remote.address == "tcp://10.0.0.5:8786"


def test_iter_batches_hands_each_result_over_before_the_next_batch_runs() -> None:
    """So a flow can update its progress between batches."""
    calls: list[int] = []

    def work(n: int) -> int:
        calls.append(n)
        return n * 10

    results = iter_batches(work, [(1,), (2,), (3,)], submit=False)
    assert calls == []
    assert next(results) == 10 and calls == [1]
    assert next(results) == 20 and calls == [1, 2]
    assert list(results) == [30]


def test_run_batches_in_process_keeps_order() -> None:
    calls: list[int] = []

    def work(n: int) -> int:
        calls.append(n)
        return n * n

    assert run_batches(work, [(3,), (1,), (2,)], submit=False) == [9, 1, 4]
    assert calls == [3, 1, 2]


def test_a_dask_address_without_kind_dask_is_refused_not_ignored() -> None:
    with pytest.raises(ValidationError, match="set kind: dask"):
        TaskRunnerSettings(dask_address="tcp://127.0.0.1:8786")
    assert TaskRunnerSettings(kind="dask", dask_address="127.0.0.1:8786").dask_address == "tcp://127.0.0.1:8786"
