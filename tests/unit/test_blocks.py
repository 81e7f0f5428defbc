import json

import httpx
import pytest
from prefect_aws import AwsCredentials
from pydantic import SecretStr, ValidationError

from blocks import LLMEndpoint, SessionStore, StorageTarget

SECRET = "sEcReT-value-that-must-never-show"


def test_memory_target_round_trips_bytes() -> None:
    target = StorageTarget(url="memory://llmr-unit/prefix")
    fs = target.filesystem()
    fs.pipe_file(target.path("a/b.bin"), b"payload")
    assert fs.cat_file(target.path("a/b.bin")) == b"payload"
    assert target.protocol == "memory"


def test_s3_target_maps_endpoint_region_and_keys() -> None:
    target = StorageTarget(
        url="s3://bucket/prefix", endpoint_url="http://127.0.0.1:9", region_name="eu-west-1",
        access_key_id="AKID", secret_access_key=SecretStr(SECRET),
    )
    opts = target.storage_options()
    assert opts["key"] == "AKID" and opts["secret"] == SECRET
    assert opts["client_kwargs"] == {"endpoint_url": "http://127.0.0.1:9", "region_name": "eu-west-1"}
    assert target.root == "bucket/prefix"
    assert target.path("x", "y.txt") == "bucket/prefix/x/y.txt"


def test_s3_target_can_take_a_prefect_aws_credentials_block() -> None:
    creds = AwsCredentials(
        aws_access_key_id="AKID2", aws_secret_access_key=SECRET, region_name="us-west-2",
        aws_client_parameters={"endpoint_url": "http://127.0.0.1:10"},
    )
    opts = StorageTarget(url="s3://b", aws_credentials=creds).storage_options()
    assert opts["key"] == "AKID2" and opts["secret"] == SECRET
    assert opts["client_kwargs"] == {"region_name": "us-west-2", "endpoint_url": "http://127.0.0.1:10"}


def test_secrets_do_not_show_in_repr_str_or_json() -> None:
    target = StorageTarget(url="s3://b", access_key_id="AKID", secret_access_key=SecretStr(SECRET))
    endpoint = LLMEndpoint(base_url="http://127.0.0.1:1/v1", model="m", api_key=SecretStr(SECRET))
    store = SessionStore(url="redis://127.0.0.1:1/0", password=SecretStr(SECRET))
    for block in (target, endpoint, store):
        assert SECRET not in repr(block)
        assert SECRET not in str(block)
        assert SECRET not in block.model_dump_json()
        assert SECRET not in json.dumps(block.model_dump(mode="json"))


@pytest.mark.parametrize(
    ("url", "fragment"),
    [("nosuchproto://x", "unknown fsspec protocol"), ("s3://", "needs a bucket"), ("s3:///prefix", "needs a bucket"),
     ("s3:/llm-models/prod", "not a URL"), ("bucket-without-scheme", "not a URL"), ("", "not a URL"),
     ("file://", "absolute path"), ("file://relative/dir", "absolute path")],
)
def test_bad_storage_url_is_named(url: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as err:
        StorageTarget(url=url)
    assert "url" in str(err.value) and fragment in str(err.value)


def test_good_storage_urls_are_accepted() -> None:
    for url in ("s3://bucket/prefix", "s3://bucket", "file:///srv/data", "/srv/data", "memory://root"):
        assert StorageTarget(url=url).url == url


@pytest.mark.parametrize("part", ["../escape", "/absolute", "a/../../b"])
def test_paths_cannot_leave_the_root(part: str) -> None:
    with pytest.raises(ValueError, match="would leave the target root"):
        StorageTarget(url="memory://root").path(part)


def test_llm_endpoint_client_carries_key_base_url_and_timeouts() -> None:
    endpoint = LLMEndpoint(
        base_url="http://127.0.0.1:5/v1/", model="m", api_key=SecretStr(SECRET), connect_timeout_s=1.5, read_timeout_s=9
    )
    seen: dict[str, str] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["url"] = str(request.url)
        seen["auth"] = request.headers["authorization"]
        return httpx.Response(200, json={"data": []})

    with endpoint.client() as client:
        assert client.timeout.connect == 1.5 and client.timeout.read == 9
        client._transport = httpx.MockTransport(handler)
        client.get("models")
    assert seen == {"url": "http://127.0.0.1:5/v1/models", "auth": f"Bearer {SECRET}"}


def test_llm_endpoint_refuses_a_non_http_url() -> None:
    with pytest.raises(ValidationError) as err:
        LLMEndpoint(base_url="ftp://host/v1", model="m")
    assert "base_url" in str(err.value)


@pytest.mark.parametrize("url", [
    f"redis://user:{SECRET}@127.0.0.1:6379/0",
    f"redis://127.0.0.1:6379/0?password={SECRET}",  # redis-py takes this too
    f"rediss://127.0.0.1:6379/0?ssl_cert_reqs=none&Password={SECRET}",
])
def test_session_store_refuses_a_password_inside_the_url(url: str) -> None:
    with pytest.raises(ValidationError) as err:
        SessionStore(url=url)
    assert "password field" in str(err.value)
    assert SECRET not in str(err.value)
    assert SessionStore(url="redis://127.0.0.1:6379/0?socket_keepalive=true").url.endswith("keepalive=true")


@pytest.mark.parametrize(("url", "named"), [
    ("redis://127.0.0.1:99999/0", "Port out of range"),
    ("redis://127.0.0.1:port/0", "Port could not be cast"),
    ("redis://127.0.0.1:0/0", "port 0"),
    ("redis://:6379/0", "names no host"),
    ("redis://127.0.0.1:6379/sessions", "database 'sessions' is not a number"),
])
def test_session_store_refuses_a_url_redis_would_only_reject_on_connect(url: str, named: str) -> None:
    with pytest.raises(ValidationError, match=named) as err:
        SessionStore(url=url)
    assert "url" in str(err.value)
    assert SessionStore(url="rediss://redis.internal:6380/12").url == "rediss://redis.internal:6380/12"
    assert SessionStore(url="redis://127.0.0.1").url == "redis://127.0.0.1"


@pytest.mark.parametrize("key", ["", "   ", "\n"])
def test_llm_endpoint_blank_key_sends_no_authorization(key: str) -> None:
    endpoint = LLMEndpoint(base_url="http://127.0.0.1:5/v1", model="m", api_key=SecretStr(key))
    assert endpoint.api_key is None
    with endpoint.client() as client:
        assert "authorization" not in client.headers


def test_llm_endpoint_key_pasted_with_a_newline_is_trimmed() -> None:
    endpoint = LLMEndpoint(base_url="http://127.0.0.1:5/v1", model="m", api_key=SecretStr(f" {SECRET}\n"))
    with endpoint.client() as client:
        assert client.headers["authorization"] == f"Bearer {SECRET}"


def test_session_store_client_uses_the_secret_password() -> None:
    client = SessionStore(url="redis://127.0.0.1:1/3", password=SecretStr(SECRET), socket_timeout_s=0.5).client()
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["password"] == SECRET and kwargs["db"] == 3 and kwargs["socket_timeout"] == 0.5


@pytest.mark.parametrize(("block", "kwargs", "named"), [
    (StorageTarget, {"url": "s3://b", "endpoint_url": "localhost:9000"}, "endpoint_url 'localhost:9000'"),
    (LLMEndpoint, {"base_url": "http://127.0.0.1:8100/v1/chat/completions", "model": "m"}, "names an operation"),
    (LLMEndpoint, {"base_url": "http://127.0.0.1:8100/v1", "model": ""}, "model"),
])
def test_endpoint_values_that_would_fail_later_are_refused_by_field(block, kwargs: dict, named: str) -> None:  # noqa: ANN001
    with pytest.raises(ValidationError, match=named):
        block(**kwargs)
