"""Errors of the backup pipeline; each names the object it is about (see tasks.errors)."""

from __future__ import annotations

from tasks.errors import LLMResilienceError, NonRetryableError


class RepositoryError(NonRetryableError):
    """The repository (or one of its objects) is missing, unreadable or of an unknown format."""


class RepositoryUnreachable(LLMResilienceError):
    """The repository's store could not be reached (network, endpoint down); retrying may help."""


class SnapshotNotFound(NonRetryableError):
    """No snapshot matches the id (or the repository holds no snapshot for `latest`)."""


class CorruptObject(NonRetryableError):
    """An object's bytes do not match its recorded hash, or it does not parse."""


class UnsafePath(NonRetryableError):
    """A manifest path would escape the restore target (absolute, `..`, link ...)."""


class RepositoryLocked(NonRetryableError):
    """Another run holds a lock that conflicts with this one (prune vs backup)."""


class LockLost(NonRetryableError):
    """This run's lease on the repository lapsed (or its lock was removed): a prune or backup may
    have run meanwhile, so nothing it did under the lease is trusted and it writes nothing more."""


class DrillThresholdExceeded(NonRetryableError):
    """A restore drill measured an RTO or RPO above its threshold."""
