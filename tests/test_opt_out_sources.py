"""Opt-outs from every way replies arrive: pulled ones, those stored before the feature (read
once by migration 0011), and stored ones read again by `jsms reprocess`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from flask.testing import FlaskClient
from sqlalchemy import insert

from app import create_app
from app.jsms.keywords import DEFAULT_KEYWORDS
from app.store import opt_outs
from app.store.db import make_engine
from app.store.models import OptOutChange, Reply
from app.store.schema import alembic_config, upgrade_to_head
from tests.fake_jsms import FakeJsms
from tests.support import FAKE_WINDOW, make_settings, row_count

from .api_data import get
from .test_opt_outs import PHONE, lookup, reply, send


def test_a_pulled_reply_opts_out(fake_jsms: FakeJsms, database_url: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    fake_jsms.add(
        "app-one",
        "reply",
        [reply("hi", now - timedelta(minutes=2)), reply("ＴＤ", now - timedelta(minutes=1))],
    )
    settings = make_settings(
        database_url, jsms_api_base_url=fake_jsms.url, jsms_rate_limit_seconds=FAKE_WINDOW
    )
    app = create_app(settings)
    result = app.test_cli_runner().invoke(args=["jsms", "sync", "--app-key", "app-one"])
    assert result.exit_code == 0, result.output
    client = app.test_client()
    state = lookup(client)
    assert (state["opted_out"], state["keyword"], state["source"]) == (True, "TD", "pull")
    assert state["since"] == (now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    assert lookup(client, app_key="app-two")["opted_out"] is False
    app.extensions["database"].engine.dispose()


def _reply_row(app_key: str, phone: str, content: str, at: datetime, n: int) -> dict[str, object]:
    return {
        "app_key": app_key,
        "phone": phone,
        "content": content,
        "replied_at": at,
        "source": "pull" if n % 2 else "callback",
        "ingested_at": at,
        "raw_event_id": None,
        "dedup_key": f"key-{n}",
        "extra": None,
    }


def test_the_migration_reads_the_replies_stored_before_it(database_url: str) -> None:
    t1 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    t2 = t1 + timedelta(hours=1)
    rows = [
        _reply_row("app-one", PHONE, "START", t2, 0),  # stored first, yet newer than the TD
        _reply_row("app-one", PHONE, " td ", t1, 1),
        _reply_row("app-two", PHONE, "ｕｎｓｕｂｓｃｒｉｂｅ", t1, 2),
        _reply_row("app-two", "13800000002", "hello TD friend", t1, 3),
        _reply_row("app-two", "13800000003", "退订", t2, 4),
    ]
    engine = make_engine(database_url)
    try:
        command.downgrade(alembic_config(database_url), "0010")
        with engine.begin() as connection:
            connection.execute(insert(Reply.__table__), rows)
    finally:
        upgrade_to_head(database_url)
        engine.dispose()

    app = create_app(make_settings(database_url))
    client: FlaskClient = app.test_client()
    one = lookup(client, app_key="app-one")
    assert (one["opted_out"], one["keyword"], one["source"]) == (False, "START", "callback")
    two = lookup(client, app_key="app-two")
    assert (two["opted_out"], two["keyword"], two["since"]) == (
        True,
        "UNSUBSCRIBE",
        "2024-05-01T08:00:00Z",
    )
    assert lookup(client, "13800000002", "app-two")["opted_out"] is False
    assert row_count(database_url, OptOutChange) == 4
    listed = get(client, "/opt-outs").get_json()["items"]
    assert [(i["app_key"], i["phone"]) for i in listed] == [
        ("app-two", PHONE),
        ("app-two", "13800000003"),
    ]
    app.extensions["database"].engine.dispose()


def test_reprocess_reads_stored_replies_with_the_configured_keywords(database_url: str) -> None:
    app = create_app(make_settings(database_url))
    client = app.test_client()
    send(client, reply("QUIT"), reply("TD", phone="13800000002"))
    assert lookup(client)["opted_out"] is False
    app.extensions["database"].engine.dispose()

    quitting = make_settings(database_url, opt_out_keywords=("QUIT",), opt_in_keywords=())
    app = create_app(quitting)
    try:
        runner = app.test_cli_runner()
        first = runner.invoke(args=["jsms", "reprocess"])
        assert "read stored replies for opt-out keywords: 1 new changes" in first.output
        again = runner.invoke(args=["jsms", "reprocess"])
        assert "read stored replies for opt-out keywords: 0 new changes" in again.output
        client = app.test_client()
        assert lookup(client)["keyword"] == "QUIT"
        assert lookup(client, "13800000002")["opted_out"] is True  # followed when it came
        assert row_count(database_url, OptOutChange) == 2
    finally:
        app.extensions["database"].engine.dispose()
        opt_outs.use_keywords(DEFAULT_KEYWORDS)
