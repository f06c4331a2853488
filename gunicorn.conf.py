"""Gunicorn settings for `web`, read from the working directory (`gunicorn wsgi:app`)."""

import os
import tempfile
from pathlib import Path

# Before prometheus_client is imported anywhere: it picks its value store at import time.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="jsms-metrics-")

from prometheus_client import multiprocess  # noqa: E402

from app.config import EPHEMERAL_STORE_FIX, load_settings  # noqa: E402
from app.logs import gunicorn_logconfig  # noqa: E402

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
# Worker model for a 2-core dyno (measured: bench/README.md, "Callback ingest"): gthread, one
# process per core with 4 threads each. A callback is mostly Python CPU under the GIL plus a few
# PostgreSQL round trips: processes give parallelism, threads overlap the waits and keep-alive.
# More processes or threads bought no throughput on 2 cores, only memory, GIL churn and database
# connections; 4 threads stay within each process's pool of 5 connections.
# WEB_CONCURRENCY is what Heroku-style platforms set per dyno size; it is always honoured.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = 25

# JSON lines like the service's own; the path without the query string, which may hold a phone.
logconfig_dict = gunicorn_logconfig(os.environ.get("LOG_LEVEL", "INFO").upper())
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'


def on_starting(server: object) -> None:
    """Refuse to serve from a store the platform will wipe; then start from no metric files:
    counters restart with the master. Only prometheus's own files are removed, whatever else
    the directory holds."""
    problem = load_settings().ephemeral_store_problem()
    if problem:
        raise SystemExit(f"refusing to start web: {problem}; {EPHEMERAL_STORE_FIX}")
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for kind in ("counter", "gauge", "histogram", "summary"):
        for stale in directory.glob(f"{kind}_*.db"):
            stale.unlink(missing_ok=True)


def child_exit(server: object, worker: object) -> None:
    """Let a dead worker's live gauges go; its counters stay summed."""
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
