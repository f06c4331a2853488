"""Gunicorn settings for `web` (`gunicorn --config python:app.gunicorn_config wsgi:app`).

Worker model, for a 2-core dyno (measured in bench/README.md): gthread, one process per core
(WEB_CONCURRENCY, default 2) with 4 threads each. A callback is mostly Python CPU (held under the
GIL) plus a few PostgreSQL round trips: processes give parallelism, threads overlap the waits
and keep connections alive. More processes or threads did not add throughput on 2 cores, only
memory, GIL churn and database connections; 4 threads stay within each process's pool of 5.
"""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
# WEB_CONCURRENCY is what Heroku-style platforms set per dyno size; it is always honoured.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = 25
accesslog = "-"
