"""Which index serves which query: every index on delivery_reports and raw_events against the
statements the service really runs, on the database `bench/query.py --keep` leaves.

    .venv/bin/python bench/query.py --keep          # the database's name: psql -l | grep bench
    .venv/bin/python bench/index_audit.py postgresql://postgres@127.0.0.1:5432/jsms_bench_… \
        [--drop ix_a,ix_b]                          # drop these first (a throwaway database!)

Adds 1,000,000 raw events (30 days, 3 apps, 1 in 2,000 quarantined) if the table is empty, and
2,000 reports of a fourth, small app (apps differ in size in production; the bench's three are
equal), then
runs the real code paths (API through the Flask test client, stats, status page and metrics
queries, last-callback times, retention, reprocess, the BI views) with a listener that runs
`EXPLAIN (ANALYZE, FORMAT JSON)` on each SELECT they send, on a second connection. Prints each
scenario with the indexes its plans use and its execution time, then each index with the
scenarios that used it ("none" marks a candidate to drop: every insert pays for it).
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app  # noqa: E402
from app.config import Settings  # noqa: E402
from app.ops import status  # noqa: E402
from app.ops.scrape import StoreCollector  # noqa: E402
from app.store import retention, seen  # noqa: E402
from app.store.models import RawEvent  # noqa: E402

TOKEN = "bench-token"
APPS = ("app-alpha", "app-beta", "app-gamma")
SMALL_APP = "app-delta"
START = datetime(2024, 5, 1, tzinfo=UTC)
DAYS = 30
NOW = START + timedelta(days=DAYS)
TABLES = ("delivery_reports", "raw_events")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dsn", help="the database bench/query.py --keep left")
    parser.add_argument("--drop", default="", help="indexes to drop first, comma-separated")
    args = parser.parse_args()
    url = args.dsn.replace("postgresql://", "postgresql+psycopg://")
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM raw_events LIMIT 1").fetchone():
            _load_raw_events(conn, 1_000_000)
        if not conn.execute(
            "SELECT 1 FROM delivery_reports WHERE app_key = %s LIMIT 1", (SMALL_APP,)
        ).fetchone():
            _load_small_app(conn, 2_000)
        for name in filter(None, args.drop.split(",")):
            conn.execute(f'DROP INDEX IF EXISTS "{name}"')
        indexes = [
            (table, name)
            for table, name in conn.execute(
                "SELECT tablename, indexname FROM pg_indexes WHERE tablename = ANY(%s)"
                " ORDER BY tablename, indexname",
                (list(TABLES),),
            )
        ]
        settings = Settings(_env_file=None, database_url=url, api_tokens=(TOKEN,))  # type: ignore[call-arg]
        app = create_app(settings)
        engine = app.extensions["database"].engine
        used: dict[str, list[str]] = defaultdict(list)
        scenario = [""]

        @event.listens_for(engine, "before_cursor_execute")
        def _explain(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
            if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
                return
            if "committed_horizon" in statement:  # max(id) inside plpgsql: the primary key
                used[scenario[0]].append("pk (max(id))")
                return
            plan = conn.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters
            ).fetchone()[0][0]
            names = sorted(set(_index_names(plan["Plan"])))
            kinds = sorted(set(_scans(plan["Plan"])))
            used[scenario[0]].append(
                f"{'+'.join(names) or 'no index'} [{', '.join(kinds)}] "
                f"{plan['Execution Time']:.1f} ms"
            )

        for label, action in _scenarios(app, conn):
            scenario[0] = label
            action()
        print("| scenario | plan: indexes [scan nodes], execution time |\n|---|---|")
        for label, plans in used.items():
            print(f"| {label} | {'; '.join(dict.fromkeys(plans))} |")
        print("\n| index | used by |\n|---|---|")
        for _table, name in indexes:
            users = [label for label, plans in used.items() if any(name in p for p in plans)]
            print(f"| `{name}` | {', '.join(users) or 'none'} |")
    return 0


def _scenarios(app: Any, conn: psycopg.Connection[Any]) -> Iterator[tuple[str, Callable[[], Any]]]:
    client = app.test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    day = (START + timedelta(days=12)).isoformat()
    next_day = (START + timedelta(days=13)).isoformat()
    phone = conn.execute("SELECT phone FROM delivery_reports WHERE id = 777777").fetchone()[0]

    def api(path: str, **query: str) -> Callable[[], Any]:
        def call() -> None:
            response = client.get(f"/api/v1{path}", query_string=query, headers=headers)
            assert response.status_code == 200, response.get_data(as_text=True)

        return call

    def sql(text: str) -> Callable[[], Any]:
        def run() -> None:
            with app.extensions["database"].engine.connect() as connection:
                connection.exec_driver_sql(text).all()

        return run

    def in_session(action: Callable[[Any], Any]) -> Callable[[], Any]:
        def run() -> None:
            with app.app_context(), app.extensions["database"].session() as session:
                action(session)

        return run

    yield "API msg_id", api("/reports", msg_id="10000123456")
    yield "API app_key+msg_id", api("/reports", app_key=APPS[0], msg_id="10000123456")
    yield "API phone", api("/reports", phone=phone)
    yield "API app_key (first page)", api("/reports", app_key=APPS[1])
    yield "API app_key+day", api("/reports", app_key=APPS[1], since=day, until=next_day)
    yield (
        "API app_key+day+delivered=false",
        api("/reports", app_key=APPS[1], since=day, until=next_day, delivered="false"),
    )
    yield "API small app (first page)", api("/reports", app_key=SMALL_APP)
    yield "API small app+day", api("/reports", app_key=SMALL_APP, since=day, until=next_day)
    yield "API app_key+status", api("/reports", app_key=APPS[1], status="4010")
    yield "API status=4010", api("/reports", status="4010")
    yield "API status+day", api("/reports", status="4010", since=day, until=next_day)
    yield "API day (all apps)", api("/reports", since=day, until=next_day)
    yield "API delivered=false", api("/reports", delivered="false")
    yield "API source=pull", api("/reports", source="pull")
    yield "API no filter", api("/reports")
    yield (
        "API stats app 30 days",
        api("/stats/delivery", app_key=APPS[0], since=START.isoformat(), until=NOW.isoformat()),
    )
    yield "API stats all apps 1 day", api("/stats/delivery", since=day, until=next_day)
    yield "status: callbacks last day", in_session(lambda s: status._callbacks_last_day(s, NOW))
    yield (
        "status: 14-day chart",
        in_session(lambda s: status._daily_rates(s, NOW, app.config["SETTINGS"].business_zone())),
    )
    yield "status: quarantined", in_session(status._quarantined)
    yield "last callback per app+kind", in_session(lambda s: seen.last_callbacks(s, APPS))
    collector = StoreCollector(app.extensions["database"], APPS)
    yield "metrics: quarantined count", lambda: list(collector.collect())
    yield (
        "reprocess: quarantined after id",
        in_session(
            lambda s: s.scalars(
                select(RawEvent)
                .where(RawEvent.quarantined > 0, RawEvent.id > 0)
                .order_by(RawEvent.id)
                .limit(100)
            ).all()
        ),
    )
    yield (
        "BI daily_delivery_rate, one app",
        sql(f"SELECT * FROM daily_delivery_rate WHERE app_key = '{APPS[0]}'"),
    )
    yield (
        "BI failures_by_status, one app",
        sql(f"SELECT * FROM failures_by_status WHERE app_key = '{APPS[0]}'"),
    )
    yield (
        "BI daily_delivery_rate_utc, one day",
        sql("SELECT * FROM daily_delivery_rate_utc WHERE day = '2024-05-13'"),
    )
    # Retention last: the second run deletes (one batch per table).
    yield (
        "retention, nothing expired",
        in_session(lambda s: retention.purge(s, retention.RetentionPolicy(400, 400), NOW, 1)),
    )
    yield (
        "retention, 20 of 30 days expired",
        in_session(lambda s: retention.purge(s, retention.RetentionPolicy(10, 10), NOW, 1)),
    )


def _index_names(node: dict[str, Any]) -> Iterator[str]:
    if "Index Name" in node:
        yield node["Index Name"]
    for child in node.get("Plans", ()):
        yield from _index_names(child)


def _scans(node: dict[str, Any]) -> Iterator[str]:
    if "Scan" in node["Node Type"]:
        yield node["Node Type"]
    for child in node.get("Plans", ()):
        yield from _scans(child)


def _load_small_app(conn: psycopg.Connection[Any], count: int) -> None:
    """`count` reports of one more app, spread over the same 30 days, arriving among the rest."""
    rng = random.Random(14)
    columns = "app_key, msg_id, phone, status, delivered, received_at, source, ingested_at"
    with conn.cursor() as cur, cur.copy(f"COPY delivery_reports ({columns}) FROM STDIN") as copy:
        for n in range(count):
            at = START + timedelta(seconds=rng.random() * DAYS * 86400)
            status = 4001 if n % 12 else 4003
            row = (SMALL_APP, str(20_000_000_000 + n), f"139{n:08d}", status, status == 4001)
            copy.write_row((*row, at, "callback", at))
    conn.execute("VACUUM ANALYZE delivery_reports")


def _load_raw_events(conn: psycopg.Connection[Any], count: int) -> None:
    """`count` raw events in arrival order: mostly one-report callbacks, some replies, a pulled
    batch now and then, 1 in 2,000 quarantined."""
    rng = random.Random(13)
    offsets = sorted(rng.random() * DAYS * 86400 for _ in range(count))
    columns = (
        "app_key, source, type, payload, nonce, callback_timestamp, received_at, records, stored,"
        " duplicates, quarantined, quarantine_reason"
    )
    with conn.cursor() as cur, cur.copy(f"COPY raw_events ({columns}) FROM STDIN") as copy:
        for n, offset in enumerate(offsets):
            at = START + timedelta(seconds=offset)
            pulled = n % 40 == 0
            kind = "SMS_REPLY" if n % 10 == 3 else "SMS_REPORT"
            quarantined = 1 if n % 2000 == 7 else 0
            payload = f'[{{"msgId": {n}, "status": 4001, "phone": "13800138000"}}]'
            copy.write_row(
                (
                    APPS[n % 3],
                    "pull" if pulled else "callback",
                    kind,
                    payload,
                    None if pulled else f"{n:x}",
                    None if pulled else int(at.timestamp() * 1000),
                    at,
                    1,
                    1 - quarantined,
                    0,
                    quarantined,
                    "#0: unreadable" if quarantined else None,
                )
            )
    conn.execute("VACUUM ANALYZE raw_events")


if __name__ == "__main__":
    sys.exit(main())
