"""Server-side encryption under which an S3 ETag is not the MD5 of the object's bytes.

Replication verifies every copy by MD5 (DESIGN.md 4.2): the source's ETag checks what was read,
the destination's ETag checks what was written, and the planner compares ETags to skip objects
already in sync. S3 gives objects encrypted with SSE-KMS, DSSE-KMS or SSE-C ETags that are not
MD5s, so none of that can hold for them. Such buckets and objects are refused with an error that
says why, instead of failing verification (or being copied again) on every run.
"""

from __future__ import annotations

from typing import Any

from tasks.errors import NonRetryableError

__all__ = ["OPAQUE_ETAG_ALGORITHMS", "WHY", "UnsupportedEncryption", "bucket_default_opaque", "object_opaque", "refuse_opaque_object"]

# SSE-S3 ("AES256") keeps MD5 ETags; these do not.
OPAQUE_ETAG_ALGORITHMS = frozenset({"aws:kms", "aws:kms:dsse"})
WHY = "its ETags are not MD5s, so copies cannot be verified end to end; not supported yet"


class UnsupportedEncryption(NonRetryableError):
    """An object (or a bucket's default) uses encryption whose ETags are not MD5s."""


def bucket_default_opaque(configuration: dict[str, Any]) -> str | None:
    """The default-encryption algorithm of a GetBucketEncryption answer that makes new objects'
    ETags opaque, or None."""
    for rule in configuration.get("Rules") or []:
        algorithm = (rule.get("ApplyServerSideEncryptionByDefault") or {}).get("SSEAlgorithm")
        if algorithm in OPAQUE_ETAG_ALGORITHMS:
            return str(algorithm)
    return None


def object_opaque(response: dict[str, Any]) -> str | None:
    """The encryption named by a HEAD/GET/PUT/CreateMultipartUpload answer that makes the
    object's ETag opaque (``aws:kms``, ``aws:kms:dsse``, ``SSE-C``), or None."""
    algorithm = response.get("ServerSideEncryption")
    if algorithm in OPAQUE_ETAG_ALGORITHMS:
        return str(algorithm)
    if response.get("SSECustomerAlgorithm"):
        return "SSE-C"
    return None


def refuse_opaque_object(key: str, response: dict[str, Any], side: str) -> None:
    """Raise UnsupportedEncryption when ``response`` shows an opaque-ETag encryption."""
    algorithm = object_opaque(response)
    if algorithm:
        raise UnsupportedEncryption(f"{key}: encrypted with {algorithm} at the {side}; {WHY}")
