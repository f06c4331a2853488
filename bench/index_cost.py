"""What the indexes cost per receipt: PostgreSQL backend CPU per stored callback, on the schema
before migration 0010 and after it, alternating rounds on one database.

    .venv/bin/python bench/index_cost.py [--admin-url …/postgres] [--receipts 20000] [--rounds 2]

Creates a throwaway database, loads 1,000,000 reports and 1,000,000 raw events (as bench/query.py
and bench/index_audit.py do: realistic index depth), then each round stores `--receipts`
one-report callbacks through the service's write path (`ingest_or_quarantine`, one transaction
and commit each), at revision 0009 and then at 0010. The backend's CPU comes from
/proc/<pid>/stat, so PostgreSQL must run on this machine; WAL bytes from the insert position.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import psycopg
from alembic import command

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.jsms.records import MAX_CALLBACK_ITEMS, parse_payload  # noqa: E402
from app.store.db import Database  # noqa: E402
from app.store.ingest import RawPayload, ingest_or_quarantine  # noqa: E402
from app.store.models import Source  # noqa: E402
from app.store.schema import alembic_config  # noqa: E402
from bench.index_audit import _load_raw_events  # noqa: E402
from bench.query import _load  # noqa: E402
from tests.support import throwaway_postgres  # noqa: E402

BEFORE, AFTER = "0009", "0010"
TICK = os.sysconf("SC_CLK_TCK")
WAL_NOW = "SELECT pg_current_wal_insert_lsn()::text"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--receipts", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with throwaway_postgres(args.admin_url, prefix="jsms_index_cost") as url:
        plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
        _load(plain, 1_000_000)
        with psycopg.connect(plain, autocommit=True) as conn:
            _load_raw_events(conn, 1_000_000)
        serial = 0
        for round_number in range(args.rounds):
            for revision in (BEFORE, AFTER):
                migrate = command.downgrade if revision == BEFORE else command.upgrade
                migrate(alembic_config(url), revision)
                cpu, wall, wal = _store(url, serial, args.receipts)
                serial += args.receipts
                print(
                    f"round {round_number + 1} at {revision}: {args.receipts:,} callbacks, "
                    f"backend CPU {cpu / args.receipts * 1000:.3f} ms/callback, "
                    f"WAL {wal / args.receipts:,.0f} bytes/callback, "
                    f"wall {wall / args.receipts * 1000:.3f} ms/callback"
                )


def _store(url: str, first: int, count: int) -> tuple[float, float, int]:
    """Store `count` callbacks, one transaction each; the backend's CPU seconds, the wall
    seconds and the WAL bytes they took."""
    database = Database(url)
    try:
        with database.session() as session:
            connection = session.connection()
            # Each round starts right after a checkpoint: full-page images alike in both.
            connection.exec_driver_sql("CHECKPOINT")
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            wal = connection.exec_driver_sql(WAL_NOW).scalar_one()
            session.commit()
            cpu, wall = _cpu(pid), time.perf_counter()
            for n in range(first, first + count):
                data = (
                    f'[{{"msgId": "c{n}", "phone": "138{n % 10**8:08d}", "status": 4001,'
                    f' "receiveTime": {1714521600000 + n}}}]'
                )
                batch = parse_payload("SMS_REPORT", json.loads(data), max_items=MAX_CALLBACK_ITEMS)
                raw = RawPayload("app-alpha", Source.CALLBACK, "SMS_REPORT", data, f"{n:x}", n)
                with session.begin():
                    ingest_or_quarantine(session, raw, batch)
            cpu, wall = _cpu(pid) - cpu, time.perf_counter() - wall
            wal_bytes = session.connection().exec_driver_sql(
                f"SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '{wal}')"
            )
            return cpu, wall, int(wal_bytes.scalar_one())
    finally:
        database.engine.dispose()


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


if __name__ == "__main__":
    main()
