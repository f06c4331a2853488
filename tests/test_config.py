"""Settings from the environment, and the schema that migrations build."""

from __future__ import annotations

import pytest
from alembic import command
from pydantic import ValidationError

from app.config import Settings
from app.store.schema import alembic_config


def test_settings_parse_the_contracts_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JSMS_APPS", "k1:s1, k2:s2 ,")
    monkeypatch.setenv("API_TOKENS", "a, b,,")
    monkeypatch.setenv("JSMS_RATE_LIMIT_SECONDS", "0.5")
    settings = Settings(_env_file=None)
    assert settings.jsms_apps == {"k1": "s1", "k2": "s2"}
    assert settings.api_tokens == ("a", "b")
    assert settings.jsms_rate_limit_seconds == 0.5


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "JSMS_APPS", "API_TOKENS", "JSMS_API_BASE_URL", "PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)
    assert settings.jsms_apps == {} and settings.api_tokens == ()
    assert settings.jsms_api_base_url == "https://api.sms.jpush.cn"
    assert settings.port == 5000
    assert (
        settings.sqlalchemy_url("/srv/instance") == "sqlite:////srv/instance/jsms-receipts.sqlite3"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgresql://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_heroku_postgres_urls_work(url: str, expected: str) -> None:
    assert Settings(_env_file=None, database_url=url).sqlalchemy_url("/i") == expected


def test_malformed_apps_are_refused_without_echoing_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JSMS_APPS", "k1-without-secret")
    with pytest.raises(ValidationError, match="k1-without-secret"):
        Settings(_env_file=None)


@pytest.mark.parametrize(
    ("apps", "why"),
    [
        ("a:s1;b:s2", "JSMS_APPS entry 'a' holds ';': separate apps with ',' only"),
        ("a:s1 b:s2", "JSMS_APPS entry 'a' holds ' '"),
        ("a:s1|b:s2", "JSMS_APPS entry 'a' holds '|'"),
        ("a:s1:b:s2", "JSMS_APPS entry 'a' holds ':'"),
        ("a:s1,b:s2,a:s3", "JSMS_APPS names app key 'a' more than once"),
    ],
)
def test_apps_are_separated_by_commas_only_and_named_once(
    monkeypatch: pytest.MonkeyPatch, apps: str, why: str
) -> None:
    monkeypatch.setenv("JSMS_APPS", apps)
    with pytest.raises(ValidationError, match=why) as refused:
        Settings(_env_file=None)
    said = refused.value.errors()[0]["msg"]  # what load_settings prints
    assert "s1" not in said and "s2" not in said


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("nonsense", "not a database URL"),
        ("mysql://u@h/db", "'mysql' is not supported: use PostgreSQL or SQLite"),
        ("postgresql+psycopg2://u:pw@h/db", "driver 'psycopg2' is not installed"),
    ],
)
def test_an_unsupported_database_url_says_why_without_echoing_it(url: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why) as refused:
        Settings(_env_file=None, database_url=url)
    said = refused.value.errors()[0]["msg"]  # what load_settings prints
    assert "u@h" not in said and "pw" not in said


def test_migrations_match_the_models(database_url: str) -> None:
    """`alembic check` finds nothing to autogenerate: migrations and models agree."""
    command.check(alembic_config(database_url))


def test_migrate_command_is_idempotent(runner) -> None:  # type: ignore[no-untyped-def]
    for _ in range(2):
        result = runner.invoke(args=["jsms", "migrate"])
        assert result.exit_code == 0, result.output
        assert "at head" in result.output


def test_every_setting_is_in_env_example_and_the_readme_table() -> None:
    from tests.servers import ROOT

    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        variable = name.upper()
        assert f"\n{variable}=" in example or f"\n# {variable}=" in example, variable
        assert f"| `{variable}` |" in readme, variable


def test_an_empty_value_means_unset(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    for name in ("PORT", "PROMETHEUS_MULTIPROC_DIR", "GUNICORN_THREADS", "API_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=\nPROMETHEUS_MULTIPROC_DIR=\nGUNICORN_THREADS=\nAPI_TOKENS=\n")
    monkeypatch.setenv("WEB_CONCURRENCY", "")
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.port == 5000 and settings.prometheus_multiproc_dir is None
    assert (settings.web_concurrency, settings.gunicorn_threads) == (2, 16)
    assert settings.api_tokens == ()
