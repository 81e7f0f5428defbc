"""S3 clients come from one boto3 session per process; what each caller sets stays its own."""

from concurrent.futures import ThreadPoolExecutor

from tasks import s3_location
from tasks.s3_location import S3Location

LOC = S3Location("unit", "bucket", "", "http://127.0.0.1:9", access_key_id="AKIDUNIT", secret_access_key="secret-unit")


def test_clients_share_one_session_but_keep_their_own_settings() -> None:
    first = LOC.client(max_pool_connections=7)
    other = S3Location("other", "b2", "", "http://127.0.0.1:10", region_name="eu-west-1", access_key_id="AKIDOTHER",
                       secret_access_key="secret-other").client(max_pool_connections=3)
    assert s3_location._session is not None  # created once, reused
    assert first.meta.endpoint_url == "http://127.0.0.1:9" and other.meta.endpoint_url == "http://127.0.0.1:10"
    assert first.meta.region_name == "us-east-1" and other.meta.region_name == "eu-west-1"
    assert first._request_signer._credentials.access_key == "AKIDUNIT"
    assert other._request_signer._credentials.access_key == "AKIDOTHER"
    assert (first.meta.config.max_pool_connections, other.meta.config.max_pool_connections) == (7, 3)


def test_an_observer_on_one_client_never_sees_another_clients_events() -> None:
    """Each client has its own copy of the session's event hooks, so a batch's retry observer
    (registered on its clients) never counts another batch's retries."""
    seen: list[str] = []
    watched = LOC.client(observer=lambda **_: None)
    plain = LOC.client()
    assert watched.meta.events is not plain.meta.events
    watched.meta.events.register("llmr-unit-probe", lambda **_: seen.append("watched"))
    plain.meta.events.emit("llmr-unit-probe")
    LOC.client().meta.events.emit("llmr-unit-probe")
    assert seen == []
    watched.meta.events.emit("llmr-unit-probe")
    assert seen == ["watched"]


def test_clients_can_be_created_from_many_threads_at_once() -> None:
    loc = S3Location("threads", "bucket", "", "http://127.0.0.1:11", access_key_id="AKIDTHREADS", secret_access_key="s")
    with ThreadPoolExecutor(8) as pool:
        clients = list(pool.map(lambda _: loc.client(), range(32)))
    assert len({id(c) for c in clients}) == 1  # one shared client, however many threads asked at once
    assert clients[0].meta.endpoint_url == "http://127.0.0.1:11"


def test_a_client_is_shared_only_by_the_same_location_and_settings() -> None:
    shared = LOC.client(max_attempts=3, read_timeout=10)
    assert LOC.client(max_attempts=3, read_timeout=10) is shared
    assert LOC.client(max_attempts=3, read_timeout=11) is not shared
    assert LOC.client(max_attempts=4, read_timeout=10) is not shared
    rotated = S3Location("unit", "bucket", "", "http://127.0.0.1:9", access_key_id="AKIDUNIT", secret_access_key="rotated")
    assert rotated.client(max_attempts=3, read_timeout=10) is not shared  # new credentials, new client
    watched = LOC.client(max_attempts=3, read_timeout=10, observer=lambda **_: None)
    assert watched is not shared and watched is not LOC.client(max_attempts=3, read_timeout=10, observer=lambda **_: None)


def test_the_shared_clients_are_bounded() -> None:
    first = S3Location("lru", "bucket", "", "http://127.0.0.1:12", access_key_id="AKIDLRU", secret_access_key="s").client()
    for n in range(s3_location.CLIENT_CACHE_SIZE):
        S3Location("lru", "bucket", "", f"http://127.0.0.1:{2000 + n}", access_key_id="AKIDLRU", secret_access_key="s").client()
    assert len(s3_location._clients) == s3_location.CLIENT_CACHE_SIZE
    again = S3Location("lru", "bucket", "", "http://127.0.0.1:12", access_key_id="AKIDLRU", secret_access_key="s").client()
    assert again is not first  # the least recently used was dropped


def test_presigned_listing_urls_are_signed_with_sigv4() -> None:
    """The listing fetches presigned URLs; botocore's default there is SigV2, which AWS refuses in
    every region opened since 2014."""
    url = LOC.client().generate_presigned_url("list_objects_v2", Params={"Bucket": "bucket", "MaxKeys": 1000}, ExpiresIn=60)
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url
    assert "AWSAccessKeyId=" not in url
