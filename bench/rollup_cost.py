"""What the delivery rollup's triggers (migration 0013) cost per callback: the service's write
path with the triggers on and off, alternating rounds on one PostgreSQL database.

    .venv/bin/python -m bench.rollup_cost [--admin-url …/postgres] [--callbacks 4000] [--rounds 2]
                                          [--smoke]

Creates a throwaway database, loads 1,000,000 reports (bench/query.py's loader: realistic
index depth), then per round and per setting (`ALTER TABLE delivery_reports DISABLE/ENABLE
TRIGGER USER`) stores callbacks through `ingest_many`, two ways:
- alone: one one-report callback per transaction (the worst case for a per-statement trigger);
- grouped: 4 threads, each committing groups of 8 callbacks in one transaction (group commit),
  all into the same few 15-minute buckets: the hot-row case a rollup row updated in place would
  serialize on. Lock waits and deadlocks would show as lower throughput and errors.
One callback in 5 carries a later status for an earlier report (the upsert replaces the row).
Prints, per setting, the PostgreSQL backends' CPU per callback (from /proc, so the server must
run on this machine), WAL bytes and wall time per callback, and the ratio on/off. Then the
accounting: every callback's raw event committed once with its record stored, and one report row
per message (the later statuses replaced theirs); exit 1 if it does not add up.

`--smoke` (CI): 3,000 reports, 256 callbacks a measurement, one round; the figures mean nothing
at that size, the accounting decides the exit status as always.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from app.jsms.records import parse_payload
from app.store.db import Database
from app.store.ingest import RawPayload, ingest_many
from app.store.models import Source
from bench.query import _load, _one
from tests.support import throwaway_postgres

TICK = os.sysconf("SC_CLK_TCK")
THREADS, GROUP = 4, 8
# 2026-12-01 00:00Z: the callbacks land in a handful of buckets, as a live minute does.
BASE_MS = 1_796_083_200_000
REPORTS = 1_000_000
# --smoke: reports loaded, callbacks a measurement (a multiple of THREADS * GROUP), rounds.
SMOKE = (3_000, 256, 1)


def main() -> int:
    """Load, measure each setting and mode per round, print; exit 1 if the accounting fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--callbacks", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, one round; only the accounting counts"
    )
    args = parser.parse_args()
    reports, args.callbacks, args.rounds = (
        SMOKE if args.smoke else (REPORTS, args.callbacks, args.rounds)
    )
    with throwaway_postgres(args.admin_url, prefix="jsms_rollup_cost") as url:
        plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
        _load(plain, reports)
        database = Database(url)
        results: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
        serial = 0
        try:
            for _ in range(args.rounds):
                for setting in ("off", "on"):
                    _triggers(plain, setting)
                    for mode, store in (("alone", _alone), ("grouped", _grouped)):
                        run = functools.partial(store, database, serial, args.callbacks)
                        measured = _measure(plain, run)
                        serial += args.callbacks
                        results.setdefault((mode, setting), []).append(measured)
        finally:
            database.engine.dispose()
        _report(results, args.callbacks)
        balanced = _accounts(plain, reports, serial)
    if args.smoke:
        print("smoke run: the code paths ran; the figures mean nothing at this size")
    return 0 if balanced else 1


def _triggers(dsn: str, setting: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        verb = "ENABLE" if setting == "on" else "DISABLE"
        conn.execute(f"ALTER TABLE delivery_reports {verb} TRIGGER USER")


def _message(n: int) -> int:
    """The report callback n is about: its own, or (one in 5) report n - 3's."""
    return n - 3 if n % 5 == 4 else n


def _callback(n: int) -> tuple[RawPayload, Any]:
    """Callback n: a new report, or (one in 5) a later failure for report n - 3."""
    msg = _message(n)
    status, later = (4004, 60_000) if msg != n else (4001, 0)
    data = (
        f'[{{"msgId": "r{msg}", "phone": "138{msg % 10**8:08d}", "status": {status},'
        f' "receiveTime": {BASE_MS + (n % 3600) * 1000 + later}}}]'
    )
    raw = RawPayload("app-alpha", Source.CALLBACK, "SMS_REPORT", data, f"{n:x}", n)
    return raw, parse_payload("SMS_REPORT", json.loads(data))


def _alone(database: Database, first: int, count: int) -> None:
    with database.session() as session:
        for n in range(first, first + count):
            with session.begin():
                ingest_many(session, [_callback(n)])


def _grouped(database: Database, first: int, count: int) -> None:
    errors: list[BaseException] = []

    def worker(start: int) -> None:
        try:
            with database.session() as session:
                for g in range(start, first + count, THREADS * GROUP):
                    group = range(g, min(g + GROUP, first + count))  # not past this measurement
                    with session.begin():
                        ingest_many(session, [_callback(n) for n in group])
        except BaseException as exc:  # a deadlock would land here
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(first + t * GROUP,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"{len(errors)} writer(s) failed, first: {errors[0]!r}")


def _measure(dsn: str, action: Callable[[], None]) -> tuple[float, float, int]:
    """Backend CPU seconds (every backend of the bench database), wall seconds, WAL bytes."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # each measurement starts after one: full-page images alike
        wal = _one(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone())
        before = _backend_cpu(conn)
        wall = time.perf_counter()
        action()
        wall = time.perf_counter() - wall
        cpu = _backend_cpu(conn) - before
        wal_bytes = _one(
            conn.execute(f"SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '{wal}')").fetchone()
        )
    return cpu, wall, int(wal_bytes)


def _backend_cpu(conn: psycopg.Connection[Any]) -> float:
    """CPU seconds used so far by the backends connected to this database (the pool keeps
    its connections, so the same backends are counted before and after)."""
    pids = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    ).fetchall()
    total = 0.0
    for (pid,) in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def _accounts(dsn: str, loaded: int, sent: int) -> bool:
    """Every callback sent (0 … sent-1) has one raw event whose one record was stored (a later
    status replaces its report: stored too), none quarantined; the reports table holds the
    loaded rows plus one per message. Print the tally; whether it adds up."""
    with psycopg.connect(dsn) as conn:
        events, records, stored, other = conn.execute(
            "SELECT count(*), coalesce(sum(records), 0), coalesce(sum(stored), 0),"
            " coalesce(sum(duplicates + quarantined), 0) FROM raw_events"
        ).fetchone() or (0, 0, 0, 0)
        rows = _one(conn.execute("SELECT count(*) FROM delivery_reports").fetchone())
    expected_rows = loaded + len({_message(n) for n in range(sent)})
    balanced = (events, records, stored, other, rows) == (sent, sent, sent, 0, expected_rows)
    print(
        f"accounting: {sent:,} callbacks sent, {events:,} raw events, {stored:,} records stored,"
        f" {other:,} duplicates or quarantined; {rows:,} report rows of {expected_rows:,}"
        f" expected: {'adds up' if balanced else 'DOES NOT ADD UP'}"
    )
    return balanced


def _ratio(after: float, before: float) -> str:
    """after / before, or n/a when nothing was measured before (CPU ticks at tiny sizes)."""
    return f"{after / before:.2f}x" if before else "n/a"


def _report(results: dict[tuple[str, str], list[tuple[float, float, int]]], count: int) -> None:
    for mode in ("alone", "grouped"):
        per: dict[str, tuple[float, float, float]] = {}
        for setting in ("off", "on"):
            rounds = results[(mode, setting)]
            cpu = statistics.median(r[0] for r in rounds) / count * 1000
            wall = statistics.median(r[1] for r in rounds) / count * 1000
            wal = statistics.median(r[2] for r in rounds) / count
            per[setting] = (cpu, wall, wal)
            print(
                f"{mode:<8} triggers {setting:<3}: backend CPU {cpu:.3f} ms/callback, "
                f"wall {wall:.3f} ms/callback ({1000 / wall:,.0f} callbacks/s), "
                f"WAL {wal:,.0f} bytes/callback"
            )
        (c0, w0, l0), (c1, w1, l1) = per["off"], per["on"]
        print(
            f"{mode:<8} ratio on/off: backend CPU {_ratio(c1, c0)}, wall {_ratio(w1, w0)}, "
            f"WAL {_ratio(l1, l0)}"
        )


if __name__ == "__main__":
    sys.exit(main())
