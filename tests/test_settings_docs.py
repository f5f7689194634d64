"""Settings behave, and every setting and CLI command is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from textdesk.cli import app
from textdesk.settings import DEFAULT_SECRET_KEY, Settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"`(TEXTDESK_[A-Z0-9_]+)`", text))
    wanted = {f"TEXTDESK_{name.upper()}" for name in Settings.model_fields}
    assert not wanted - documented, f"document in docs/configuration.md: {wanted - documented}"


def test_every_cli_command_is_documented() -> None:
    text = (ROOT / "README.md").read_text() + (ROOT / "docs" / "architecture.md").read_text()
    group = typer.main.get_command(app)
    commands = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        if hasattr(command, "commands"):
            commands += [f"{name} {sub}" for sub in command.commands]
        else:
            commands.append(name)
    missing = [c for c in commands if f"textdesk {c}" not in text]
    assert not missing, f"document these commands: {missing}"


def test_production_refuses_the_placeholder_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXTDESK_ENV", "production")
    with pytest.raises(ValidationError, match="TEXTDESK_SECRET_KEY"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("TEXTDESK_SECRET_KEY", "a-real-secret-of-enough-length")
    assert Settings(_env_file=None).secret_key != DEFAULT_SECRET_KEY  # type: ignore[call-arg]


def test_secret_from_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("from-a-file-0123456789\n")
    monkeypatch.setenv("TEXTDESK_SECRET_KEY_FILE", str(secret))
    assert Settings(_env_file=None).secret_key == "from-a-file-0123456789"  # type: ignore[call-arg]
    monkeypatch.setenv("TEXTDESK_SECRET_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValidationError, match="cannot read"):
        Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("TEXTDESK_LOG_LEVEL", "loud", "unknown log level"),
        ("TEXTDESK_BASE_URL", "example.com", "http:// or https://"),
        ("TEXTDESK_PORT", "99999", "less than or equal"),
        ("TEXTDESK_LOG_FORMAT", "xml", "text"),
    ],
)
def test_bad_values_say_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, message: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError, match=message):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_cli_reports_bad_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    from textdesk.settings import get_settings

    get_settings.cache_clear()
    monkeypatch.setenv("TEXTDESK_LOG_LEVEL", "loud")
    result = CliRunner().invoke(app, ["migrate"])
    get_settings.cache_clear()
    assert result.exit_code == 2
    assert "unknown log level" in result.output


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("textdesk ")
