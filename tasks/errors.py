"""The project's exception hierarchy.

    LLMResilienceError
    ├── NonRetryableError        bad input, auth, missing configuration: retrying cannot help
    │   └── ConfigurationError   a block, setting or parameter is wrong (names which one)
    └── ProbeFailed              one probe attempt failed; the probe may try again
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
