"""The opt-out list: every opt-out and opt-in (`opt_out_changes`) and, per app and phone, the
state the newest of them decided (`opt_outs`).

Changes are written only where replies are (`upsert.store_replies`, in the transaction that
stores them), from stored replies (`follow_stored_replies`, `jsms reprocess`) or by hand
(`change_by_hand`, the `jsms opt-out` command), and the state only with its change, in the
same transaction: the list never disagrees with the replies.
The newest change by its time wins whatever the arrival order (at the same time an opt-out
beats an opt-in, then the later recorded change), so a late TD cannot undo a newer START.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from app.jsms.keywords import DEFAULT_KEYWORDS, Choice, Keywords
from app.jsms.records import ReplyMessage
from app.store.models import OptOut, OptOutChange, Reply, utcnow

MANUAL = "manual"  # `source` of a change by hand
# Rows per statement: well under SQLite's bound parameters.
_CHUNK = 500

_CHANGES: Table = OptOutChange.__table__  # type: ignore[assignment]
_STATES: Table = OptOut.__table__  # type: ignore[assignment]
_keywords: list[Keywords] = [DEFAULT_KEYWORDS]


def use_keywords(keywords: Keywords) -> None:
    """Read replies with these keywords from now on (OPT_OUT_KEYWORDS / OPT_IN_KEYWORDS; the
    app factory sets them once per process, as it configures logging)."""
    _keywords[0] = keywords


def keyword_choice(content: str) -> Choice | None:
    """The opt-out or opt-in a reply's content asks for under the keywords in use."""
    return _keywords[0].choice(content)


@dataclass(frozen=True, slots=True)
class Change:
    """An opt-out (`opted_out`) or opt-in of one phone of one app, and who or what made it."""

    app_key: str
    phone: str
    opted_out: bool
    changed_at: datetime
    source: str
    keyword: str | None = None
    reply_id: int | None = None
    changed_by: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class KeywordReply:
    """A reply being stored whose content is a keyword, and what identifies its row."""

    app_key: str
    source: str
    dedup_key: str
    reply: ReplyMessage
    choice: Choice


def follow_replies(connection: Connection, replies: Sequence[KeywordReply]) -> int:
    """Record the change each keyword reply makes, once per reply row (a repeat, already
    followed, changes nothing), in the caller's transaction; how many were new."""
    if not replies:
        return 0
    keys = sorted({r.dedup_key for r in replies})
    ids: dict[str, int] = {}
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        found = connection.execute(
            select(Reply.dedup_key, Reply.id).where(Reply.dedup_key.in_(chunk))
        )
        ids.update((key, id_) for key, id_ in found)
    changes = [
        Change(
            app_key=r.app_key,
            phone=r.reply.phone,
            opted_out=r.choice.opted_out,
            changed_at=r.reply.replied_at,
            source=r.source,
            keyword=r.choice.keyword,
            reply_id=ids[r.dedup_key],
        )
        for r in replies
        if r.dedup_key in ids
    ]
    return len(record(connection, changes))


def record(connection: Connection, changes: Sequence[Change]) -> list[int]:
    """Insert the changes (a reply's only if none was recorded for it) and let each decide its
    phone's state where it is the newest; the ids of the changes inserted, in the caller's
    transaction."""
    unique: dict[tuple[str, int], Change] = {}  # one change per reply; every one by hand
    for index, change in enumerate(changes):
        reply_id = change.reply_id
        unique.setdefault(("hand", index) if reply_id is None else ("reply", reply_id), change)
    rows = sorted(
        (_change_row(c) for c in unique.values()),
        key=lambda row: (row["app_key"], row["phone"], row["reply_id"] or 0),
    )
    inserted: list[Any] = []
    for start in range(0, len(rows), _CHUNK):
        statement = (
            _insert(connection, _CHANGES)
            .values(rows[start : start + _CHUNK])
            .on_conflict_do_nothing(index_elements=["reply_id"])
            .returning(*_CHANGES.c)
        )
        inserted.extend(connection.execute(statement).all())
    _decide(connection, inserted)
    return sorted(row.id for row in inserted)


def _change_row(change: Change) -> dict[str, Any]:
    return {
        "app_key": change.app_key,
        "phone": change.phone,
        "opted_out": change.opted_out,
        "changed_at": change.changed_at,
        "keyword": change.keyword,
        "source": change.source,
        "reply_id": change.reply_id,
        "changed_by": change.changed_by,
        "reason": change.reason,
        "recorded_at": utcnow(),
    }


def _decide(connection: Connection, changes: Sequence[Any]) -> None:
    """Upsert each phone's state from the newest of these changes, where it is newer than the
    change that decided the state so far (one row per phone: a statement may not update a row
    twice)."""
    newest: dict[tuple[str, str], Any] = {}
    for change in changes:
        key = (change.app_key, change.phone)
        if key not in newest or _rank(change) > _rank(newest[key]):
            newest[key] = change
    rows = [
        {
            "app_key": c.app_key,
            "phone": c.phone,
            "opted_out": c.opted_out,
            "since": c.changed_at,
            "keyword": c.keyword,
            "source": c.source,
            "change_id": c.id,
        }
        for _, c in sorted(newest.items())  # key order: writers lock rows in the same order
    ]
    for start in range(0, len(rows), _CHUNK):
        statement = _insert(connection, _STATES).values(rows[start : start + _CHUNK])
        new, old = statement.excluded, _STATES.c
        statement = statement.on_conflict_do_update(
            index_elements=["app_key", "phone"],
            set_={name: new[name] for name in _DECIDED},
            where=tuple_(new.since, new.opted_out, new.change_id)
            > tuple_(old.since, old.opted_out, old.change_id),
        )
        connection.execute(statement)


_DECIDED = ("opted_out", "since", "keyword", "source", "change_id")


def _rank(change: Any) -> tuple[datetime, bool, int]:
    """Which of two changes decides: the later; at the same time an opt-out; then the later
    recorded one (the same order `_decide` asks of the database)."""
    return (change.changed_at, bool(change.opted_out), int(change.id))


def _insert(connection: Connection, table: Table) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (PostgreSQL and SQLite alike). Built per
    call: keyword replies are few, so the compiled-statement cache `upsert.py` needs is not."""
    dialect = connection.dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def change_by_hand(
    connection: Connection,
    app_key: str,
    phone: str,
    *,
    opted_out: bool,
    changed_by: str,
    reason: str,
) -> OptOutState:
    """Opt a phone out of (or back into) an app by hand, now, kept in the history with who and
    why; the phone's state afterwards (a reply newer than now would still win later)."""
    change = Change(
        app_key, phone, opted_out, utcnow(), MANUAL, changed_by=changed_by, reason=reason
    )
    record(connection, [change])
    state = state_of(connection, app_key, phone)
    assert state is not None  # a change was just recorded: the phone has a state
    return state


@dataclass(frozen=True, slots=True)
class OptOutState:
    """Whether a phone is opted out of an app, since when, and by which keyword and source."""

    opted_out: bool
    since: datetime
    keyword: str | None
    source: str


def state_of(connection: Connection, app_key: str, phone: str) -> OptOutState | None:
    """The phone's state for the app (None: no change ever): one primary-key read."""
    return state_from(connection.execute(STATE, {"app_key": app_key, "phone": phone}).first())


def state_from(row: Sequence[Any] | None) -> OptOutState | None:
    """The state a row of STATE holds (None: no row, no change ever)."""
    return None if row is None else OptOutState(bool(row[0]), row[1], row[2], row[3])


# What `state_of` runs, built once (SQLAlchemy then caches it compiled): building it per call
# cost as much as running it. bench/opt_outs.py explains it with `.params(…)`.
STATE = select(OptOut.opted_out, OptOut.since, OptOut.keyword, OptOut.source).where(
    OptOut.app_key == bindparam("app_key"), OptOut.phone == bindparam("phone")
)


def follow_stored_replies(connection: Connection, after: int, limit: int) -> tuple[int, int]:
    """Read the stored replies after id `after` (up to `limit`) with the keywords in use, and
    record the change of each keyword reply not followed yet (`jsms reprocess`: replies stored
    before the keywords were configured so, or by a release without opt-outs). Returns the last
    id read (`after` when none was left) and how many changes were new."""
    rows = connection.execute(
        select(Reply.id, Reply.app_key, Reply.phone, Reply.content, Reply.replied_at, Reply.source)
        .where(Reply.id > after)
        .order_by(Reply.id)
        .limit(limit)
    ).all()
    changes = [
        Change(
            app_key=row.app_key,
            phone=row.phone,
            opted_out=choice.opted_out,
            changed_at=row.replied_at,
            source=row.source,
            keyword=choice.keyword,
            reply_id=row.id,
        )
        for row in rows
        if (choice := keyword_choice(row.content)) is not None
    ]
    return (rows[-1].id if rows else after), len(record(connection, changes))
