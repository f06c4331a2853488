"""The group writer's own CPU, in process: `write_group` on PostgreSQL at fixed group sizes.

    .venv/bin/python -m bench.ingest.writer [--sizes 1,2,6,16] [--repeats 7] [--admin-url …]

Creates a throwaway database, then per group size stores fresh signed SMS_REPORT callbacks (one
report each, as `bench/ingest` sends) through `write_group`, the writer thread's call, in
`--repeats` runs of ≈300 callbacks, and prints the median client CPU (`time.process_time`:
Python, SQLAlchemy, psycopg, the socket calls) per callback. No gunicorn, no HTTP, no other
thread: what bench/ingest's budget calls the writer, without the noise of a loaded machine's
scheduling. To compare two versions of the store, run this file with each on `PYTHONPATH`.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

from app.jsms.callback import SignedUse, digest_of
from app.jsms.records import parse_payload
from app.store.db import Database
from app.store.group import Pending, write_group
from app.store.ingest import RawPayload
from app.store.models import Source
from tests.support import ADMIN_URL, throwaway_postgres


def callbacks(rng: random.Random, count: int) -> list[Pending]:
    """`count` verified one-report callbacks, each with its own signed triple and msgId."""
    now_ms = int(time.time() * 1000)
    made = []
    for _ in range(count):
        data = json.dumps({
            "msgId": f"w{rng.getrandbits(60)}", "status": 4001, "receiveTime": now_ms - 5000,
            "phone": f"13{rng.randrange(10**9):09d}",
        }, separators=(",", ":"))  # fmt: skip
        nonce, timestamp = str(rng.getrandbits(62)), now_ms + rng.randrange(10**6)
        use = SignedUse("bench", nonce, timestamp, digest_of("SMS_REPORT", data))
        raw = RawPayload("bench", Source.CALLBACK, "SMS_REPORT", data, nonce, timestamp)
        made.append(Pending(use, raw, parse_payload("SMS_REPORT", json.loads(data))))
    return made


def cpu_per_callback(database: Database, rng: random.Random, size: int, groups: int) -> float:
    """Microseconds of this process's CPU per callback, storing `groups` groups of `size`."""
    batches = [callbacks(rng, size) for _ in range(groups)]
    started = time.process_time()
    for group in batches:
        write_group(database, group)
    return (time.process_time() - started) / (size * groups) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,2,6,16", help="group sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=7, help="runs per size (median)")
    parser.add_argument("--admin-url", default=ADMIN_URL)
    args = parser.parse_args()
    rng = random.Random(27)
    with throwaway_postgres(args.admin_url, prefix="jsms_bench") as url:
        database = Database(url)
        try:
            cpu_per_callback(database, rng, 6, 50)  # warm: compiled SQL, prepared statements
            for size in (int(s) for s in args.sizes.split(",")):
                groups = max(30, 300 // size)
                runs = [cpu_per_callback(database, rng, size, groups) for _ in range(args.repeats)]
                print(
                    f"group of {size:2d}: {statistics.median(runs):7.1f} us of client CPU a "
                    f"callback (median of {args.repeats} runs of {groups * size})",
                    flush=True,
                )
        finally:
            database.engine.dispose()
            database.reader_engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
