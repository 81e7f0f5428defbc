"""Where a flow's batches run: in the flow process (the default) or on a Dask cluster (prefect-dask).

A flow takes ``TaskRunnerSettings`` as a parameter (a form in the UI), checks it before any work
(``check_task_runner``: an unreachable scheduler is a ``ConfigurationError`` naming
``task_runner.dask_address``), and runs its per-batch tasks through ``run_batches`` inside
``use_task_runner``. With ``kind: dask`` and no address, a ``LocalCluster`` of ``dask_workers``
processes lives for the flow run; with an address, the batches go to that existing cluster:

    replicate(ReplicationParams(task_runner={"kind": "dask", "dask_address": "tcp://10.0.0.5:8786"}))

In Python, ``replicate.with_options(task_runner=DaskTaskRunner(...))`` works too, since every
batch is submitted to whichever runner the flow run holds.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Sequence
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from tasks.errors import ConfigurationError
from tasks.strict_input import StrictInput

R = TypeVar("R")
DASK_ADDRESS_SETTING = "task_runner.dask_address"


class TaskRunnerSettings(StrictInput):
    """The task runner a flow's batches use; the default keeps everything in the flow process."""

    kind: Literal["default", "dask"] = Field(
        default="default", description="default: the flow's own runner (in-process). dask: prefect-dask's DaskTaskRunner."
    )
    dask_address: str | None = Field(
        default=None, description="Scheduler of an existing Dask cluster (tcp://host:8786); empty: a LocalCluster per run."
    )
    dask_workers: int = Field(default=2, ge=1, le=64, description="LocalCluster worker processes (no address given).")
    dask_threads_per_worker: int = Field(default=1, ge=1, le=64, description="Threads in each LocalCluster worker.")

    @field_validator("dask_address")
    @classmethod
    def _scheduler_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value if "://" in value else f"tcp://{value}")
        if parts.scheme not in {"tcp", "tls"} or not parts.hostname or not parts.port:
            raise ValueError(f"{value!r} is not a Dask scheduler address (tcp://host:port)")
        return f"{parts.scheme}://{parts.hostname}:{parts.port}"

    @model_validator(mode="after")
    def _address_needs_dask(self) -> TaskRunnerSettings:
        if self.dask_address and self.kind != "dask":  # the run would stay in-process while you think it is on the cluster
            raise ValueError(f"dask_address {self.dask_address} is set but kind is {self.kind!r}: set kind: dask")
        return self


def check_task_runner(settings: TaskRunnerSettings, *, timeout_s: float = 5.0) -> None:
    """Before any work: the Dask scheduler the settings name answers, or a ConfigurationError naming it."""
    if settings.kind != "dask" or settings.dask_address is None:
        return
    parts = urlsplit(settings.dask_address)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigurationError(
            f"{DASK_ADDRESS_SETTING}: no Dask scheduler answers at {settings.dask_address} ({exc.__class__.__name__}: {exc}); "
            "nothing was done"
        ) from exc


def build_dask_runner(settings: TaskRunnerSettings):  # noqa: ANN201 - a DaskTaskRunner
    from prefect_dask import DaskTaskRunner

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": settings.dask_workers, "threads_per_worker": settings.dask_threads_per_worker,
            "processes": True, "dashboard_address": None, "host": "127.0.0.1",
        },
    )


@contextlib.contextmanager
def use_task_runner(settings: TaskRunnerSettings | None) -> Iterator[bool]:
    """Within the block, ``task.submit`` in this flow run goes to the chosen runner.

    Yields True when batches should be submitted (a non-default runner), False for the default.
    """
    from prefect.context import FlowRunContext

    if settings is None or settings.kind == "default":
        yield False
        return
    check_task_runner(settings)
    ctx = FlowRunContext.get()
    if ctx is None:
        raise RuntimeError("use_task_runner is for use inside a flow run")
    with build_dask_runner(settings) as runner, ctx.model_copy(update={"task_runner": runner}):
        yield True


def iter_batches(task: Any, arguments: Sequence[tuple[Any, ...]], *, submit: bool) -> Iterator[R]:
    """One task run per argument tuple; results in order, each as soon as it (and every one before
    it) has landed, so a flow can show progress while the rest run.

    ``submit=False`` calls them one after another in the flow process (the default behaviour);
    ``submit=True`` submits all to the flow run's task runner, so a Dask cluster runs them in parallel.
    """
    if not submit:
        for args in arguments:
            yield task(*args)
        return
    futures = [task.submit(*args) for args in arguments]
    for future in futures:
        yield future.result()


def run_batches(task: Any, arguments: Sequence[tuple[Any, ...]], *, submit: bool) -> list[R]:
    """``iter_batches``, all results at once."""
    return list(iter_batches(task, arguments, submit=submit))

