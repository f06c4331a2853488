"""Commits are durable whatever the server's defaults, a COMMIT the database refuses is a 503
whatever its SQLSTATE, a chunked body over 1 MiB is a 413, and a group's answers are what the
same callbacks would have got alone. On SQLite and PostgreSQL (the server settings on
PostgreSQL; the chunked body through a real gunicorn)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from app import create_app
from app.store.db import Database
from app.store.group import write_alone, write_group
from app.store.models import RawEvent
from app.store.schema import upgrade_to_head
from tests.postgres_cluster import OwnPostgres
from tests.servers import running_gunicorn, service_env
from tests.support import ADMIN_URL, APPS, make_settings, row_count, throwaway_postgres
from tests.test_faults import Senders, counts, own_postgres  # noqa: F401 (a fixture)
from tests.test_group_commit import pending
from tests.wire import report, signed_form

ONE, SECRET = "app-one", APPS["app-one"]


def test_commits_are_synchronous_even_where_the_database_says_otherwise() -> None:
    """`ALTER DATABASE … SET synchronous_commit = off` (a managed-PostgreSQL tuning) would let
    a callback answered 200 vanish in a crash: the service's connections pin it on."""
    from tests.support import postgres_unavailable_reason

    reason = postgres_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with throwaway_postgres(prefix="jsms_sync") as url:
        name = make_url(url).database
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(plain) as other:  # any other client gets the database's setting
            assert other.execute("SHOW synchronous_commit").fetchone() == ("off",)
        app = create_app(make_settings(url))
        clock = Database(url)  # the clock's and the CLI's connections, without web limits
        try:
            for engine in (app.extensions["database"].engine, clock.engine):
                with engine.connect() as connection:
                    assert connection.scalar(text("SHOW synchronous_commit")) == "on"
            form = signed_form(ONE, SECRET, "SMS_REPORT", [report("m1")])
            assert app.test_client().post("/callbacks/jsms", data=form).status_code == 200
        finally:
            app.extensions["database"].engine.dispose()
            clock.engine.dispose()


@pytest.fixture
def commit_refused(database: Database) -> Iterator[None]:
    """Every COMMIT of a transaction that wrote a raw event is refused with an error that does
    not mean "unavailable": on PostgreSQL a deferred constraint trigger raising P0001
    (raise_exception) at COMMIT; on SQLite the engine's commit event raising IntegrityError."""
    engine = database.engine
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text(
                "CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'refused at commit'; END $$"
            ))  # fmt: skip
            conn.execute(text(
                "CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON raw_events DEFERRABLE "
                "INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_commit()"
            ))  # fmt: skip
        try:
            yield
        finally:
            with engine.begin() as conn:
                conn.execute(text("DROP TRIGGER refuse_commit ON raw_events"))
                conn.execute(text("DROP FUNCTION refuse_commit()"))
        return

    def refuse(conn: object) -> None:
        raise IntegrityError("COMMIT", {}, Exception("refused at commit"))

    event.listen(engine, "commit", refuse)
    try:
        yield
    finally:
        event.remove(engine, "commit", refuse)


def test_a_commit_refused_with_any_sqlstate_is_503_and_the_retry_lands(
    client: FlaskClient, database: Database, commit_refused: None
) -> None:
    form = signed_form(ONE, SECRET, "SMS_REPORT", [report("m1")])
    refused = client.post("/callbacks/jsms", data=form)
    assert refused.status_code == 503
    assert refused.get_json()["error"]["code"] == "database_unavailable"
    assert row_count(database, RawEvent) == 0


def chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.slow
def test_a_chunked_body_over_one_mib_is_413_through_gunicorn(database_url: str) -> None:
    env = service_env(database_url, JSMS_APPS=",".join(f"{k}:{v}" for k, v in APPS.items()))
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    fits = signed_form(ONE, SECRET, "SMS_REPORT", [{"msgId": "x" * 1_000_000}])
    over = signed_form(ONE, SECRET, "SMS_REPORT", [{"msgId": "x" * 1_100_000}])
    with running_gunicorn(env, workers=1) as server, httpx.Client(base_url=server.url) as http:
        for form, status in ((fits, 200), (over, 413)):
            body = httpx.QueryParams(form).__str__().encode()
            answer = http.post("/callbacks/jsms", content=chunks(body), headers=headers)
            assert "content-length" not in {k.lower() for k in answer.request.headers}
            assert answer.status_code == status, answer.text
        assert http.get("/readyz").status_code == 200
    assert row_count(database_url, RawEvent) == 1  # the one that fit, never a cut one


VERSIONS = [
    report("m1", status=4002, receive_time=1575015093000),
    report("m1", status=4001, receive_time=1575015094000),
    report("m1", status=4003, receive_time=1575015095000),
]


@pytest.mark.parametrize("stored_before", [None, 0, 1, 2])
def test_a_groups_answers_are_the_answers_alone_in_arrival_order(
    store: Database, stored_before: int | None
) -> None:
    """Three versions of one report in one group, in every order, with none or one of them
    already stored: each counted exactly as it would have been alone."""
    for n, order in enumerate(itertools.permutations(range(3))):
        msg = f"m{n}-{stored_before}"
        versions = [{**v, "msgId": msg} for v in VERSIONS]
        if stored_before is not None:
            write_group(store, [pending(f"pre-{msg}", [versions[stored_before]])])
        grouped = write_group(store, [pending(f"g{msg}{k}", [versions[k]]) for k in order])
        alone_msg = f"{msg}-alone"
        alone_versions = [{**v, "msgId": alone_msg} for v in VERSIONS]
        if stored_before is not None:
            write_alone(store, pending(f"pre-{alone_msg}", [alone_versions[stored_before]]))
        alone = [write_alone(store, pending(f"a{msg}{k}", [alone_versions[k]])) for k in order]
        assert [o.as_json() for o in grouped] == [o.as_json() for o in alone], order  # type: ignore[union-attr]


def test_a_repeat_in_a_group_after_a_higher_version_is_stored_as_alone(store: Database) -> None:
    """v1, v3, v1 alone: the third meets v3 stored, so it is no identical repeat: stored."""
    v1, v3 = VERSIONS[0], VERSIONS[2]
    grouped = write_group(store, [pending("x", [v1]), pending("y", [v3]), pending("z", [v1])])
    assert [o.as_json()["stored"] for o in grouped] == [1, 1, 1]  # type: ignore[union-attr]


@pytest.mark.slow
def test_an_immediate_stop_under_load_loses_no_acknowledged_callback(
    own_postgres: OwnPostgres,  # noqa: F811 (the imported fixture)
) -> None:
    """With `synchronous_commit = off` set on the database, PostgreSQL stopped at once under
    load (no checkpoint, no WAL flush): every callback ever answered 200 is still stored."""
    upgrade_to_head(own_postgres.url)
    admin = make_url(own_postgres.url).set(drivername="postgresql")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute("ALTER DATABASE postgres SET synchronous_commit = off")
    env = service_env(own_postgres.url, JSMS_APPS=f"{ONE}:{SECRET}")
    with running_gunicorn(env, workers=2) as server:
        senders = Senders(server.url, count=400, pace=0).start()
        senders.wait_for_acks(100)
        own_postgres.crash()
        own_postgres.start()
        senders.join()
    assert all(d.acked for d in senders.deliveries)
    reports, raw, msg_ids = counts(own_postgres.url)
    # A report answered 200 and then lost would never be sent again: its msg_id would be missing.
    assert msg_ids == {d.msg_id for d in senders.deliveries} and reports == 400
    assert raw >= senders.answers().count(200)
