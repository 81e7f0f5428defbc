"""The reachability check: which answers refuse a target, and the prefix-scoped policy it lets through."""

from typing import Any

import pytest
from botocore.stub import Stubber

from tasks.errors import ConfigurationError
from tasks.s3_location import S3Location, check_reachable

LOC = S3Location("unit-reach", "bucket", "models/", "http://127.0.0.1:9", access_key_id="AKIDREACH", secret_access_key="s")


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> Any:
    client = LOC._new_client(1, 2, 1.0, 1.0)  # a private client: the shared ones stay unstubbed
    monkeypatch.setattr(S3Location, "client", lambda self, **_: client)
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def test_a_bucket_that_answers_head_is_reachable_with_one_request(stubbed: Stubber) -> None:
    stubbed.add_response("head_bucket", {}, {"Bucket": "bucket"})
    check_reachable(LOC)  # no listing: on some stores (moto) a listing scans the whole bucket


def test_a_policy_that_allows_listing_only_under_the_prefix_passes(stubbed: Stubber) -> None:
    stubbed.add_client_error("head_bucket", "403", http_status_code=403)
    stubbed.add_response("list_objects_v2", {"KeyCount": 0}, {"Bucket": "bucket", "Prefix": "models/", "MaxKeys": 1})
    check_reachable(LOC)


def test_credentials_refused_for_both_head_and_listing_name_the_target(stubbed: Stubber) -> None:
    stubbed.add_client_error("head_bucket", "403", http_status_code=403)
    stubbed.add_client_error("list_objects_v2", "InvalidAccessKeyId", http_status_code=403)
    with pytest.raises(ConfigurationError, match=r"storage-target/unit-reach: credentials refused .*InvalidAccessKeyId"):
        check_reachable(LOC)


def test_a_missing_bucket_is_named_without_a_listing(stubbed: Stubber) -> None:
    stubbed.add_client_error("head_bucket", "404", http_status_code=404)
    with pytest.raises(ConfigurationError, match=r"storage-target/unit-reach: bucket 'bucket' does not exist"):
        check_reachable(LOC)
