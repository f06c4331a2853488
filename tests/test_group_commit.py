"""Group commit: callbacks a worker receives together share one transaction, and each is
answered as if it had come alone, only after that commit. On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest
from flask import Flask
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError, OperationalError

from app.jsms.callback import SignatureReused, SignedUse, digest_of
from app.jsms.records import parse_payload
from app.store import group as group_module
from app.store import replay, upsert
from app.store.db import Database, DatabaseUnavailable
from app.store.group import Done, GroupWriter, Pending, write_group
from app.store.ingest import IngestResult, RawPayload, storable_text
from app.store.models import CallbackSignature, DeliveryReport, RawEvent, ReviewResult, Source
from tests.support import APPS, Fault, failing_statements, row_count
from tests.test_callbacks import failing_commit
from tests.wire import report, signed_form

ONE, SECRET = "app-one", APPS["app-one"]


def pending(
    nonce: str, items: list[Any], *, timestamp: int = 1_700_000_000_000, data: str | None = None
) -> Pending:
    """A verified SMS_REPORT callback, as the view hands it to the writer."""
    data = json.dumps(items) if data is None else data
    use = SignedUse(ONE, nonce, timestamp, digest_of("SMS_REPORT", data))
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
        # A later version of m1, then m1 again: alone, that repeat meets the later version
        # stored, so it is no identical repeat (stored, as `c` alone would count it).
        pending("c", [later, report("m1")]),
    ]
    outcomes = write_group(store, group)
    assert [o.as_json() for o in outcomes] == [  # type: ignore[union-attr]
        {"stored": 2, "duplicates": 0, "quarantined": 0},
        {"stored": 1, "duplicates": 1, "quarantined": 0},
        {"stored": 0, "duplicates": 2, "quarantined": 0},
        {"stored": 2, "duplicates": 0, "quarantined": 0},
    ]
    with store.session() as session:
        rows = {r.msg_id: r for r in session.scalars(select(DeliveryReport))}
        events = session.scalars(select(RawEvent).order_by(RawEvent.id)).all()
    assert sorted(rows) == ["m1", "m2", "m3"]
    assert rows["m1"].received_at.timestamp() == 1575015094  # the later version is kept
    # One raw event per callback stored (the retry has none), each with its own counts.
    assert [(e.nonce, e.stored, e.duplicates) for e in events] == [
        ("a", 2, 0), ("b", 1, 1), ("c", 2, 0),
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


def test_a_record_two_callbacks_carry_names_the_first_ones_raw_event(store: Database) -> None:
    same = report("m1")
    write_group(store, [pending("first", [same]), pending("second", [same])])
    with store.session() as session:
        events = {e.nonce: e.id for e in session.scalars(select(RawEvent))}
        (row,) = session.scalars(select(DeliveryReport)).all()
    assert row.raw_event_id == events["first"]


def test_dedup_keys_never_change_between_releases() -> None:
    """Stored replies and review results are found again by this key: changing how it is made
    would store every JSMS retry after an upgrade a second time."""
    assert (
        upsert._dedup_key("app", "13800138000", "é")
        == hashlib.sha256("app\x1f13800138000\x1fé".encode()).hexdigest()
    )


def test_a_signature_reused_in_a_group_is_kept_quarantined_and_its_neighbours_stored(
    store: Database,
) -> None:
    group = [pending("n", [report("m1")]), pending("n", [report("other")]), pending("x", [])]
    outcomes = write_group(store, group)
    assert [o.as_json() for o in outcomes] == [  # type: ignore[union-attr]
        {"stored": 1, "duplicates": 0, "quarantined": 0},
        {"stored": 0, "duplicates": 0, "quarantined": 1},
        {"stored": 0, "duplicates": 0, "quarantined": 0},
    ]
    assert not any(isinstance(o, SignatureReused) for o in outcomes)
    assert row_count(store, CallbackSignature) == 2
    assert row_count(store, RawEvent) == 3 and row_count(store, DeliveryReport) == 1
    assert row_count(store, RawEvent, RawEvent.suspect == "signature_reused") == 1


@pytest.fixture
def refuse_poison(store: Database) -> Iterator[Fault]:
    """The database refuses any statement carrying the msgId `poison` (a value it cannot
    take); yields how many statements it refused."""
    with failing_statements(
        store.engine, "INSERT INTO delivery_reports", IntegrityError, carrying="poison"
    ) as fault:
        yield fault


def test_a_failing_group_is_written_again_callback_by_callback(
    store: Database, refuse_poison: Fault
) -> None:
    group = [
        pending("a", [report("m1")]),
        pending("b", [report("poison"), report("m2")]),
        pending("c", [report("m3")]),
    ]
    writer = GroupWriter(store)
    writer._uncommitted_since = time.monotonic()
    writer._write(group)
    assert refuse_poison.hits, "the fault never hit the group"
    # Each stored alone, committed: the stall clock stops, and no failure is counted.
    assert writer._uncommitted_since is None and writer._failed_at == float("-inf")
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
    writer = GroupWriter(store)
    writer._uncommitted_since = since = time.monotonic()
    with failing_commit(store):
        writer._write(group)
    assert all(isinstance(p.error, DatabaseUnavailable) for p in group), answers(group)
    # Nothing committed: the stall clock runs on, and the failure counts as work (`stalled`).
    assert writer._uncommitted_since == since and writer._failed_at > float("-inf")
    assert len({id(p.error) for p in group}) == 3  # each request raises its own
    assert row_count(store, RawEvent) == row_count(store, DeliveryReport) == 0
    assert row_count(store, CallbackSignature) == 0
    writer._write(retried := [pending(str(n), [report(f"m{n}")]) for n in range(3)])
    assert [a["stored"] for a in answers(retried)] == [1, 1, 1]
    assert writer._uncommitted_since is None  # committed, nothing waiting: the clock stops


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


# --- the writer thread and what each waiting request gets ---------------------------------


def test_the_writer_thread_starts_with_work_and_ends_when_idle(
    store: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_module, "IDLE_SECONDS", 0.05)
    writer = GroupWriter(store)
    assert writer.store(*fields(pending("a", [report("m1")]))).stored == 1
    deadline = time.monotonic() + 10
    while writer._running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not writer._running, "an idle writer thread should end"
    assert writer.store(*fields(pending("b", [report("m2")]))).stored == 1  # and start again


def test_work_already_waiting_is_taken_at_once_not_after_the_idle_wait(
    store: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer waits for work only when there is none: with an idle wait far longer than a
    request's patience, callbacks still get their answers."""
    monkeypatch.setattr(group_module, "IDLE_SECONDS", 60.0)
    monkeypatch.setattr(group_module, "WAIT_SECONDS", 10.0)
    writer = GroupWriter(store)
    for n in range(3):
        assert writer.store(*fields(pending(str(n), [report(f"m{n}")]))).stored == 1
        assert writer.queued_bytes == 0  # taken by the writer: out of the queue's count


def test_a_writer_inherited_through_fork_starts_afresh(store: Database) -> None:
    """gunicorn forks workers: a writer made before the fork has no thread in the child, and
    whatever it thought was waiting is not this process's."""
    writer = GroupWriter(store)
    stale = pending("stale", [report("gone")])
    writer._pid, writer._running, writer._waiting = -1, True, [stale]
    assert writer.store(*fields(pending("a", [report("m1")]))).stored == 1
    assert not stale.done.is_set() and row_count(store, DeliveryReport) == 1
    assert writer.queued_bytes == 0  # the stale callback's bytes are not this process's


def test_the_queue_is_bounded_in_bytes_and_a_request_that_gave_up_takes_its_callback_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the queue takes, refuses (503 at once) and gives back, with no writer thread taking
    anything out (`_running` as if one were busy). One callback alone is always taken; the
    stall clock starts with the first callback queued."""
    small, big = pending("a", [report("m1")]), pending("b", [report("x" * 500)])
    monkeypatch.setattr(group_module, "MAX_QUEUED_BYTES", small.size + big.size)
    writer = GroupWriter(cast(Database, None))
    writer._running = True
    huge = pending("h", [report("y" * 2000)])
    writer._enqueue(huge)  # over the bound, but alone: taken
    assert writer.queued_bytes == huge.size and writer._uncommitted_since == huge.queued_at
    writer._drop(huge)
    assert writer._waiting == [] and writer.queued_bytes == 0
    writer._enqueue(small)
    writer._enqueue(big)  # exactly the bound
    assert writer._waiting == [small, big] and writer.queued_bytes == small.size + big.size
    with pytest.raises(DatabaseUnavailable) as full:
        writer._enqueue(pending("c", [report("m3")]))
    assert full.value.message == "callbacks are queued up behind a slow database; retry"
    assert writer._waiting == [small, big] and writer.queued_bytes == small.size + big.size
    monkeypatch.setattr(group_module, "WAIT_SECONDS", 0.01)
    idle = GroupWriter(cast(Database, None))
    idle._running = True
    with pytest.raises(DatabaseUnavailable):
        idle.store(*fields(pending("d", [report("m4")])))
    assert idle._waiting == [] and idle.queued_bytes == 0  # the request gave up: taken out


def test_a_request_whose_commit_never_comes_gets_503_not_a_hang(
    store: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_module, "WAIT_SECONDS", 0.2)
    release = threading.Event()
    monkeypatch.setattr(GroupWriter, "_write", lambda self, group: release.wait(10))
    try:
        with pytest.raises(DatabaseUnavailable) as stalled:
            GroupWriter(store).store(*fields(pending("a", [report("m1")])))
        assert stalled.value.message == "the database did not commit the callback in time"
    finally:
        release.set()


def test_the_writer_is_stalled_only_with_work_uncommitted_for_more_than_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What `/readyz` reads (`writer_stalled`): work uncommitted for more than WAIT_SECONDS, and
    still waiting or a group failed within WAIT_SECONDS. On a clock the test sets: no waiting."""
    now, wait = 1000.0, group_module.WAIT_SECONDS
    monkeypatch.setattr(group_module, "time", SimpleNamespace(monotonic=lambda: now))
    writer = GroupWriter(cast(Database, None))  # `stalled` reads no database
    assert not writer.stalled()  # a new writer
    waiting = [pending("a", [report("m1")])]

    def stalled(since: float | None, queued: list[Pending], failed_at: float) -> bool:
        writer._uncommitted_since, writer._waiting, writer._failed_at = since, queued, failed_at
        return writer.stalled()

    never = float("-inf")
    assert not stalled(None, [], never)  # everything committed
    assert not stalled(None, waiting, now)
    assert stalled(now - wait - 1, waiting, never)  # waiting for longer than the wait
    assert not stalled(now - wait, waiting, never)  # "more than" the wait
    assert not stalled(now - wait + 1, waiting, now)
    assert not stalled(now - wait - 1, [], never)  # nothing waiting, nothing failed lately
    assert stalled(now - wait - 1, [], now - 1)  # the last group failed just now
    assert not stalled(now - wait - 1, [], now - wait)


def test_a_commit_restarts_the_stall_clock_at_the_oldest_callback_still_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a commit, the callbacks still queued are what the stall clock times; after a
    failure it keeps running (and `stalled` counts the failure as work)."""
    now = 1000.0
    monkeypatch.setattr(group_module, "time", SimpleNamespace(monotonic=lambda: now))
    writer = GroupWriter(cast(Database, None))
    older, newer = pending("a", [report("m1")]), pending("b", [report("m2")])
    older.queued_at, newer.queued_at = now - 30, now - 10
    writer._uncommitted_since, writer._waiting = now - 60, [newer, older]
    writer._committed(True)
    assert writer._uncommitted_since == now - 30 and writer.stalled()
    writer._waiting = []
    writer._committed(True)
    assert writer._uncommitted_since is None and not writer.stalled()
    writer._uncommitted_since = now - 30
    writer._committed(False)
    assert writer._failed_at == now and writer.stalled()


def test_a_callback_already_answered_keeps_its_answer_when_its_group_fails_later() -> None:
    """`Done` is set once (setting it again is harmless), and the writer's failure paths answer
    only the callbacks not answered yet."""
    done = Done()
    assert not done.is_set() and not done.wait(0)
    done.set()
    done.set()
    assert done.is_set() and done.wait(0) and done.wait(0)  # set for good
    answered, left = pending("a", [report("m1")]), pending("b", [report("m2")])
    result = IngestResult(raw_event_id=1, stored=1, duplicates=0, quarantined=0)
    answered.finish(result=result)
    group_module._fail([answered, left], RuntimeError("the group writer stopped"))
    assert (answered.result, answered.error) == (result, None)
    assert left.done.is_set() and isinstance(left.error, RuntimeError)


def test_a_bug_in_the_writer_fails_its_group_and_the_writer_goes_on(
    store: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    writer = GroupWriter(store)
    real_write = GroupWriter._write
    calls: list[int] = []

    def buggy_once(self: GroupWriter, group: list[Pending]) -> None:
        calls.append(len(group))
        if len(calls) == 1:
            raise KeyError("a bug")
        real_write(self, group)

    monkeypatch.setattr(GroupWriter, "_write", buggy_once)
    with pytest.raises(RuntimeError) as failed:
        writer.store(*fields(pending("a", [report("m1")])))
    assert str(failed.value) == "the group writer failed: KeyError('a bug')"
    assert [r.getMessage() for r in caplog.records if r.name == "app.store.group"] == [
        "the group writer failed"
    ]
    assert writer.store(*fields(pending("b", [report("m2")]))).stored == 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_when_the_writer_thread_dies_its_requests_are_answered_and_the_next_starts_one(
    store: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = GroupWriter(store)
    real_write = GroupWriter._write

    def dies_once(self: GroupWriter, group: list[Pending]) -> None:
        monkeypatch.setattr(GroupWriter, "_write", real_write)
        raise SystemExit  # what a thread meets at interpreter exit

    monkeypatch.setattr(GroupWriter, "_write", dies_once)
    with pytest.raises(RuntimeError) as stopped:
        writer.store(*fields(pending("a", [report("m1")])))
    assert str(stopped.value) == "the group writer stopped"
    assert writer.store(*fields(pending("b", [report("m2")]))).stored == 1


def test_the_logs_say_what_happened_to_a_group(
    store: Database, refuse_poison: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    GroupWriter(store)._write([pending("a", [report("m1")]), pending("b", [report("poison")])])
    (line,) = [r for r in caplog.records if getattr(r, "event", None) == "group_failed"]
    assert line.getMessage() == "a group of callbacks failed; storing each alone"
    assert (line.callbacks, line.error) == (2, "IntegrityError")  # type: ignore[attr-defined]
    caplog.clear()
    with failing_commit(store):
        GroupWriter(store)._write(group := [pending("c", [report("m3")])])
    assert [r.getMessage() for r in caplog.records if r.name == "app.store.group"] == [
        "database unavailable: OperationalError"
    ]
    error = group[0].error
    assert isinstance(error, DatabaseUnavailable)
    assert error.message == "the database is unavailable; retry"
    assert isinstance(error.__cause__, OperationalError)


def test_a_callback_that_fails_again_alone_gets_its_own_error_and_the_rest_are_stored(
    store: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Alone, the database unavailable is a 503 for that callback; anything else is its own
    error (a 500); its neighbours are stored either way."""
    real_first_uses = replay.first_uses

    def first_uses(session, uses, now):  # type: ignore[no-untyped-def]
        if len(uses) == 1 and uses[0].nonce == "odd":
            raise LookupError("nobody foresaw this")
        return real_first_uses(session, uses, now)

    monkeypatch.setattr(replay, "first_uses", first_uses)
    reports = "INSERT INTO delivery_reports"
    group = [
        pending("a", [report("m1")]),
        pending("u", [report("unreachable")]),
        pending("odd", [report("m2")]),
        pending("c", [report("m3")]),
    ]
    # `unreachable` fails the group once (the outer fault, entered first, takes the first hit),
    # then, alone, meets the database unavailable.
    with (
        failing_statements(store.engine, reports, IntegrityError, carrying="unreachable", times=1),
        failing_statements(store.engine, reports, OperationalError, carrying="unreachable"),
    ):
        (writer := GroupWriter(store))._write(group)
    assert answers(group) == [
        {"stored": 1, "duplicates": 0, "quarantined": 0},
        "DatabaseUnavailable",
        "LookupError",
        {"stored": 1, "duplicates": 0, "quarantined": 0},
    ]
    assert isinstance(group[1].error.__cause__, OperationalError)  # type: ignore[union-attr]
    (line,) = [r for r in caplog.records if getattr(r, "event", None) == "callback_not_stored"]
    assert line.getMessage() == "a callback could not be stored alone: OperationalError"
    assert line.error == "OperationalError"  # type: ignore[attr-defined]
    assert writer._failed_at > float("-inf")  # the refusal alone counts as a failure


def fields(p: Pending) -> tuple[SignedUse, RawPayload, Any]:
    return p.use, p.raw, p.batch


# --- review results in a group ------------------------------------------------------------


def signed(app_key: str, nonce: str, record_type: str, items: list[Any]) -> Pending:
    data = json.dumps(items)
    use = SignedUse(app_key, nonce, 1, digest_of(record_type, data))
    raw = RawPayload(app_key, Source.CALLBACK, record_type, data, nonce, 1)
    return Pending(use, raw, parse_payload(record_type, items))


def test_review_results_that_differ_in_any_part_of_their_key_are_each_stored(
    store: Database,
) -> None:
    templates = [
        {"tempId": 7, "status": 2, "refuseReason": "too long"},
        {"tempId": 7, "status": 2, "refuseReason": "rude"},  # another reason
        {"tempId": 7, "status": 2},  # no reason
        {"tempId": 7, "status": 1},  # another status
        {"tempId": 8, "status": 1, "note": "kept"},  # another id, a field we do not model
    ]
    group = [
        signed(ONE, "t", "SMS_TEMPLATE", templates),
        signed(ONE, "s", "SMS_SIGN", [{"signId": 7, "status": 1}]),  # another review type
        signed("app-two", "t", "SMS_TEMPLATE", templates),  # another app
        signed(ONE, "again", "SMS_TEMPLATE", templates[:1]),  # a repeat
    ]
    outcomes = write_group(store, group)
    assert [o.as_json() for o in outcomes] == [  # type: ignore[union-attr]
        {"stored": 5, "duplicates": 0, "quarantined": 0},
        {"stored": 1, "duplicates": 0, "quarantined": 0},
        {"stored": 5, "duplicates": 0, "quarantined": 0},
        {"stored": 0, "duplicates": 1, "quarantined": 0},
    ]
    with store.session() as session:
        rows = {
            (r.review_type, r.subject_id, r.status, r.refuse_reason): r.extra
            for r in session.scalars(select(ReviewResult).where(ReviewResult.app_key == ONE))
        }
    assert sorted(rows, key=str) == sorted([
        ("template", "7", 2, "too long"),
        ("template", "7", 2, "rude"),
        ("template", "7", 2, None),
        ("template", "7", 1, None),
        ("template", "8", 1, None),
        ("sign", "7", 1, None),
    ], key=str)  # fmt: skip
    assert json.loads(rows["template", "8", 1, None] or "{}") == {"note": "kept"}


def test_a_raw_event_keeps_text_a_database_cannot_hold_as_replacement_characters(
    store: Database,
) -> None:
    """NUL and lone surrogates become U+FFFD, one for one; a type is kept to 64 characters."""
    assert storable_text("a\x00b\ud800c") == "a\ufffdb\ufffdc"
    odd = pending("n", [], data='["\\u0000"]')
    odd.raw = RawPayload(ONE, Source.CALLBACK, "T" * 100, '["\x00"]', "n", 1)
    write_group(store, [odd])
    with store.session() as session:
        event_ = session.scalars(select(RawEvent)).one()
    assert (event_.type, event_.payload) == ("T" * 64, '["\ufffd"]')
