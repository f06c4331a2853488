"""The store: typed SQLAlchemy models. Every table is documented in README.md for BI users."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# BIGINT identity on PostgreSQL; plain INTEGER on SQLite, where only that is a rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime: `timestamptz` on PostgreSQL, naive-UTC text on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is UTC:
            return value
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        """None on PostgreSQL: every session runs in UTC (`db.make_engine`), so psycopg already
        returns aware datetimes in `datetime.UTC`; a page of 100 reports skips 200 calls."""
        if dialect.name == "postgresql":
            return None
        return super().result_processor(dialect, coltype)


# What a page of reports reads but `extra` (unbounded text: an index row holds at most ~2.7 kB),
# so a failures page is an index-only scan on PostgreSQL but for the heap reads of `extra`.
FAILURE_INCLUDE = ["id", "msg_id", "phone", "status", "delivered", "source", "ingested_at"]


class Source(StrEnum):
    """How a record reached us (`source` in every record table and in `raw_events`)."""

    CALLBACK = "callback"
    PULL = "pull"


class SyncMode(StrEnum):
    """How an app's receipts of one kind reach us (`sync_state.mode`)."""

    PULL = "pull"  # the clock pulls them
    CALLBACK = "callback"  # JSMS posts them (pulling answers 50202); probed again now and then
    PAUSED = "paused"  # a person must fix something (auth, account, IP list); retried rarely


def utcnow() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class RawEvent(Base):
    """A signed callback or a pulled batch exactly as received, with what ingesting it did."""

    __tablename__ = "raw_events"
    __table_args__ = (
        Index("ix_raw_events_received_at", "received_at"),
        # Only the quarantined few (status page, metrics, reprocess): a normal event writes no
        # entry here (migration 0010).
        Index(
            "ix_raw_events_quarantined",
            "id",
            postgresql_where=text("quarantined > 0"),
            sqlite_where=text("quarantined > 0"),
        ),
        # When each app's last callback of each kind arrived (app/store/seen.py).
        Index(
            "ix_raw_events_callback_seen",
            "app_key",
            "type",
            "received_at",
            postgresql_where=text("source = 'callback'"),
            sqlite_where=text("source = 'callback'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    app_key: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))  # a Source
    type: Mapped[str] = mapped_column(String(64))  # SMS_REPORT, SMS_REPLY, … as sent
    payload: Mapped[str] = mapped_column(Text)  # the callback's `data`, or the pulled JSON body
    nonce: Mapped[str | None] = mapped_column(String(64))
    callback_timestamp: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    records: Mapped[int] = mapped_column(Integer, default=0)
    stored: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    quarantined: Mapped[int] = mapped_column(Integer, default=0)
    # Why records were quarantined: one line per rejected record ("#index: reason").
    quarantine_reason: Mapped[str | None] = mapped_column(Text)
    # A correctly signed callback whose records wait for `jsms trust` (signature_reused,
    # signature_time); None for everything else (migration 0014).
    suspect: Mapped[str | None] = mapped_column(String(32))


class CallbackSignature(Base):
    """Replay memory: each accepted callback's signed (app, nonce, timestamp), with a digest of
    the `type` and `data` it carried. JSMS's signature covers neither, so this makes it good
    once; rows go when their timestamp is older than the raw-event retention."""

    __tablename__ = "callback_signatures"
    __table_args__ = (
        UniqueConstraint("app_key", "nonce", "callback_timestamp"),
        Index("ix_callback_signatures_callback_timestamp", "callback_timestamp"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    app_key: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(64))
    callback_timestamp: Mapped[int] = mapped_column(BigInteger)  # epoch ms, as signed
    digest: Mapped[str] = mapped_column(String(64))  # sha256 of type and data
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SignatureReuse(Base):
    """Replay memory, continued: each other payload (digest) a remembered triple carried since,
    kept quarantined as `signature_reused`. At most MAX_PAYLOADS_PER_SIGNATURE - 1 per triple
    (`app/store/replay.py`); rows go with their triple's (migration 0014)."""

    __tablename__ = "signature_reuses"
    __table_args__ = (
        UniqueConstraint("app_key", "nonce", "callback_timestamp", "digest"),
        Index("ix_signature_reuses_callback_timestamp", "callback_timestamp"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    app_key: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(64))
    callback_timestamp: Mapped[int] = mapped_column(BigInteger)  # epoch ms, as signed
    digest: Mapped[str] = mapped_column(String(64))  # sha256 of type and data
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeliveryReport(Base):
    """One row per (app, msg_id, phone): the latest delivery status known for it."""

    __tablename__ = "delivery_reports"
    __table_args__ = (
        UniqueConstraint("app_key", "msg_id", "phone"),
        Index("ix_delivery_reports_received_at", "received_at"),
        # Query API and BI (migration 0002): keyset walks are ordered by id.
        Index(
            "ix_delivery_reports_app_key_received_at_id",
            "app_key",
            "received_at",
            "id",
            postgresql_include=["status"],
        ),
        Index("ix_delivery_reports_app_key_id", "app_key", "id"),
        Index("ix_delivery_reports_msg_id", "msg_id"),
        Index("ix_delivery_reports_phone_id", "phone", "id"),
        # Failures (migration 0004): a partial index on the few undelivered reports; covering on
        # PostgreSQL, so "this app's failures that day" is answered from the index alone.
        Index(
            "ix_delivery_reports_failures",
            "app_key",
            "received_at",
            postgresql_include=FAILURE_INCLUDE,
            postgresql_where=text("NOT delivered"),
            sqlite_where=text("NOT delivered"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    app_key: Mapped[str] = mapped_column(String(64))
    msg_id: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(32))
    status: Mapped[int] = mapped_column(Integer)
    delivered: Mapped[bool] = mapped_column(Boolean)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(16))
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    raw_event_id: Mapped[int | None] = mapped_column(BigInteger)
    # Unknown upstream fields, as JSON (migration 0011): those of the report kept in the row.
    extra: Mapped[str | None] = mapped_column(Text)


class Reply(Base):
    """An uplink SMS a user sent back; `dedup_key` makes a repeat a no-op."""

    __tablename__ = "replies"
    __table_args__ = (
        UniqueConstraint("dedup_key"),
        Index("ix_replies_replied_at", "replied_at"),
        # Query API (migration 0002): keyset walks are ordered by id.
        Index("ix_replies_app_key_replied_at_id", "app_key", "replied_at", "id"),
        Index("ix_replies_app_key_id", "app_key", "id"),
        Index("ix_replies_phone_id", "phone", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    app_key: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(32))
    content: Mapped[str] = mapped_column(Text)
    replied_at: Mapped[datetime] = mapped_column(UTCDateTime)
    extra: Mapped[str | None] = mapped_column(Text)  # unknown upstream fields, as JSON
    source: Mapped[str] = mapped_column(String(16))
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    raw_event_id: Mapped[int | None] = mapped_column(BigInteger)
    dedup_key: Mapped[str] = mapped_column(String(64))


class ReviewResult(Base):
    """A template (SMS_TEMPLATE) or signature (SMS_SIGN) review outcome."""

    __tablename__ = "review_results"
    __table_args__ = (
        UniqueConstraint("dedup_key"),
        # /api/v1/reviews (migration 0012): keyset walks by id, per app or by arrival time.
        Index("ix_review_results_app_key_id", "app_key", "id"),
        Index("ix_review_results_ingested_at", "ingested_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    app_key: Mapped[str] = mapped_column(String(64))
    review_type: Mapped[str] = mapped_column(String(16))  # template | sign
    subject_id: Mapped[str] = mapped_column(String(64))  # tempId or signId
    status: Mapped[int] = mapped_column(Integer)
    refuse_reason: Mapped[str | None] = mapped_column(Text)
    extra: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    raw_event_id: Mapped[int | None] = mapped_column(BigInteger)
    dedup_key: Mapped[str] = mapped_column(String(64))


class AppBalance(Base):
    """One read of an app's balance (`GET /v1/accounts/app`) by the clock: the messages the app
    could still send then, or why the read failed. Kept as history (consumption, time left)."""

    __tablename__ = "app_balances"
    __table_args__ = (Index("ix_app_balances_app_key_read_at", "app_key", "read_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    app_key: Mapped[str] = mapped_column(String(64))
    read_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when the answer arrived
    result: Mapped[str] = mapped_column(String(16))  # ok, a JSMS error code, or unavailable
    # The answer's fields (absent ones are NULL): all kinds, voice, industry, marketing.
    app_balance: Mapped[int | None] = mapped_column(BigInteger)
    app_voice: Mapped[int | None] = mapped_column(BigInteger)
    app_industry: Mapped[int | None] = mapped_column(BigInteger)
    app_market: Mapped[int | None] = mapped_column(BigInteger)
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_message: Mapped[str | None] = mapped_column(Text)


class OptOutChange(Base):
    """One opt-out or opt-in: by a keyword reply (`reply_id`) or by hand (`changed_by`, `reason`).
    Never updated or deleted: the history `opt_outs` is derived from (migration 0011)."""

    __tablename__ = "opt_out_changes"
    __table_args__ = (
        UniqueConstraint("reply_id"),  # one change per reply, however often it arrives
        Index("ix_opt_out_changes_app_key_phone_id", "app_key", "phone", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    app_key: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(32))
    opted_out: Mapped[bool] = mapped_column(Boolean)  # False: opted back in
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the reply's replied_at, or now
    keyword: Mapped[str | None] = mapped_column(String(32))  # as configured; None by hand
    source: Mapped[str] = mapped_column(String(16))  # the reply's (a Source), or "manual"
    reply_id: Mapped[int | None] = mapped_column(BigInteger)
    changed_by: Mapped[str | None] = mapped_column(String(64))  # who, by hand
    reason: Mapped[str | None] = mapped_column(Text)  # why, by hand
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OptOut(Base):
    """Per app and phone, the state its newest change decided (by `changed_at`; at the same
    time an opt-out beats an opt-in, then the later change). Written only with its change."""

    __tablename__ = "opt_outs"

    app_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    phone: Mapped[str] = mapped_column(String(32), primary_key=True)
    opted_out: Mapped[bool] = mapped_column(Boolean)
    since: Mapped[datetime] = mapped_column(UTCDateTime)  # the deciding change's changed_at
    keyword: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))
    change_id: Mapped[int] = mapped_column(BigInteger)  # the deciding opt_out_changes row


class SyncState(Base):
    """Per app and kind (report | reply): how receipts reach us and how pulling has gone."""

    __tablename__ = "sync_state"

    app_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16), default=SyncMode.PULL)  # a SyncMode
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error_code: Mapped[int | None] = mapped_column(Integer)
    last_error_message: Mapped[str | None] = mapped_column(Text)
    # When the last error happened: a later last_success_at means the app has recovered.
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    records_pulled: Mapped[int] = mapped_column(BigInteger, default=0)
    # Carrier time (received_at / replied_at) of the newest record pulled: the pull lag.
    newest_record_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def lag(self, now: datetime) -> dict[str, float | None]:
        """How far behind pulling is, in seconds as of `now` (None: never): the age of the
        newest record pulled (by its carrier time) and the time since the last successful pull."""
        return {
            "newest_record_age_seconds": _age(self.newest_record_at, now),
            "last_success_age_seconds": _age(self.last_success_at, now),
        }

    def catching_up(self, window: float) -> bool:
        """Whether this app and kind is draining a backlog: its last call came back full, so
        the puller set the next one due exactly one `window` (JSMS_RATE_LIMIT_SECONDS) after
        it (a short batch sets the idle poll instead, a failure counts in
        `consecutive_failures`, a resume clears `next_attempt_at`)."""
        if self.mode != SyncMode.PULL or self.consecutive_failures:
            return False
        if self.next_attempt_at is None or self.last_success_at is None:
            return False
        gap = (self.next_attempt_at - self.last_success_at).total_seconds()
        return abs(gap - window) < 0.001


def _age(then: datetime | None, now: datetime) -> float | None:
    return None if then is None else round(max(0.0, (now - then).total_seconds()), 3)


class PullCallCount(Base):
    """How many calls to the upstream got each answer, per app and kind (`ok`, a JSMS error
    code, or `unavailable`): the clock writes them, `/metrics` on `web` reads them."""

    __tablename__ = "pull_call_counts"

    app_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    result: Mapped[str] = mapped_column(String(16), primary_key=True)
    calls: Mapped[int] = mapped_column(BigInteger, default=0)


class PullLease(Base):
    """Who may call the upstream for an app right now, and when it last did (the rate window)."""

    __tablename__ = "pull_leases"

    app_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_call_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RefusedCallback(Base):
    """Callbacks this service refused in a way JSMS retries (a bad signature, a 503), counted
    per app, kind, reason and UTC hour: the countdown to JSMS's last retry reads these."""

    __tablename__ = "refused_callbacks"

    # The app the callback URL named; "" for the shared URL, where a bad signature names none.
    app_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # report, reply, … or other
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)  # the error code sent
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    refusals: Mapped[int] = mapped_column(BigInteger, default=0)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ClockHeartbeat(Base):
    """When each running clock process last showed it was alive (`/metrics` exports the newest)."""

    __tablename__ = "clock_heartbeats"

    holder: Mapped[str] = mapped_column(String(128), primary_key=True)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BusinessTimezone(Base):
    """The business time zone (BUSINESS_TIMEZONE) for the BI views, one row per UTC offset
    period: from `starts_at` on, local time is UTC + `utc_offset_seconds`. SQLite has no tz
    database, so its views read the offsets; PostgreSQL's use the zone's name. Rewritten by
    `jsms migrate` (app/store/business_time.py)."""

    __tablename__ = "business_timezone"

    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64))
    utc_offset_seconds: Mapped[int] = mapped_column(Integer)


class DeliveryRollup(Base):
    """Reports per app, 15-minute UTC bucket, status and `delivered`: the exact, compacted
    part of the delivery counts (app/store/rollup.py). What it does not hold yet is in
    `delivery_rollup_changes`; a count is always the sum over both."""

    __tablename__ = "delivery_rollup"
    __table_args__ = (
        Index("ix_delivery_rollup_bucket", "bucket"),
        # Rows whose reports all went (retention): the clock deletes them through this index.
        Index(
            "ix_delivery_rollup_empty",
            "bucket",
            postgresql_where=text("reports = 0"),
            sqlite_where=text("reports = 0"),
        ),
    )

    app_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The bucket's first second, in epoch seconds (a multiple of 900).
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    status: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivered: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    reports: Mapped[int] = mapped_column(Integer)


class DeliveryRollupChange(Base):
    """What database triggers on `delivery_reports` append for every row they insert, change
    or delete (+n into the new row's bucket, -n out of the old one's); the clock folds them into
    `delivery_rollup` and deletes them (app/store/rollup.py). Append-only between those folds,
    so concurrent writers never wait for each other here."""

    __tablename__ = "delivery_rollup_changes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    app_key: Mapped[str] = mapped_column(String(64))
    bucket: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[int] = mapped_column(Integer)
    delivered: Mapped[bool] = mapped_column(Boolean)
    reports: Mapped[int] = mapped_column(Integer)
