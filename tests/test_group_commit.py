"""Group commit: callbacks a worker receives together share one transaction, and each is
answered as if it had come alone, only after that commit. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError

from app.errors import DatabaseUnavailable
from app.jsms.records import parse_payload
from app.store import replay
from app.store.db import Database
from app.store.group import GroupWriter, Pending, write_group
from app.store.ingest import RawPayload
from app.store.models import CallbackSignature, DeliveryReport, RawEvent, Source
from tests.jsms_callbacks import report, signed_form
from tests.support import APPS, row_count
from tests.test_callbacks import failing_commit

ONE, SECRET = "app-one", APPS["app-one"]


def pending(
    nonce: str, items: list[Any], *, timestamp: int = 1_700_000_000_000, data: str | None = None
) -> Pending:
    """A verified SMS_REPORT callback, as the view hands it to the writer."""
    data = json.dumps(items) if data is None else data
    use = replay.SignedUse(ONE, nonce, timestamp, replay.digest_of("SMS_REPORT", data))
    raw = RawPayload(ONE, Source.CALLBACK, "SMS_REPORT", data, nonce, timestamp)
    return Pending(use, raw, parse_payload("SMS_REPORT", json.loads(data)))


def answers(group: list[Pending]) -> list[Any]:
    return [p.result.as_json() if p.result else type(p.error).__name__ for p in group]


def test_each_callback_of_a_group_is_counted_as_if_it_came_alone(store: Database) -> None:
    later = report("m1", status=4001, receive_time=1575015094000)
    group = [
        pending("a", [report("m1"), report("m2")]),
        pending("b", [report("m2"), report("m3")]),  # m2: stored by "a" just before
        pending("a", [report("m1"), report("m2")]),  # JSMS retrying "a": every record a repeat
        pending("c", [later, report("m1")]),  # m1 again, and a later version of it
    ]
    outcomes = write_group(store, group)
    assert [o.as_json() for o in outcomes] == [  # type: ignore[union-attr]
        {"stored": 2, "duplicates": 0, "quarantined": 0},
        {"stored": 1, "duplicates": 1, "quarantined": 0},
        {"stored": 0, "duplicates": 2, "quarantined": 0},
        {"stored": 1, "duplicates": 1, "quarantined": 0},
    ]
    with store.session() as session:
        rows = {r.msg_id: r for r in session.scalars(select(DeliveryReport))}
        events = session.scalars(select(RawEvent).order_by(RawEvent.id)).all()
    assert sorted(rows) == ["m1", "m2", "m3"]
    assert rows["m1"].received_at.timestamp() == 1575015094  # the later version is kept
    # One raw event per callback stored (the retry has none), each with its own counts.
    assert [(e.nonce, e.stored, e.duplicates) for e in events] == [
        ("a", 2, 0), ("b", 1, 1), ("c", 1, 1),
    ]  # fmt: skip
    # Each row names the raw event that brought its version.
    assert rows["m3"].raw_event_id == events[1].id and rows["m1"].raw_event_id == events[2].id


def test_an_older_version_in_a_group_counts_as_it_would_alone(store: Database) -> None:
    """Alone, an older report than the stored one is not a repeat (stored: it was news, even if
    the row keeps the later one), and the stored version again is a duplicate. Together in one
    group, the same."""
    later = report("m9", receive_time=1575015094000)
    write_group(store, [pending("first", [later])])
    outcomes = write_group(store, [pending("older", [report("m9")]), pending("again", [later])])
    assert [o.as_json()["stored"] for o in outcomes] == [1, 0]  # type: ignore[union-attr]
    with store.session() as session:
        kept = session.scalars(select(DeliveryReport)).one()
    assert kept.received_at.timestamp() == 1575015094


def test_a_signature_reused_in_a_group_is_refused_and_its_neighbours_stored(
    store: Database,
) -> None:
    group = [pending("n", [report("m1")]), pending("n", [report("other")]), pending("x", [])]
    outcomes = write_group(store, group)
    assert isinstance(outcomes[1], replay.SignatureReused)
    assert row_count(store, CallbackSignature) == 2
    assert row_count(store, RawEvent) == 2 and row_count(store, DeliveryReport) == 1


@pytest.fixture
def refuse_poison(store: Database) -> Iterator[list[int]]:
    """The database refuses any statement carrying the msgId `poison` (a value it cannot
    take); yields how many statements it refused."""
    refused: list[int] = []

    def refuse(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        values = parameters.values() if isinstance(parameters, dict) else parameters
        if statement.startswith("INSERT INTO delivery_reports") and "poison" in values:
            refused.append(1)
            raise IntegrityError(statement, {}, Exception("value refused"))

    event.listen(store.engine, "before_cursor_execute", refuse)
    yield refused
    event.remove(store.engine, "before_cursor_execute", refuse)


def test_a_failing_group_is_written_again_callback_by_callback(
    store: Database, refuse_poison: list[int]
) -> None:
    group = [
        pending("a", [report("m1")]),
        pending("b", [report("poison"), report("m2")]),
        pending("c", [report("m3")]),
    ]
    GroupWriter(store)._write(group)
    assert refuse_poison, "the fault never hit the group"
    assert answers(group) == [
        {"stored": 1, "duplicates": 0, "quarantined": 0},
        {"stored": 0, "duplicates": 0, "quarantined": 2},  # kept raw: the store refused it
        {"stored": 1, "duplicates": 0, "quarantined": 0},
    ]
    with store.session() as session:
        assert sorted(session.scalars(select(DeliveryReport.msg_id))) == ["m1", "m3"]
        kept = session.scalars(select(RawEvent).where(RawEvent.nonce == "b")).one()
    assert json.loads(kept.payload)[0]["msgId"] == "poison"
    assert "could not be stored" in (kept.quarantine_reason or "")


def test_the_database_failing_at_commit_fails_the_whole_group_and_writes_nothing(
    store: Database,
) -> None:
    group = [pending(str(n), [report(f"m{n}")]) for n in range(3)]
    with failing_commit(store):
        GroupWriter(store)._write(group)
    assert all(isinstance(p.error, DatabaseUnavailable) for p in group), answers(group)
    assert len({id(p.error) for p in group}) == 3  # each request raises its own
    assert row_count(store, RawEvent) == row_count(store, DeliveryReport) == 0
    assert row_count(store, CallbackSignature) == 0
    GroupWriter(store)._write(retried := [pending(str(n), [report(f"m{n}")]) for n in range(3)])
    assert [a["stored"] for a in answers(retried)] == [1, 1, 1]


@pytest.fixture
def held_writer(database: Database) -> Iterator[tuple[threading.Event, threading.Event]]:
    """The first group's first statement waits until released: callbacks arriving meanwhile
    queue up behind it. Yields (entered, release)."""
    entered, release = threading.Event(), threading.Event()

    def hold(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if statement.startswith("INSERT INTO callback_signatures") and not entered.is_set():
            entered.set()
            release.wait(10)

    event.listen(database.engine, "before_cursor_execute", hold)
    try:
        yield entered, release
    finally:
        release.set()
        event.remove(database.engine, "before_cursor_execute", hold)


def test_callbacks_that_arrive_together_share_one_commit_and_each_is_answered_after_it(
    app: Flask, database: Database, held_writer: tuple[threading.Event, threading.Event]
) -> None:
    entered, release = held_writer
    commits: list[object] = []
    count_commit = commits.append
    event.listen(database.engine, "commit", count_commit)
    forms = [signed_form(ONE, SECRET, "SMS_REPORT", [report(f"m{n}")]) for n in range(6)]
    # The same record in two callbacks of one group: stored once, a duplicate for the other.
    forms.append(signed_form(ONE, SECRET, "SMS_REPORT", [report("m5")]))
    responses: dict[int, Any] = {}

    def post(n: int) -> None:
        responses[n] = app.test_client().post("/callbacks/jsms", data=forms[n])

    first = threading.Thread(target=post, args=(0,))
    first.start()
    assert entered.wait(10)
    writer: GroupWriter = app.extensions["group_writer"]
    others = [threading.Thread(target=post, args=(n,)) for n in range(1, len(forms))]
    for queued, thread in enumerate(others, start=1):
        thread.start()  # one at a time, so they queue in order (the duplicate after its original)
        deadline = time.monotonic() + 10
        while len(writer._waiting) < queued and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(writer._waiting) == queued
    assert not responses, "a callback was answered before its commit"
    release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert [responses[n].status_code for n in range(len(forms))] == [200] * len(forms)
    assert [responses[n].get_json()["stored"] for n in range(len(forms))] == [1] * 6 + [0]
    assert responses[6].get_json()["duplicates"] == 1
    event.remove(database.engine, "commit", count_commit)
    assert len(commits) == 2  # the first callback alone, then the six that queued behind it
    assert row_count(database, RawEvent) == 7 and row_count(database, DeliveryReport) == 6
