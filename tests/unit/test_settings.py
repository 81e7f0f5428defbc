from pathlib import Path

import pytest
from pydantic import ValidationError

from deployments.settings import PlatformSettings


@pytest.fixture(autouse=True)
def no_llmr_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("LLMR_"):
            monkeypatch.delenv(key)


def test_defaults_describe_two_regions_on_loopback(tmp_path: Path) -> None:
    s = PlatformSettings(state_dir=tmp_path)
    assert (s.region_a.name, s.region_b.name) == ("region-a", "region-b")
    assert s.prefect_api_url == "http://127.0.0.1:4200/api"
    assert s.prefect_env()["PREFECT_UI_API_URL"] == s.prefect_api_url
    assert s.prefect_env()["PREFECT_HOME"] == str(tmp_path / "prefect")
    assert s.gateway_url == "http://127.0.0.1:8100/v1"


def test_environment_variables_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLMR_PREFECT_PORT", "4300")
    monkeypatch.setenv("LLMR_REGION_B__LLM_PORT", "9912")
    monkeypatch.setenv("LLMR_STATE_DIR", str(tmp_path / "state"))
    s = PlatformSettings()
    assert s.prefect_port == 4300
    assert s.region_b.llm_port == 9912
    assert s.region_b.name == "region-b"  # untouched nested fields keep their defaults
    assert s.state_dir == (tmp_path / "state").resolve()


def test_non_numeric_port_names_the_field(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLMR_PREFECT_PORT", "forty-two")
    with pytest.raises(ValidationError) as err:
        PlatformSettings(state_dir=tmp_path)
    assert "prefect_port" in str(err.value)


def test_port_out_of_range_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        PlatformSettings(state_dir=tmp_path, gateway_port=70000)
    assert "gateway_port" in str(err.value)


def test_two_components_on_one_port_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        PlatformSettings(state_dir=tmp_path, gateway_port=4200)
    assert "prefect_port" in str(err.value) and "gateway_port" in str(err.value)


def test_state_dir_that_is_not_writable_names_the_field(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ValidationError) as err:
        PlatformSettings(state_dir=blocker / "state")
    assert "state_dir" in str(err.value) and "not writable" in str(err.value)


def test_non_loopback_host_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        PlatformSettings(state_dir=tmp_path, host="0.0.0.0")
    assert "host" in str(err.value) and "loopback" in str(err.value)


def test_unknown_setting_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        PlatformSettings(state_dir=tmp_path, prefect_prot=1)
    assert "prefect_prot" in str(err.value)


def test_effective_settings_round_trip_with_the_secret_and_private_mode(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from deployments.settings import load_effective_settings, save_effective_settings

    s = PlatformSettings(state_dir=tmp_path, prefect_port=4999, s3_secret_access_key=SecretStr("k3y"))
    path = save_effective_settings(s)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = load_effective_settings(tmp_path)
    assert loaded.prefect_port == 4999 and loaded.region_a == s.region_a
    assert loaded.s3_secret_access_key.get_secret_value() == "k3y"
    assert load_effective_settings(tmp_path / "never-started").prefect_port == 4200


def test_database_defaults_to_sqlite_and_postgresql_takes_a_port(tmp_path: Path) -> None:
    s = PlatformSettings(state_dir=tmp_path)
    assert s.database == "sqlite" and "postgres_port" not in s.port_fields()
    assert s.prefect_server_env()["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("sqlite+aiosqlite:///")
    pg = PlatformSettings(state_dir=tmp_path, database="postgresql", postgres_port=5999)
    assert pg.runs_postgres and pg.port_fields()["postgres_port"] == 5999
    assert "PREFECT_API_DATABASE_CONNECTION_URL" not in pg.prefect_env()  # only the server's env has it
    with pytest.raises(ValidationError) as err:
        PlatformSettings(state_dir=tmp_path, database="postgresql", postgres_port=8100)
    assert "postgres_port" in str(err.value) and "gateway_port" in str(err.value)


def test_database_url_gets_the_asyncpg_driver_and_bad_schemes_name_the_field(tmp_path: Path) -> None:
    s = PlatformSettings(state_dir=tmp_path, database="postgresql", database_url="postgresql://u:secret@db:5432/prefect")
    assert s.database_connection_url() == "postgresql+asyncpg://u:secret@db:5432/prefect"
    assert not s.runs_postgres and "u:secret" not in repr(s)
    with pytest.raises(ValidationError) as err:
        PlatformSettings(state_dir=tmp_path, database_url="mysql://u@db/prefect")
    assert "database_url" in str(err.value)


def test_unknown_database_names_the_field(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLMR_DATABASE", "oracle")
    with pytest.raises(ValidationError) as err:
        PlatformSettings(state_dir=tmp_path)
    assert "database" in str(err.value)


def test_model_servers_split_the_cores_so_their_threads_never_outnumber_them(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """llama.cpp's threads spin while they wait: two servers each using every core ran 3.5x slower."""
    from deployments.stack.components import build_components

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert PlatformSettings(state_dir=tmp_path).model_server_threads == 1
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    settings = PlatformSettings(state_dir=tmp_path)
    assert settings.model_server_threads == 8
    for llm in (c for c in build_components(settings) if c.name.startswith("llm-")):
        argv = " ".join(llm.argv)
        assert "--n_threads 8 " in argv and "--n_threads_batch 8 " in argv, argv
    assert PlatformSettings(state_dir=tmp_path, llm_threads=3).model_server_threads == 3
    with pytest.raises(ValidationError, match="llm_threads"):
        PlatformSettings(state_dir=tmp_path, llm_threads=0)
