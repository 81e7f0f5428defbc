"""Which encryption makes S3 ETags something other than MD5s: pure answers, no server."""

from __future__ import annotations

import pytest

from tasks.errors import NonRetryableError
from tasks.opaque_etags import UnsupportedEncryption, bucket_default_opaque, object_opaque, refuse_opaque_object


def rules(*algorithms: str) -> dict:
    return {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": a}} for a in algorithms]}


def test_bucket_defaults_with_kms_are_opaque_and_sse_s3_is_not() -> None:
    assert bucket_default_opaque(rules("aws:kms")) == "aws:kms"
    assert bucket_default_opaque(rules("aws:kms:dsse")) == "aws:kms:dsse"
    assert bucket_default_opaque(rules("AES256")) is None  # SSE-S3 keeps MD5 ETags
    assert bucket_default_opaque(rules("AES256", "aws:kms")) == "aws:kms"
    assert bucket_default_opaque({}) is None
    assert bucket_default_opaque({"Rules": [{"BucketKeyEnabled": True}]}) is None


def test_object_answers_name_kms_dsse_and_customer_keys() -> None:
    assert object_opaque({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "arn:..."}) == "aws:kms"
    assert object_opaque({"ServerSideEncryption": "aws:kms:dsse"}) == "aws:kms:dsse"
    assert object_opaque({"SSECustomerAlgorithm": "AES256", "SSECustomerKeyMD5": "x"}) == "SSE-C"
    assert object_opaque({"ServerSideEncryption": "AES256"}) is None
    assert object_opaque({"ETag": '"0123"'}) is None


def test_refusal_names_the_key_the_side_and_the_algorithm_and_is_not_retried() -> None:
    refuse_opaque_object("a/b.bin", {"ServerSideEncryption": "AES256"}, "source")  # passes
    with pytest.raises(UnsupportedEncryption, match=r"^a/b\.bin: encrypted with aws:kms at the destination; .*not MD5s") as info:
        refuse_opaque_object("a/b.bin", {"ServerSideEncryption": "aws:kms"}, "destination")
    assert isinstance(info.value, NonRetryableError)
