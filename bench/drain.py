"""Pull drain benchmark: how close the puller gets to one call per upstream window.

Drains a backlog from the fake JSMS (tests/fake_jsms.py) into a fresh SQLite file and a
throwaway PostgreSQL database, and prints calls, ideal time (calls × window), measured time,
drain efficiency (ideal / measured) and how many 50201 answers the puller provoked.

    .venv/bin/python bench/drain.py --reports 20000 --window 0.2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

# Run as a plain script from anywhere: the fake lives in the repository's tests package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.jsms.client import JsmsClient  # noqa: E402
from app.pull.puller import Puller  # noqa: E402
from app.pull.state import SyncPolicy  # noqa: E402
from app.store.db import Database, upgrade_to_head  # noqa: E402
from tests.fake_jsms import FakeJsms  # noqa: E402

APP, SECRET = "bench-app", "bench-secret"


@contextmanager
def sqlite_url() -> Iterator[str]:
    """A migrated SQLite file in a temporary directory."""
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.sqlite3"
        upgrade_to_head(url)
        yield url


@contextmanager
def postgres_url(admin_url: str) -> Iterator[str]:
    """A migrated throwaway PostgreSQL database, dropped afterwards."""
    name = f"jsms_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    url = f"{base}/{name}"
    try:
        upgrade_to_head(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def drain(url: str, reports: int, window: float) -> dict[str, float]:
    """Drain `reports` from a fresh fake into `url`; the figures of that drain."""
    fake = FakeJsms({APP: SECRET}, window=window).start()
    fake.add_reports(APP, reports)
    database = Database(url)
    try:
        with JsmsClient(fake.url) as client:
            puller = Puller(database, client, SyncPolicy(window=window))
            started = time.perf_counter()
            [result] = puller.sync_app(APP, SECRET, ["report"])
            measured = time.perf_counter() - started
    finally:
        database.engine.dispose()
        fake.stop()
    ideal = result.calls * window
    return {
        "calls": result.calls,
        "stored": result.stored,
        "pending upstream": fake.pending(APP, "report"),
        "ideal s": ideal,
        "measured s": measured,
        "efficiency": ideal / measured,
        "50201": len(fake.calls_with(50201)),
    }


def main() -> int:
    """Run the drain on each backend and print a table; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--window", type=float, default=0.2)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--postgres-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres"
    )
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(f"drain of {args.reports} reports, window {args.window}s (target ≥ 0.95, zero 50201)")
    print(f"{'backend':<11} {'calls':>5} {'stored':>7} {'ideal s':>8} {'measured s':>10} "
          f"{'efficiency':>10} {'50201':>5}")  # fmt: skip
    ok = True
    for backend in backends:
        database = sqlite_url() if backend == "sqlite" else postgres_url(args.postgres_admin_url)
        with database as url:
            r = drain(url, args.reports, args.window)
        print(f"{backend:<11} {r['calls']:>5.0f} {r['stored']:>7.0f} {r['ideal s']:>8.2f} "
              f"{r['measured s']:>10.2f} {r['efficiency']:>10.3f} {r['50201']:>5.0f}")  # fmt: skip
        ok = ok and r["efficiency"] >= 0.95 and r["50201"] == 0
        ok = ok and r["stored"] == args.reports and r["pending upstream"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
