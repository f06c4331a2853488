"""Group commit compositions: a retry ahead of new callbacks, report and reply callbacks in one
group, callbacks sharing a nonce. Each callback's answer and its raw event's counts are what
the same callbacks get written alone, one after another in arrival order; on SQLite and
PostgreSQL. (The plain cases are in tests/test_group_commit.py.)"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import delete, select

from app.jsms.callback import SignedUse, digest_of
from app.jsms.records import parse_payload
from app.store.db import Database
from app.store.group import GroupWriter, Pending, write_alone, write_group
from app.store.ingest import RawPayload
from app.store.models import (
    CallbackSignature,
    DeliveryReport,
    RawEvent,
    Reply,
    ReviewResult,
    SignatureReuse,
    Source,
)
from tests.support import APPS
from tests.wire import report, signed_form

TS = 1_700_000_000_000


def reply(content: str, phone: str = "13800138000") -> dict[str, Any]:
    """One SMS_REPLY item."""
    return {"phone": phone, "content": content, "replyTime": 1575015093000}


def callback(
    nonce: str, record_type: str, items: list[Any], *, app_key: str = "app-one", ts: int = TS
) -> Pending:
    """A verified callback, as the view hands it to the writer."""
    data = json.dumps(items)
    use = SignedUse(app_key, nonce, ts, digest_of(record_type, data))
    raw = RawPayload(app_key, Source.CALLBACK, record_type, data, nonce, ts)
    return Pending(use, raw, parse_payload(record_type, json.loads(data)))


def answer(outcome: object) -> object:
    as_json = getattr(outcome, "as_json", None)
    return as_json() if as_json else type(outcome).__name__


def what_is_stored(store: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every raw event's counts (by its signed triple) and every record (by the triple of the
    raw event that brought it)."""
    with store.session() as session:
        events = session.scalars(select(RawEvent).order_by(RawEvent.id)).all()
        triple = {e.id: (e.app_key, e.nonce, e.callback_timestamp) for e in events}
        reports = session.scalars(select(DeliveryReport).order_by(DeliveryReport.msg_id))
        replies = session.scalars(select(Reply).order_by(Reply.content))
        reviews = session.scalars(select(ReviewResult).order_by(ReviewResult.subject_id))
        return {
            "raw_events": [
                (triple[e.id], e.type, e.records, e.stored, e.duplicates, e.quarantined)
                for e in events
            ],
            "reports": [(r.msg_id, r.status, triple[r.raw_event_id]) for r in reports],
            "replies": [(r.content, triple[r.raw_event_id]) for r in replies],
            "reviews": [(r.subject_id, r.status) for r in reviews],
        }


def forget_everything(store: Database) -> None:
    with store.session() as session, session.begin():
        for model in (
            DeliveryReport, Reply, ReviewResult, RawEvent, CallbackSignature, SignatureReuse
        ):
            session.execute(delete(model))


def grouped(store: Database, group: Sequence[Pending]) -> list[object]:
    return [answer(o) for o in write_group(store, group)]


def alone(store: Database, group: Sequence[Pending]) -> list[object]:
    return [answer(write_alone(store, p)) for p in group]


def both_ways(
    store: Database, before: Sequence[Pending], group: Sequence[Pending]
) -> tuple[tuple[list[object], dict[str, Any]], tuple[list[object], dict[str, Any]]]:
    """(answers, what is stored) with `group` written as one group, then (after forgetting
    everything) callback by callback; `before` is written first each time, alone."""
    results = []
    for write in (grouped, alone):
        forget_everything(store)
        alone(store, before)
        results.append((write(store, group), what_is_stored(store)))
    return results[0], results[1]


def test_a_retry_ahead_of_new_callbacks_answers_each_its_own(store: Database) -> None:
    first = callback("a", "SMS_REPORT", [report("m1"), report("m2"), report("m3")])
    group = [
        first,  # JSMS retrying "a" (stored before the group): every record a duplicate
        callback("b", "SMS_REPORT", [report("m4")]),
        callback("c", "SMS_REPORT", [report("m5"), report("m6"), {"bad": 1}]),
        callback("d", "SMS_REPORT", [report("m1"), report("m7")]),
    ]
    (answers, stored), expected = both_ways(store, [first], group)
    assert answers == [
        {"stored": 0, "duplicates": 3, "quarantined": 0},
        {"stored": 1, "duplicates": 0, "quarantined": 0},
        {"stored": 2, "duplicates": 0, "quarantined": 1},
        {"stored": 1, "duplicates": 1, "quarantined": 0},
    ]
    assert (answers, stored) == expected


def test_a_retry_of_a_callback_earlier_in_the_same_group(store: Database) -> None:
    a = callback("a", "SMS_REPORT", [report("m1"), report("m2")])
    group = [a, callback("b", "SMS_REPORT", [report("m3")]), a, callback("c", "SMS_REPLY", [])]
    (answers, stored), expected = both_ways(store, [], group)
    assert answers[2] == {"stored": 0, "duplicates": 2, "quarantined": 0}
    assert (answers, stored) == expected


def test_report_reply_and_review_callbacks_in_one_group_keep_their_own_counts(
    store: Database,
) -> None:
    """One record kind's pass must not overwrite another kind's counts: with `stored[i] =
    count` instead of `+=`, the reply pass answered the new report `stored: 0, duplicates: 1`."""
    known = callback("known", "SMS_REPLY", [reply("old")])
    group = [
        callback("r", "SMS_REPORT", [report("m1"), report("m2")]),
        callback("p", "SMS_REPLY", [reply("old"), reply("new"), reply("newer")]),
        callback("t", "SMS_TEMPLATE", [{"tempId": 7, "status": 1}]),
        callback("s", "SMS_REPORT", [report("m2"), report("m3")]),
        callback("q", "SMS_REPLY", [reply("new")]),
    ]
    (answers, stored), expected = both_ways(store, [known], group)
    assert answers == [
        {"stored": 2, "duplicates": 0, "quarantined": 0},
        {"stored": 2, "duplicates": 1, "quarantined": 0},
        {"stored": 1, "duplicates": 0, "quarantined": 0},
        {"stored": 1, "duplicates": 1, "quarantined": 0},
        {"stored": 0, "duplicates": 1, "quarantined": 0},
    ]
    assert (answers, stored) == expected


@pytest.mark.parametrize("reused", [False, True], ids=["all-new", "one-reused"])
def test_callbacks_sharing_a_nonce_are_told_apart_by_app_and_timestamp(
    store: Database, reused: bool
) -> None:
    """The replay memory's key is (app, nonce, timestamp): the same nonce from another app or
    at another time is another signature, not a retry nor a replay."""
    group = [
        callback("n", "SMS_REPORT", [report("m1")]),
        callback("n", "SMS_REPORT", [report("m2"), report("m3")], app_key="app-two"),
        callback("n", "SMS_REPORT", [report("m1"), report("m4")], ts=TS + 1),
        callback("n", "SMS_REPLY", [reply("hi")], app_key="app-two", ts=TS + 1),
    ]
    if reused:  # the first triple again with other data: kept quarantined, neighbours stored
        group.insert(2, callback("n", "SMS_REPORT", [report("forged")]))
    (answers, stored), expected = both_ways(store, [], group)
    assert (answers, stored) == expected
    if reused:
        assert answers.pop(2) == {"stored": 0, "duplicates": 0, "quarantined": 1}
        assert stored["raw_events"].pop(2)[1:] == ("SMS_REPORT", 1, 0, 0, 1)
    assert answers == [
        {"stored": 1, "duplicates": 0, "quarantined": 0},
        {"stored": 2, "duplicates": 0, "quarantined": 0},
        {"stored": 1, "duplicates": 1, "quarantined": 0},
        {"stored": 1, "duplicates": 0, "quarantined": 0},
    ]
    assert len(stored["raw_events"]) == 4


# --- through the view: callbacks that queue behind a held writer form one group ---------------


def test_a_mixed_group_through_the_view_answers_each_callback_its_own(
    app: Flask, database: Database, held_writer: tuple[threading.Event, threading.Event]
) -> None:
    entered, release = held_writer
    one, secret = "app-one", APPS["app-one"]
    first = signed_form(one, secret, "SMS_REPORT", [report("m0")])
    forms = [
        first,
        first,  # JSMS retrying the first, queued ahead of the new ones
        signed_form(one, secret, "SMS_REPLY", [reply("a"), reply("b")]),
        signed_form(one, secret, "SMS_REPORT", [report("m1"), report("m0")]),
        signed_form(one, secret, "SMS_REPORT", [report("m2")], nonce=first["nonce"],
                    timestamp=str(int(first["timestamp"]) + 1)),  # fmt: skip
    ]
    responses: dict[int, Any] = {}

    def post(n: int) -> None:
        responses[n] = app.test_client().post("/callbacks/jsms", data=forms[n])

    threads = [threading.Thread(target=post, args=(n,)) for n in range(len(forms))]
    threads[0].start()
    assert entered.wait(10)
    writer: GroupWriter = app.extensions["group_writer"]
    for queued, thread in enumerate(threads[1:], start=1):
        thread.start()  # one at a time, so they queue in this order
        deadline = time.monotonic() + 10
        while len(writer._waiting) < queued and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(writer._waiting) == queued
    release.set()
    for thread in threads:
        thread.join(10)
    assert [responses[n].get_json() for n in range(len(forms))] == [
        {"stored": 1, "duplicates": 0, "quarantined": 0},
        {"stored": 0, "duplicates": 1, "quarantined": 0},
        {"stored": 2, "duplicates": 0, "quarantined": 0},
        {"stored": 1, "duplicates": 1, "quarantined": 0},
        {"stored": 1, "duplicates": 0, "quarantined": 0},
    ]
    with database.session() as session:
        counts = session.execute(
            select(RawEvent.stored, RawEvent.duplicates).order_by(RawEvent.id)
        ).all()
    assert [tuple(c) for c in counts] == [(1, 0), (2, 0), (1, 1), (1, 0)]
