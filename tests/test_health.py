"""`/healthz` and `/readyz`: ready means the database answers *and* is at the newest migration."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command

from app import create_app
from app.store.schema import alembic_config, head_revisions
from tests.support import ADMIN_URL, make_settings, postgres_unavailable_reason


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of each kind that no migration ever touched."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/never-migrated.sqlite3"
        return
    reason = postgres_unavailable_reason()
    if reason:
        pytest.skip(reason)
    name = f"jsms_unmigrated_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def readyz(database_url: str) -> tuple[int, dict[str, object]]:
    app = create_app(make_settings(database_url))
    try:
        response = app.test_client().get("/readyz")
        return response.status_code, response.get_json()
    finally:
        app.extensions["database"].engine.dispose()


def test_a_database_never_migrated_is_not_ready_and_the_log_says_why(
    empty_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="app.ops.health"):
        status, body = readyz(empty_database_url)
    head = ", ".join(sorted(head_revisions()))
    assert status == 503
    assert body["error"] == {  # type: ignore[comparison-overlap]
        "code": "database_not_migrated",
        "message": f"the database schema is at nothing, head is {head}: run jsms migrate",
    }
    assert [r.getMessage() for r in caplog.records] == [
        f"not ready: the database schema is at nothing, head is {head}: run jsms migrate"
    ]


def test_a_database_behind_the_newest_migration_is_not_ready(empty_database_url: str) -> None:
    command.upgrade(alembic_config(empty_database_url), "0003")
    status, body = readyz(empty_database_url)
    assert status == 503
    assert "at 0003, head is" in body["error"]["message"]  # type: ignore[index]
    command.upgrade(alembic_config(empty_database_url), "head")
    assert readyz(empty_database_url) == (200, {"status": "ok", "database": "ok"})


def test_an_unreachable_database_is_not_ready(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="app.ops.health"):
        status, body = readyz("postgresql://postgres@127.0.0.1:1/nowhere")
    assert status == 503 and body["error"]["code"] == "database_unavailable"  # type: ignore[index]
    assert "not ready: the database is unreachable (OperationalError)" in caplog.messages


def test_healthz_does_not_touch_the_database() -> None:
    app = create_app(make_settings("postgresql://postgres@127.0.0.1:1/nowhere"))
    assert app.test_client().get("/healthz").get_json() == {"status": "ok"}
