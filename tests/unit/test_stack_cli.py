from pathlib import Path

import pytest

from deployments.stack.cli import main


def test_invalid_setting_exits_2_and_names_the_field(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LLMR_PREFECT_PORT", "not-a-port")
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert "prefect_port" in err and "not-a-port" in err


def test_env_prints_prefect_exports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LLMR_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("LLMR_PREFECT_PORT", "4321")
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "export PREFECT_API_URL=http://127.0.0.1:4321/api" in out
    assert f"export PREFECT_HOME={tmp_path / 'prefect'}" in out


def test_status_of_a_stopped_platform_is_unhealthy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LLMR_STATE_DIR", str(tmp_path))
    assert main(["status"]) == 1
    out = capsys.readouterr().out
    assert "prefect-server" in out and "not running" in out
