"""The project's exception hierarchy: catch ``LLMResilienceError`` for anything it raises on
purpose, ``NonRetryableError`` for what retrying cannot fix. Every class below is public; a
unit test keeps this tree equal to the code.

    LLMResilienceError
    ├── NonRetryableError                bad input, auth, missing configuration: retrying cannot help
    │   ├── ConfigurationError           a block, setting or parameter is wrong (names which one)
    │   │   ├── SuiteError               tasks.prompt_suite: a prompt test suite file is invalid
    │   │   └── PromptNotFound           tasks.prompt_registry: no such prompt, version or label
    │   ├── LabelConflict                tasks.prompt_registry: a label moved under a concurrent writer
    │   ├── DeleteGuardTripped           tasks.replication_plan: a run would delete too much
    │   ├── UnsupportedEncryption        tasks.opaque_etags: SSE-KMS / SSE-C, ETags are not MD5s
    │   ├── RepositoryError              tasks.backup_errors: missing, unreadable or of an unknown format
    │   ├── SnapshotNotFound             tasks.backup_errors
    │   ├── CorruptObject                tasks.backup_errors: a pack or index does not verify
    │   ├── UnsafePath                   tasks.backup_errors: a restore would escape its target
    │   ├── RepositoryLocked             tasks.backup_errors: another backup or prune holds the lock
    │   ├── LockLost                     tasks.backup_errors: the lease lapsed while work went on
    │   ├── DrillThresholdExceeded       tasks.backup_errors: a restore drill missed its RTO/RPO
    │   ├── DrillFailed                  flows.failover_drill: a failover drill missed its SLOs
    │   ├── FaultStillActiveError        tasks.drill_runner: a target still carries a fault (until its lease ends)
    │   └── DrillOverlapError            tasks.drill_lock: another drill holds one of this drill's targets
    ├── ProbeFailed                      tasks.errors: one probe attempt failed; the probe may try again
    ├── ReplicationIncomplete            flows.replication: objects failed or deletes were blocked (.report)
    ├── ReplicatedPutIncomplete          tasks.sync_replication: a region lacks the object (.missing)
    ├── BackupVerificationFailed         flows.backup: verify_backup found problems (.result)
    ├── CheckpointVerificationFailed     flows.checkpoint_verification: findings (.report)
    ├── RepositoryUnreachable            tasks.backup_errors: the repository's store did not answer
    ├── RegistryUnavailable              tasks.prompt_registry: unreachable, and no cached copy to serve
    ├── SessionTopologyError             tasks.session_topology: the stores did not take the asked-for roles in time
    ├── FailoverAborted                  tasks.regional_failover: probes degraded mid-step; traffic moved back
    ├── DrillInterrupted                 tasks.drill_runner: the drill was asked to stop (a cancellation)
    └── GatewayRuntimeError              deployments.stack.haproxy_runtime: HAProxy's admin socket refused or is unreachable

The local stack's launcher has its own: ``deployments.stack.errors.StackError`` and subclasses.
"""

from __future__ import annotations


class LLMResilienceError(Exception):
    """Base of every error the project raises on purpose."""


class NonRetryableError(LLMResilienceError):
    """Prefect task retries skip these (see tasks.retry_policy.retry_unless_non_retryable)."""


class ConfigurationError(NonRetryableError):
    """A block, setting or parameter is missing or wrong; the message names it."""


class ProbeFailed(LLMResilienceError):
    """A single health-probe attempt failed; ``detail`` says what was seen."""
