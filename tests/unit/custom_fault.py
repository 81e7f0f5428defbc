"""A user-defined fault, as a team would write one for their own infrastructure (test double)."""

from __future__ import annotations

from tasks.fault_injectors import Fault


class PodDelete(Fault):
    kind = "pod_delete"

    def __init__(self, settings, target: str, *, namespace: str) -> None:  # noqa: ANN001
        self.target, self.namespace, self.deleted = target, namespace, False

    def touches(self) -> list[str]:
        return [f"{self.namespace}/{self.target}"]

    def inject(self, lease_s: float) -> None:
        self.deleted = True

    def rollback(self) -> None:
        self.deleted = False

    def is_active(self) -> bool:
        return self.deleted
