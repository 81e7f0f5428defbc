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
    with ThreadPoolExecutor(8) as pool:
        clients = list(pool.map(lambda _: LOC.client(), range(32)))
    assert len({id(c) for c in clients}) == 32
    assert all(c.meta.endpoint_url == "http://127.0.0.1:9" for c in clients)
