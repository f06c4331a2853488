"""Pull drain benchmark: N apps drained side by side, against one app's time and the upstream's
ideal.

Each run queues `--reports` reports per app on the fake JSMS (tests/fake_jsms.py, a real HTTP
server enforcing the per-app window), and drains them through the clock's own dispatcher
(`app/pull/dispatch.py`: one pass per due app, both kinds, `--max-parallel` at once) into a
fresh SQLite file or throwaway PostgreSQL database. One app is always drained first: its time is
the reference the others are held to, measured in the same run on the same machine.

    .venv/bin/python -m bench.drain --apps 1 10 40 --reports 1500 --window 5

Run from the repository's root (the fake is imported from the tests package). `--smoke` exits 0
whatever the timings, but still 1 when a record is lost, stored twice or left upstream.

Columns: calls per app (C); ideal = (C - 1) × window (the first call needs no wait); measured
wall time from the first dispatch to the last pass ending; efficiency = ideal / measured;
x one app = measured / the one-app measured time; 50201 answers provoked; records stored vs
handed out; the most database connections in use at once; errors logged; the longest a
connection was held. Exit 1 when a target is
missed: x one app <= 1.5, zero 50201, every record handed out stored exactly once.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select

from app.config import Settings
from app.jsms.client import JsmsClient
from app.pull.clock import CLOCK_POOL_TIMEOUT_SECONDS
from app.pull.dispatch import Dispatcher
from app.pull.puller import Puller
from app.pull.state import SyncPolicy
from app.store.db import Database
from app.store.models import DeliveryReport
from app.store.schema import upgrade_to_head
from tests.fake_jsms import FakeJsms
from tests.support import throwaway_postgres

TARGET_RATIO = 1.5


@contextmanager
def sqlite_url() -> Iterator[str]:
    """A migrated SQLite file in a temporary directory."""
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.sqlite3"
        upgrade_to_head(url)
        yield url


def postgres_url(admin_url: str) -> AbstractContextManager[str]:
    """A migrated throwaway PostgreSQL database, dropped afterwards (the tests' own helper)."""
    return throwaway_postgres(admin_url, prefix="jsms_bench")


class ConnectionGauge:
    """The most pooled connections checked out at once, and the longest a pass held one."""

    def __init__(self, database: Database) -> None:
        self.in_use = self.peak = 0
        self.longest_hold = 0.0
        self._lock = threading.Lock()
        event.listen(database.engine, "checkout", self._out)
        event.listen(database.engine, "checkin", self._in)

    def _out(self, _dbapi: Any, record: Any, _proxy: Any) -> None:
        record.info["bench_out"] = time.perf_counter()
        with self._lock:
            self.in_use += 1
            self.peak = max(self.peak, self.in_use)

    def _in(self, _dbapi: Any, record: Any) -> None:
        held = time.perf_counter() - record.info.pop("bench_out", time.perf_counter())
        with self._lock:
            self.in_use -= 1
            self.longest_hold = max(self.longest_hold, held)


class ErrorCount(logging.Handler):
    """Counts the service's ERROR lines (a pass skipped, a batch not stored)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def drain(url: str, apps: int, reports: int, window: float, max_parallel: int) -> dict[str, float]:
    """Drain `reports` per app for `apps` apps from a fresh fake into `url`, as the clock does."""
    keys = {f"bench-{i:03d}": f"secret-{i}" for i in range(apps)}
    fake = FakeJsms(keys, window=window).start()
    for key in keys:
        fake.add_reports(key, reports, prefix=f"{key}-")
    database = Database(url, pool_timeout=CLOCK_POOL_TIMEOUT_SECONDS)  # as the clock has it
    gauge, errors = ConnectionGauge(database), ErrorCount()
    logging.getLogger("app").addHandler(errors)
    spool = Path(tempfile.mkdtemp(prefix="jsms-bench-spool-"))
    try:
        with JsmsClient(fake.url) as client:
            dispatcher = Dispatcher(
                Puller(database, client, SyncPolicy(window=window), spool=spool), keys, max_parallel
            )
            started = time.perf_counter()
            while dispatcher.dispatch() or dispatcher.running():
                dispatcher.wake.wait(1.0)
                dispatcher.wake.clear()
            measured = time.perf_counter() - started
            dispatcher.shutdown()
        with database.session() as session:
            stored = session.scalar(select(func.count(DeliveryReport.id))) or 0
    finally:
        logging.getLogger("app").removeHandler(errors)
        database.engine.dispose()
        fake.stop()
    # The drain's own calls (an app drained early may already have been polled again).
    calls = min(len([c for c in fake.calls if c.app_key == key]) for key in keys)
    ideal = (calls - 1) * window
    return {
        "calls": calls,
        "handed out": sum(len(fake.handed_out(k, "report")) for k in keys),
        "pending": sum(fake.pending(k, "report") for k in keys),
        "stored": stored,
        "ideal": ideal,
        "measured": measured,
        "efficiency": ideal / measured,
        "50201": len(fake.calls_with(50201)),
        "connections": gauge.peak,
        "longest hold": gauge.longest_hold,
        "errors": errors.count,
    }


def main() -> int:
    """Drain 1 app, then each N, on each backend; print a table; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", type=int, nargs="+", default=[1, 10, 40])
    parser.add_argument("--reports", type=int, default=1500, help="queued per app")
    parser.add_argument("--window", type=float, default=5.0, help="JSMS: 5")
    parser.add_argument(
        "--max-parallel", type=int, default=Settings.model_fields["pull_max_parallel_apps"].default
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--postgres-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="exit 0 whatever the timings (CI; tiny sizes)"
    )
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    counts = [1] + [n for n in args.apps if n != 1]
    print(
        f"{args.reports} reports per app, window {args.window}s, at most {args.max_parallel} "
        f"apps at once (targets: x one app <= {TARGET_RATIO}, zero 50201, each record stored "
        "once)"
    )
    print(f"{'backend':<10} {'apps':>4} {'calls':>5} {'stored':>7} {'ideal s':>7} "
          f"{'measured s':>10} {'efficiency':>10} {'x one app':>9} {'50201':>5} {'conns':>5} "
          f"{'errors':>6} {'hold s':>6}")  # fmt: skip
    ok = True
    for backend in backends:
        one_app = None
        for apps in counts:
            admin = args.postgres_admin_url
            database = sqlite_url() if backend == "sqlite" else postgres_url(admin)
            with database as url:
                r = drain(url, apps, args.reports, args.window, args.max_parallel)
            one_app = one_app or r["measured"]
            ratio = r["measured"] / one_app
            print(f"{backend:<10} {apps:>4} {r['calls']:>5.0f} {r['stored']:>7.0f} "
                  f"{r['ideal']:>7.2f} {r['measured']:>10.2f} {r['efficiency']:>10.3f} "
                  f"{ratio:>9.2f} {r['50201']:>5.0f} {r['connections']:>5.0f} "
                  f"{r['errors']:>6.0f} {r['longest hold']:>6.2f}")  # fmt: skip
            ok = ok and (args.smoke or ratio <= TARGET_RATIO and r["50201"] == 0)
            ok = ok and r["pending"] == 0
            ok = ok and r["stored"] == r["handed out"] == apps * args.reports
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
