"""The callback endpoint, driven over HTTP (Flask's test client) on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select, text
from sqlalchemy.exc import OperationalError

from app.callbacks import URLENCODED
from app.store.db import Database
from app.store.models import DeliveryReport, RawEvent, Reply, ReviewResult
from tests.support import APPS, failing_statements, row_count
from tests.wire import report, signed_form

ONE, SECRET = "app-one", APPS["app-one"]


def post(client: FlaskClient, form: dict[str, str], app_key: str | None = None):  # type: ignore[no-untyped-def]
    url = "/callbacks/jsms" + (f"/{app_key}" if app_key else "")
    return client.post(url, data=form)


def stored_reports(database: Database) -> list[DeliveryReport]:
    with database.session() as session:
        return list(session.scalars(select(DeliveryReport).order_by(DeliveryReport.msg_id)))


def assert_error(response, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.data
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]


# --- URL check ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/callbacks/jsms", "/callbacks/jsms/app-one"])
def test_echostr_is_answered_verbatim_as_plain_text(client: FlaskClient, path: str) -> None:
    response = client.get(path, query_string={"echostr": "a1B2c3D4"})
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.data == b"a1B2c3D4"


def test_echostr_missing_is_400(client: FlaskClient) -> None:
    assert_error(client.get("/callbacks/jsms"), 400, "missing_echostr")


def test_echostr_for_unknown_app_is_404(client: FlaskClient) -> None:
    assert_error(client.get("/callbacks/jsms/nope?echostr=x"), 404, "unknown_app")


# --- signature ---------------------------------------------------------------------------------


def test_good_signature_stores_report(client: FlaskClient, database: Database) -> None:
    response = post(client, signed_form(ONE, SECRET, "SMS_REPORT", report("m1", status=4001)))
    assert response.status_code == 200
    assert response.get_json() == {"stored": 1, "duplicates": 0, "quarantined": 0}
    [row] = stored_reports(database)
    assert (row.app_key, row.msg_id, row.phone, row.status, row.delivered, row.source) == (
        ONE,
        "m1",
        "13800138000",
        4001,
        True,
        "callback",
    )
    assert row.received_at == datetime.fromtimestamp(1575015093, UTC)
    assert row.ingested_at.tzinfo is not None


def test_a_multipart_form_is_read_like_a_urlencoded_one(
    client: FlaskClient, database: Database
) -> None:
    form = signed_form(ONE, SECRET, "SMS_REPORT", report("m1"))
    response = client.post("/callbacks/jsms", data=form, content_type="multipart/form-data")
    assert response.get_json() == {"stored": 1, "duplicates": 0, "quarantined": 0}
    assert [row.msg_id for row in stored_reports(database)] == ["m1"]


def test_of_repeated_fields_the_first_counts(client: FlaskClient, database: Database) -> None:
    form = signed_form(ONE, SECRET, "SMS_REPORT", report("m1"))
    good, bad = form["signature"], "0" * 40
    for first, then, status in ((good, bad, 200), (bad, good, 401)):
        pairs = [*form.items(), ("signature", then)]
        pairs[list(form).index("signature")] = ("signature", first)
        body = urlencode(pairs)
        response = client.post("/callbacks/jsms", data=body, content_type=URLENCODED)
        assert response.status_code == status, response.data


def test_app_is_found_by_whose_secret_verifies(client: FlaskClient, database: Database) -> None:
    response = post(client, signed_form("app-two", APPS["app-two"], "SMS_REPORT", report("m1")))
    assert response.status_code == 200
    assert [r.app_key for r in stored_reports(database)] == ["app-two"]


def test_per_app_url_accepts_its_own_app(client: FlaskClient, database: Database) -> None:
    response = post(client, signed_form(ONE, SECRET, "SMS_REPORT", report("m1")), app_key=ONE)
    assert response.status_code == 200
    assert row_count(database, DeliveryReport) == 1


def test_per_app_url_refuses_another_apps_signature(
    client: FlaskClient, database: Database
) -> None:
    form = signed_form("app-two", APPS["app-two"], "SMS_REPORT", report("m1"))
    assert_error(post(client, form, app_key=ONE), 401, "bad_signature")
    assert row_count(database, RawEvent) == 0


def test_unknown_app_url_is_404(client: FlaskClient, database: Database) -> None:
    response = post(client, signed_form(ONE, SECRET, "SMS_REPORT", report("m1")), "zzz")
    assert_error(response, 404, "unknown_app")
    assert response.get_json()["error"]["message"] == "no JSMS app 'zzz' is configured here"
    long_key = "k" * 100  # named in the message, cut at 64 characters
    message = post(client, {}, long_key).get_json()["error"]["message"]
    assert message == f"no JSMS app {'k' * 64!r} is configured here"
    assert row_count(database, RawEvent) == 0


@pytest.mark.parametrize(
    "tamper",
    [
        {"signature": "0" * 40},
        {"signature": "not hex at all é"},
        {"nonce": "123"},  # signed with another nonce
        {"timestamp": "1"},
    ],
)
def test_wrong_signature_is_401_and_stores_nothing(
    client: FlaskClient, database: Database, tamper: dict[str, str]
) -> None:
    form = signed_form(ONE, SECRET, "SMS_REPORT", report("m1")) | tamper
    assert_error(post(client, form), 401, "bad_signature")
    assert row_count(database, RawEvent) == 0


def test_signature_with_wrong_secret_is_401(client: FlaskClient, database: Database) -> None:
    assert_error(
        post(client, signed_form(ONE, "guess", "SMS_REPORT", report("m1"))), 401, "bad_signature"
    )
    assert row_count(database, RawEvent) == 0


def test_missing_signature_is_401(client: FlaskClient, database: Database) -> None:
    form = signed_form(ONE, SECRET, "SMS_REPORT", report("m1"))
    del form["signature"]
    assert_error(post(client, form), 401, "missing_signature")
    assert row_count(database, RawEvent) == 0


# --- malformed input ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["nonce", "timestamp", "type", "data"])
@pytest.mark.parametrize("how", ["left out", "blank"])
def test_missing_field_is_400_and_stores_nothing(
    client: FlaskClient, database: Database, field: str, how: str
) -> None:
    form = signed_form(ONE, SECRET, "SMS_REPORT", report("m1"))
    if how == "blank":
        form[field] = ""
    else:
        del form[field]
    assert_error(post(client, form), 400, f"missing_{field}")
    assert row_count(database, RawEvent) == 0


def test_data_not_json_is_400_and_stores_nothing(client: FlaskClient, database: Database) -> None:
    form = signed_form(ONE, SECRET, "SMS_REPORT", "{not json")
    assert_error(post(client, form), 400, "invalid_data")
    assert row_count(database, RawEvent) == 0


def test_data_nested_too_deep_to_read_is_kept_whole(
    client: FlaskClient, database: Database
) -> None:
    """Signed, so kept: data deeper than the JSON reader goes is quarantined whole, unread."""
    form = signed_form(ONE, SECRET, "SMS_REPORT", "[" * 100_000)
    response = post(client, form)
    assert response.get_json() == {"stored": 0, "duplicates": 0, "quarantined": 1}
    assert row_count(database, RawEvent, RawEvent.payload == "[" * 100_000) == 1


def test_body_over_one_mib_is_413(client: FlaskClient, database: Database) -> None:
    form = signed_form(ONE, SECRET, "SMS_REPORT", [report(str(i)) for i in range(20000)])
    assert len(json.dumps(form)) > 1024 * 1024
    assert_error(post(client, form), 413, "request_entity_too_large")
    assert row_count(database, RawEvent) == 0


def test_wrong_method_is_json_405(client: FlaskClient) -> None:
    assert_error(client.put("/callbacks/jsms"), 405, "method_not_allowed")


def test_unknown_path_is_json_404(client: FlaskClient) -> None:
    assert_error(client.get("/nope"), 404, "not_found")


# --- records -----------------------------------------------------------------------------------


def test_list_data_stores_every_record(client: FlaskClient, database: Database) -> None:
    items = [report("m1"), report("m2", phone="13900000000", status=4004), report("m3")]
    response = post(client, signed_form(ONE, SECRET, "SMS_REPORT", items))
    assert response.get_json() == {"stored": 3, "duplicates": 0, "quarantined": 0}
    assert [(r.msg_id, r.delivered) for r in stored_reports(database)] == [
        ("m1", True),
        ("m2", False),
        ("m3", True),
    ]


@pytest.mark.parametrize(
    ("receive_time", "expected"),
    [
        (1575015093000, datetime(2019, 11, 29, 8, 11, 33, tzinfo=UTC)),  # epoch ms
        (1575015093, datetime(2019, 11, 29, 8, 11, 33, tzinfo=UTC)),  # epoch s
        ("1575015093000", datetime(2019, 11, 29, 8, 11, 33, tzinfo=UTC)),
        ("2019-11-29 16:11:33", datetime(2019, 11, 29, 8, 11, 33, tzinfo=UTC)),  # UTC+8
    ],
)
def test_time_formats_are_stored_as_utc(
    client: FlaskClient, database: Database, receive_time: object, expected: datetime
) -> None:
    post(client, signed_form(ONE, SECRET, "SMS_REPORT", report("m1", receive_time=receive_time)))
    assert stored_reports(database)[0].received_at == expected


def test_reply_is_stored_and_a_repeat_is_a_no_op(client: FlaskClient, database: Database) -> None:
    data = {
        "phone": "13800138000",
        "content": "退订 please",
        "replyTime": "2019-11-29 16:11:33",
        "msgId": "x9",
    }
    first = post(client, signed_form(ONE, SECRET, "SMS_REPLY", data))
    again = post(client, signed_form(ONE, SECRET, "SMS_REPLY", data))
    assert first.get_json() == {"stored": 1, "duplicates": 0, "quarantined": 0}
    assert again.get_json() == {"stored": 0, "duplicates": 1, "quarantined": 0}
    with database.session() as session:
        [reply] = session.scalars(select(Reply)).all()
    assert (reply.phone, reply.content, reply.source) == ("13800138000", "退订 please", "callback")
    assert reply.replied_at == datetime(2019, 11, 29, 8, 11, 33, tzinfo=UTC)
    assert json.loads(reply.extra or "{}") == {"msgId": "x9"}


@pytest.mark.parametrize(
    ("record_type", "data", "review_type", "subject"),
    [
        (
            "SMS_TEMPLATE",
            {"tempId": 1234, "status": 2, "refuseReason": "bad words"},
            "template",
            "1234",
        ),
        ("SMS_SIGN", {"signId": "77", "status": 1}, "sign", "77"),
    ],
)
def test_review_results_are_stored(
    client: FlaskClient,
    database: Database,
    record_type: str,
    data: dict,
    review_type: str,
    subject: str,
) -> None:
    assert post(client, signed_form(ONE, SECRET, record_type, data)).get_json()["stored"] == 1
    assert post(client, signed_form(ONE, SECRET, record_type, data)).get_json()["duplicates"] == 1
    with database.session() as session:
        [review] = session.scalars(select(ReviewResult)).all()
    assert (review.review_type, review.subject_id) == (review_type, subject)


def test_unknown_type_is_quarantined_with_200(
    client: FlaskClient, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    response = post(client, signed_form(ONE, SECRET, "SMS_SOMETHING_NEW", {"a": 1}))
    assert response.status_code == 200
    assert response.get_json() == {"stored": 0, "duplicates": 0, "quarantined": 1}
    [line] = [r for r in caplog.records if getattr(r, "event", None) == "callback"]
    assert line.__dict__["outcome"] == "quarantined"
    with database.session() as session:
        [raw] = session.scalars(select(RawEvent)).all()
    assert raw.type == "SMS_SOMETHING_NEW"
    assert json.loads(raw.payload) == {"a": 1}
    assert "unknown type" in (raw.quarantine_reason or "")


def test_bad_records_are_quarantined_and_good_ones_stored(
    client: FlaskClient, database: Database
) -> None:
    items = [
        report("ok"),
        {"msgId": "m2", "phone": "1", "status": "delivered", "receiveTime": 1},
        "not an object",
        {"msgId": "m4"},
    ]
    response = post(client, signed_form(ONE, SECRET, "SMS_REPORT", items))
    assert response.get_json() == {"stored": 1, "duplicates": 0, "quarantined": 3}
    with database.session() as session:
        [raw] = session.scalars(select(RawEvent)).all()
    reasons = (raw.quarantine_reason or "").splitlines()
    assert reasons[0].startswith("#1: status") and reasons[1].startswith("#2:")
    assert reasons[2].startswith("#3:")
    assert json.loads(raw.payload) == items


def test_unknown_status_code_is_stored_as_is(client: FlaskClient, database: Database) -> None:
    post(client, signed_form(ONE, SECRET, "SMS_REPORT", report("m1", status=4999)))
    assert [(r.status, r.delivered) for r in stored_reports(database)] == [(4999, False)]


def test_more_than_1000_items_are_kept_raw_and_quarantined_whole_unread(
    client: FlaskClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.jsms import records

    read: list[object] = []
    normalize = records._PARSERS["SMS_REPORT"]
    monkeypatch.setitem(
        records._PARSERS, "SMS_REPORT", lambda item, now: read.append(item) or normalize(item, now)
    )
    items = [report(f"m{i}") for i in range(1001)]
    response = post(client, signed_form(ONE, SECRET, "SMS_REPORT", items))
    assert response.status_code == 200
    assert response.get_json() == {"stored": 0, "duplicates": 0, "quarantined": 1001}
    assert read == []  # not one item was read
    with database.session() as session:
        [raw] = session.scalars(select(RawEvent)).all()
    assert json.loads(raw.payload) == items and (raw.records, raw.quarantined) == (1001, 1001)
    assert raw.quarantine_reason == "1001 items, more than 1000 in one payload: kept raw, unread"

    # 1,000 is still read, item by item
    response = post(client, signed_form(ONE, SECRET, "SMS_REPORT", items[:1000]))
    assert response.get_json() == {"stored": 1000, "duplicates": 0, "quarantined": 0}


def test_quarantine_reasons_keep_the_first_20(client: FlaskClient, database: Database) -> None:
    items = [{"msgId": f"m{i}"} for i in range(300)]
    response = post(client, signed_form(ONE, SECRET, "SMS_REPORT", items))
    assert response.get_json()["quarantined"] == 300
    with database.session() as session:
        [raw] = session.scalars(select(RawEvent)).all()
    lines = (raw.quarantine_reason or "").splitlines()
    assert lines[:2] == ["#0: phone is missing", "#1: phone is missing"]
    assert len(lines) == 21 and lines[-1] == "… and 280 more"


# --- duplicates and ordering ---------------------------------------------------------------------


def test_sequential_duplicates_collapse(client: FlaskClient, database: Database) -> None:
    for _ in range(3):
        post(client, signed_form(ONE, SECRET, "SMS_REPORT", [report("m1"), report("m2")]))
    assert row_count(database, DeliveryReport) == 2
    assert row_count(database, RawEvent) == 3  # every delivery is kept raw


def test_same_report_in_one_callback_is_stored_once(
    client: FlaskClient, database: Database
) -> None:
    response = post(client, signed_form(ONE, SECRET, "SMS_REPORT", [report("m1")] * 3))
    assert response.get_json() == {"stored": 1, "duplicates": 2, "quarantined": 0}


def test_same_msg_id_for_another_app_is_another_report(
    client: FlaskClient, database: Database
) -> None:
    post(client, signed_form(ONE, SECRET, "SMS_REPORT", report("m1")))
    post(client, signed_form("app-two", APPS["app-two"], "SMS_REPORT", report("m1")))
    assert row_count(database, DeliveryReport) == 2


def test_later_status_replaces_earlier_in_any_arrival_order(
    client: FlaskClient, database: Database
) -> None:
    early = report("m1", status=4003, receive_time=1_700_000_000_000)
    late = report("m1", status=4001, receive_time=1_700_000_060_000)
    post(client, signed_form(ONE, SECRET, "SMS_REPORT", late))
    response = post(client, signed_form(ONE, SECRET, "SMS_REPORT", early))  # arrives late
    # Not a repeat (so not a duplicate), but the newer row stays.
    assert response.get_json() == {"stored": 1, "duplicates": 0, "quarantined": 0}
    assert [(r.status, r.delivered) for r in stored_reports(database)] == [(4001, True)]

    later = report("m1", status=4100, receive_time=1_700_000_120_000)
    assert post(client, signed_form(ONE, SECRET, "SMS_REPORT", later)).get_json()["stored"] == 1
    assert [r.status for r in stored_reports(database)] == [4100]


def test_concurrent_duplicate_deliveries_store_once(app: Flask, database: Database) -> None:
    threads, rounds = 10, 5
    forms = [
        signed_form(ONE, SECRET, "SMS_REPORT", [report(f"m{i}") for i in range(20)])
        for _ in range(threads)
    ]
    barrier = threading.Barrier(threads)
    results: list[dict] = []
    lock = threading.Lock()

    def deliver(form: dict[str, str]) -> None:
        client = app.test_client()
        barrier.wait()
        for _ in range(rounds):
            response = post(client, form)
            with lock:
                results.append({"status": response.status_code, **(response.get_json() or {})})

    workers = [threading.Thread(target=deliver, args=(form,)) for form in forms]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [r["status"] for r in results] == [200] * threads * rounds
    assert sum(r["stored"] for r in results) == 20
    assert sum(r["duplicates"] for r in results) == 20 * (threads * rounds - 1)
    assert row_count(database, DeliveryReport) == 20
    assert row_count(database, RawEvent) == threads  # the repeats of one signed form are retries


# --- the database failing ----------------------------------------------------------------------


def test_database_unreachable_is_503(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    from app import create_app
    from tests.support import make_settings

    if database_url.startswith("sqlite"):
        broken = "sqlite:////proc/no-such-dir/jsms.sqlite3"  # cannot be created
    else:
        broken = "postgresql://postgres@127.0.0.1:1/nowhere"  # nothing listens on port 1
    client = create_app(make_settings(broken)).test_client()
    response = post(client, signed_form(ONE, SECRET, "SMS_REPORT", report("m1")))
    assert_error(response, 503, "database_unavailable")
    # The refusal cannot be counted either, and the log says why.
    assert "refused callback not counted: OperationalError" in [
        r.getMessage() for r in caplog.records if r.name == "app.callbacks"
    ]
    assert_error(client.get("/readyz"), 503, "database_unavailable")
    assert client.get("/healthz").status_code == 200


def test_failure_mid_transaction_is_503_and_leaves_nothing(
    client: FlaskClient, database: Database
) -> None:
    """The raw event is written first; a failure at the report upsert must take it back too."""
    with failing_statements(database.engine, "INSERT INTO delivery_reports"):
        response = post(client, signed_form(ONE, SECRET, "SMS_REPORT", report("m1")))
    assert_error(response, 503, "database_unavailable")
    assert row_count(database, RawEvent) == 0
    assert row_count(database, DeliveryReport) == 0
    # and the same callback, retried by JSMS, now lands
    assert post(client, signed_form(ONE, SECRET, "SMS_REPORT", report("m1"))).status_code == 200
    assert row_count(database, DeliveryReport) == 1


@contextmanager
def failing_commit(database: Database) -> Iterator[None]:
    """The next COMMIT fails, as a commit can when the database goes away at that moment.

    PostgreSQL: a deferred constraint trigger, created here, fails the COMMIT statement itself
    (SQLSTATE 40001) once; the trigger is dropped on the way out. SQLite: the engine's `commit`
    event raises before the DBAPI commit, once.
    """
    engine = database.engine
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("CREATE SEQUENCE fail_commit_once"))
            conn.execute(
                text(
                    "CREATE FUNCTION fail_commit_once() RETURNS trigger LANGUAGE plpgsql "
                    "AS $$ BEGIN IF nextval('fail_commit_once') = 1 THEN "
                    "RAISE EXCEPTION 'injected commit failure' USING ERRCODE = '40001'; "
                    "END IF; RETURN NULL; END $$"
                )
            )
            conn.execute(
                text(
                    "CREATE CONSTRAINT TRIGGER fail_commit_once AFTER INSERT ON raw_events "
                    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_commit_once()"
                )
            )
        try:
            yield
        finally:
            with engine.begin() as conn:
                conn.execute(text("DROP TRIGGER fail_commit_once ON raw_events"))
                conn.execute(text("DROP FUNCTION fail_commit_once()"))
                conn.execute(text("DROP SEQUENCE fail_commit_once"))
        return
    failures = [OperationalError("COMMIT", {}, Exception("injected commit failure"))]

    def fail_once(conn: object) -> None:
        if failures:
            raise failures.pop()

    event.listen(engine, "commit", fail_once)
    try:
        yield
    finally:
        event.remove(engine, "commit", fail_once)


def test_a_failed_commit_is_503_and_leaves_nothing_then_the_retry_lands(
    client: FlaskClient, database: Database
) -> None:
    """200 only after the commit: when the COMMIT itself fails, JSMS must hear 503 and retry."""
    form = signed_form(ONE, SECRET, "SMS_REPORT", report("m1"))
    with failing_commit(database):
        response = post(client, form)
        assert_error(response, 503, "database_unavailable")
        assert row_count(database, RawEvent) == row_count(database, DeliveryReport) == 0
        retried = post(client, form)  # JSMS retries the same delivery
    assert retried.status_code == 200, retried.get_data(as_text=True)
    assert retried.get_json()["stored"] == 1
    assert row_count(database, RawEvent) == row_count(database, DeliveryReport) == 1


def test_health_endpoints(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json()["database"] == "ok"


@pytest.mark.parametrize(
    ("content_type", "body", "got"),
    [
        ("application/json", b'{"nonce": "1", "signature": "x", "type": "SMS_REPORT"}',
         "application/json"),
        ("text/plain", b"nonce=1&timestamp=2&signature=x&type=SMS_REPORT&data=[]", "text/plain"),
        ("", b"nonce=1&timestamp=2", "a body without a Content-Type"),
        ("application/" + "x" * 80, b"{}", "application/" + "x" * 52),  # named, cut at 64
    ],
    ids=["json", "text", "none", "long"],
)  # fmt: skip
def test_a_body_that_is_not_form_encoded_is_400_saying_so(
    client: FlaskClient, database: Database, content_type: str, body: bytes, got: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/callbacks/jsms", data=body, headers=headers)
    assert_error(response, 400, "form_encoded_body_expected")
    assert response.get_json()["error"]["message"] == (
        "the callback body must be form-encoded (application/x-www-form-urlencoded) with the "
        f"fields nonce, timestamp, signature, type and data; got {got}"
    )
    assert row_count(database, RawEvent) == 0


def test_a_form_without_a_signature_is_still_401(client: FlaskClient) -> None:
    assert_error(client.post("/callbacks/jsms", data={"type": "x"}), 401, "missing_signature")
    assert_error(client.post("/callbacks/jsms"), 401, "missing_signature")  # no body at all
