"""The `clock` process: APScheduler runs each app's due pull passes (and, hourly, retention)
until SIGTERM.

One interval job per app (apps have separate windows, so they drain in parallel); a job that is
still draining simply skips its next ticks. SIGTERM or SIGINT sets the puller's stop event: the
batch in hand is committed, leases are released, and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.exc import SQLAlchemyError

from app.pull.puller import BatchNotStored, Puller, StoreUnavailable
from app.store.alarms import beat
from app.store.models import utcnow
from app.store.retention import RetentionPolicy, purge

log = logging.getLogger(__name__)
# How often each app's job looks for due work; the sync state says what is due.
TICK_SECONDS = 1.0
MAX_THREADS = 8
# Retention runs this often, deleting at most RETENTION_BATCHES × 1,000 rows per table a run.
RETENTION_EVERY_HOURS = 1
RETENTION_BATCHES = 50
# The clock writes a heartbeat this often; `/metrics` exports it for the "clock silent" alert.
HEARTBEAT_SECONDS = 30


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT set `stop` instead of killing the process."""

    def _request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: finishing the batch in hand, then exiting", signal.strsignal(signum))
        stop.set()

    previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_due_passes(puller: Puller, app_key: str, secret: str) -> None:
    """One tick for one app: pull the kinds whose next attempt has come."""
    if puller.stop.is_set():
        return
    try:
        kinds = puller.due_kinds(app_key)
        if kinds:
            puller.sync_app(app_key, secret, kinds, on_schedule=True)
    except (StoreUnavailable, BatchNotStored, SQLAlchemyError) as exc:
        # Nothing is pulled while the store is down; the next tick tries again.
        log.error("pull app=%s skipped: %s", app_key, exc)


def enforce_retention(puller: Puller, policy: RetentionPolicy) -> None:
    """Delete expired rows in small batches (a backlog is worked off over several runs)."""
    if puller.stop.is_set():
        return
    try:
        with puller.database.session() as session:
            deleted = purge(session, policy, utcnow(), max_batches=RETENTION_BATCHES)
    except SQLAlchemyError as exc:
        log.error("retention skipped: %s", exc)
        return
    if any(deleted.values()):
        log.info("retention", extra={"event": "retention", "deleted": deleted})


def send_heartbeat(puller: Puller) -> None:
    """Tell the store this clock is alive (its own thread, so a long drain cannot hide it)."""
    if puller.stop.is_set():
        return
    try:
        with puller.database.session() as session, session.begin():
            beat(session, puller.holder, utcnow())
    except SQLAlchemyError as exc:
        log.error("heartbeat skipped: %s", exc)


def build_scheduler(
    puller: Puller, apps: dict[str, str], retention: RetentionPolicy | None = None
) -> BackgroundScheduler:
    """A scheduler with one job per app, first run now, the heartbeat and the retention job."""
    # One thread per app (up to MAX_THREADS), and one for the heartbeat and retention.
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(min(MAX_THREADS, len(apps)) + 1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        timezone=UTC,
    )
    for app_key, secret in apps.items():
        scheduler.add_job(
            run_due_passes,
            "interval",
            seconds=TICK_SECONDS,
            args=(puller, app_key, secret),
            id=f"pull:{app_key}",
            next_run_time=datetime.now(UTC),
        )
    scheduler.add_job(
        send_heartbeat,
        "interval",
        seconds=HEARTBEAT_SECONDS,
        args=(puller,),
        id="heartbeat",
        next_run_time=datetime.now(UTC),
    )
    if retention and (retention.raw_event_days or retention.record_days):
        scheduler.add_job(
            enforce_retention,
            "interval",
            hours=RETENTION_EVERY_HOURS,
            args=(puller, retention),
            id="retention",
            next_run_time=datetime.now(UTC),
        )
    return scheduler


def run_clock(
    puller: Puller, apps: dict[str, str], retention: RetentionPolicy | None = None
) -> None:
    """Run the scheduler in the foreground until SIGTERM/SIGINT, then stop cleanly."""
    # A draining job skips its next ticks; APScheduler warns about each skip, which is noise.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
    scheduler = build_scheduler(puller, apps, retention)
    with stop_on_signals(puller.stop):
        scheduler.start()
        log.info("clock started: %d app(s), holder %s", len(apps), puller.holder)
        while not puller.stop.wait(1.0):
            pass
        # Waits for running passes, which stop after committing the batch in hand.
        scheduler.shutdown(wait=True)
    log.info("clock stopped")
