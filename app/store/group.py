"""Group commit: the callbacks a web worker receives together are stored in one transaction.

A request thread verifies and parses its callback, then hands it to its process's `GroupWriter`
and waits. The writer thread takes every callback waiting (up to `MAX_GROUP`), remembers their
signatures, writes all their raw events and records with multi-row statements, commits once,
and only then wakes each request with its own outcome. So "200 only after commit" holds for each
callback, while BEGIN, COMMIT, the pool checkout and each statement's round trip are paid once
per group instead of once per callback.

- The outcome of each callback is what it would have been alone, in arrival order: two
  callbacks in one group carrying the same record store it once (the first), and the second
  counts it a duplicate; the same signature twice is stored once and retried once; the same
  signature with other data is kept quarantined (`signature_reused`), or refused past the
  replay memory's bound.
- A callback the reader found suspect (`signature_time`) or the replay memory reused is kept
  raw with every item quarantined; its records wait for `jsms trust`.
- A group that fails for any reason but the database being unavailable is rolled back, and each
  of its callbacks is then written alone (with the single path's SAVEPOINT and quarantine), so
  one odd callback never fails its neighbours. A callback the database refuses alone too (its
  COMMIT refused, whatever the SQLSTATE: a deferred trigger, a serialization failure) was not
  written: 503, and JSMS retries; any other error alone is a bug, its own 500.
- The database unavailable: every callback of the group gets the error (503, JSMS retries);
  nothing of the group was written.
- A request that waits longer than `WAIT_SECONDS` (a stalled database) gets a 503 too, and its
  callback leaves the queue if the writer has not taken it yet. Should its group commit after
  all, JSMS's retry is recognised by the replay memory: nothing is stored twice. The web
  process's connections fail a statement or a lock wait before that (`ConnectionLimits`).
- The queue holds at most `MAX_QUEUED_BYTES` of callbacks: past that a callback is answered 503
  at once (JSMS retries), so a stuck database cannot swell a worker. `stalled()` tells
  `/readyz` that the writer has had work for longer than `WAIT_SECONDS` without a commit.

The writer thread starts with the first callback after a fork (gunicorn's workers) and ends
after `IDLE_SECONDS` without work, holding no connection between groups.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.exc import DBAPIError

from app.jsms.callback import SignatureReused, SignedUse, Suspect, reused_suspect
from app.jsms.records import ParsedBatch
from app.metrics import GROUP_SIZE
from app.store import replay
from app.store.db import DATABASE_UNAVAILABLE, Database, DatabaseUnavailable
from app.store.ingest import (
    IngestResult,
    RawPayload,
    as_suspect,
    ingest_many,
    ingest_or_quarantine,
)
from app.store.models import utcnow
from app.store.replay import Verdict

log = logging.getLogger(__name__)

# Callbacks per group at most: bounds a transaction's size (and the wait of its last request).
MAX_GROUP = 64
# A request waits this long for its group's commit (under gunicorn's 30 s worker timeout).
WAIT_SECONDS = 20.0
IDLE_SECONDS = 5.0
# Callback payloads waiting for the writer at most (the text of their `data`), per process:
# 32 callbacks of 1 MiB. One callback alone is always taken.
MAX_QUEUED_BYTES = 32 * 1024 * 1024


class Done:
    """`threading.Event` for one waiter, on a held lock that `set` releases: the request's wait
    and the writer's wake-up cost half an Event's pure-Python condition (bench/README.md)."""

    __slots__ = ("_held", "_set")

    def __init__(self) -> None:
        self._held = threading.Lock()
        self._held.acquire()
        self._set = False

    def set(self) -> None:
        if not self._set:
            self._set = True
            self._held.release()

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """Whether it was set within `timeout` seconds."""
        if self._held.acquire(timeout=timeout):
            self._held.release()  # set for good: a later wait returns at once
            return True
        return self._set


@dataclass(eq=False)
class Pending:
    """One verified callback waiting for its group's commit, and then its outcome."""

    use: SignedUse
    raw: RawPayload
    batch: ParsedBatch
    suspect: Suspect | None = None  # the reader's (signature_time)
    queued_at: float = field(default_factory=time.monotonic)
    done: Done = field(default_factory=Done)
    result: IngestResult | None = None
    error: BaseException | None = None

    def finish(
        self, result: IngestResult | None = None, error: BaseException | None = None
    ) -> None:
        self.result, self.error = result, error
        self.done.set()

    @property
    def size(self) -> int:
        """What it holds in the queue: the length of its payload."""
        return len(self.raw.payload)


class GroupWriter:
    """The writer of one process and database; `store` is called by request threads."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._waiting: list[Pending] = []
        self._wake = threading.Condition()
        self._running = False
        self._pid = os.getpid()
        self._queued_bytes = 0
        # Since when the writer has had work without committing any (None: all committed),
        # and when a group last failed: what `stalled` reads.
        self._uncommitted_since: float | None = None
        self._failed_at = float("-inf")

    def store(
        self, use: SignedUse, raw: RawPayload, batch: ParsedBatch, suspect: Suspect | None = None
    ) -> IngestResult:
        """Store one callback with whatever arrives with it; return once it is committed.
        Raises what storing it alone would have: `SignatureReused`, or a database error."""
        pending = Pending(use, raw, batch, suspect)
        self._enqueue(pending)
        if not pending.done.wait(WAIT_SECONDS):
            self._drop(pending)
            raise DatabaseUnavailable("the database did not commit the callback in time")
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def stalled(self) -> bool:
        """Whether the writer has had work for longer than WAIT_SECONDS without committing any,
        and still has (or has just failed some): the database holds it up."""
        with self._wake:
            since, failed_at, waiting = self._uncommitted_since, self._failed_at, self._waiting
        now = time.monotonic()
        busy = bool(waiting) or now - failed_at < WAIT_SECONDS
        return since is not None and busy and now - since > WAIT_SECONDS

    @property
    def queued_bytes(self) -> int:
        """The payload bytes waiting for the writer now."""
        return self._queued_bytes

    def _enqueue(self, pending: Pending) -> None:
        """Queue a callback and wake the writer (start one after a fork or an idle end);
        refuse it (503) when the queue is full."""
        with self._wake:
            if self._pid != os.getpid():  # forked with a writer: it did not come along
                self._pid, self._running, self._waiting = os.getpid(), False, []
                self._queued_bytes, self._uncommitted_since = 0, None
            if self._waiting and self._queued_bytes + pending.size > MAX_QUEUED_BYTES:
                raise DatabaseUnavailable(
                    "callbacks are queued up behind a slow database; retry"
                )
            self._waiting.append(pending)
            self._queued_bytes += pending.size
            if self._uncommitted_since is None:
                self._uncommitted_since = pending.queued_at
            if not self._running:
                threading.Thread(target=self._run, name="group-writer", daemon=True).start()
                self._running = True
            self._wake.notify()

    def _drop(self, pending: Pending) -> None:
        """Take a callback whose request gave up out of the queue, if the writer has not."""
        with self._wake:
            if pending in self._waiting:
                self._waiting.remove(pending)
                self._queued_bytes -= pending.size

    def _committed(self, succeeded: bool) -> None:
        """After a group: a commit clears the stall clock (to the oldest callback still
        waiting); a failure leaves it running."""
        with self._wake:
            if succeeded:
                oldest = min((p.queued_at for p in self._waiting), default=None)
                self._uncommitted_since = oldest
            else:
                self._failed_at = time.monotonic()

    def _run(self) -> None:
        group: list[Pending] = []
        try:
            while group := self._next_group():
                try:
                    self._write(group)
                except Exception as exc:  # a bug here: never leave a request waiting
                    log.exception("the group writer failed")
                    _fail(group, RuntimeError(f"the group writer failed: {exc!r}"))
        except BaseException:  # the thread dies (interpreter exit): the next callback starts one
            with self._wake:
                stranded, self._waiting, self._running = self._waiting, [], False
            _fail([*group, *stranded], RuntimeError("the group writer stopped"))
            raise

    def _next_group(self) -> list[Pending]:
        """Everything waiting (up to MAX_GROUP); [] (and the thread ends) after IDLE_SECONDS."""
        with self._wake:
            if not self._waiting:
                self._wake.wait(IDLE_SECONDS)
            group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
            self._queued_bytes -= sum(p.size for p in group)
            if not group:
                self._running = False
            return group

    def _write(self, group: Sequence[Pending]) -> None:
        GROUP_SIZE.observe(len(group))
        try:
            outcomes = write_group(self.database, group)
        except DATABASE_UNAVAILABLE as exc:
            log.warning("database unavailable: %s", type(exc).__name__)
            self._committed(False)
            for pending in group:
                pending.finish(error=_unavailable(exc))
            return
        except Exception as exc:  # one callback the group cannot take: each alone, then
            log.warning(
                "a group of callbacks failed; storing each alone",
                extra={"event": "group_failed", "callbacks": len(group),
                       "error": type(exc).__name__},
            )  # fmt: skip
            for pending in group:
                try:
                    outcome = write_alone(self.database, pending)
                except (*DATABASE_UNAVAILABLE, DBAPIError) as alone:
                    # The database refused its own transaction (its COMMIT, a trigger, whatever
                    # the SQLSTATE): nothing of it was written, JSMS retries.
                    log.warning(
                        "a callback could not be stored alone: %s", type(alone).__name__,
                        extra={"event": "callback_not_stored", "error": type(alone).__name__},
                    )  # fmt: skip
                    self._committed(False)
                    pending.finish(error=_unavailable(alone))
                except Exception as alone:  # a bug: its own error (500), neighbours go on
                    pending.finish(error=alone)
                else:
                    self._committed(True)
                    _finish(pending, outcome)
            return
        self._committed(True)
        for pending, outcome in zip(group, outcomes, strict=True):
            _finish(pending, outcome)


# What storing one callback came to: its result, or the refusal of a reused signature.
Outcome = IngestResult | SignatureReused


def write_group(database: Database, group: Sequence[Pending]) -> list[Outcome]:
    """Store a group in one transaction, with multi-row statements; each callback's outcome,
    in order. A record the store refuses fails the whole group (the caller then writes each
    callback alone)."""
    now = utcnow()
    # Core statements only: a connection's transaction, without an ORM session around it.
    with database.engine.begin() as connection:
        verdicts = replay.first_uses(connection, [p.use for p in group], now)
        stored = ingest_many(connection, [
            _payload(p, verdict) for p, verdict in zip(group, verdicts, strict=True)
            if verdict in KEPT
        ])  # fmt: skip
    return _outcomes(group, verdicts, stored)


def write_alone(database: Database, pending: Pending) -> Outcome:
    """Store one callback in its own transaction, the single path: a record the store refuses
    keeps the callback raw (SAVEPOINT, quarantine) instead of failing it."""
    now = utcnow()
    with database.session() as session, session.begin():
        (verdict,) = replay.first_uses(session, [pending.use], now)
        stored = []
        if verdict in KEPT:
            stored.append(ingest_or_quarantine(session, *_payload(pending, verdict)))
    (outcome,) = _outcomes([pending], [verdict], stored)
    return outcome


# The verdicts whose callback is written (the others were written before, or are refused).
KEPT = frozenset({Verdict.FIRST, Verdict.REUSED})


def _payload(pending: Pending, verdict: Verdict) -> tuple[RawPayload, ParsedBatch]:
    """What is written for a kept callback: its records, or, suspect, its raw text alone."""
    suspect = reused_suspect() if verdict is Verdict.REUSED else pending.suspect
    if suspect is None:
        return pending.raw, pending.batch
    return as_suspect(pending.raw, pending.batch, suspect)


def _outcomes(
    group: Sequence[Pending], verdicts: Sequence[Verdict], stored: Sequence[IngestResult]
) -> list[Outcome]:
    """Each callback's outcome: its stored result (`stored` holds the KEPT ones, in order),
    a retry's duplicates, or the refusal of a flood past the replay memory's bound."""
    results = iter(stored)
    return [
        next(results) if verdict in KEPT
        else SignatureReused() if verdict is Verdict.FLOODED
        else replay.retry_result(pending.batch)
        for pending, verdict in zip(group, verdicts, strict=True)
    ]  # fmt: skip


def _unavailable(exc: Exception) -> DatabaseUnavailable:
    """Each waiting request its own error (one exception raised in many threads would share a
    traceback); the database's own error is its cause."""
    error = DatabaseUnavailable("the database is unavailable; retry")
    error.__cause__ = exc
    return error


def _fail(group: Sequence[Pending], error: BaseException) -> None:
    for pending in group:
        if not pending.done.is_set():
            pending.finish(error=error)


def _finish(pending: Pending, outcome: Outcome) -> None:
    if isinstance(outcome, SignatureReused):
        pending.finish(error=outcome)
    else:
        pending.finish(result=outcome)
