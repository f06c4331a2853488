"""Gunicorn settings for `web`, read from the working directory (`gunicorn wsgi:app`).

Every value comes from the service's Settings (the environment and `.env`), loaded once here in
the master: a configuration error stops gunicorn with its message and a non-zero exit, before
any worker starts (a worker that failed to boot would only be respawned, forever).
"""

import json
import os
import tempfile
from pathlib import Path
from typing import Any

# prometheus_client picks its multiprocess mode when first imported (importing app does that),
# if PROMETHEUS_MULTIPROC_DIR is set then; each worker reads the directory itself later. So a
# temporary directory stands in while app is imported, and Settings (environment and .env) then
# name the real one. The workers inherit the variable.
_TEMPORARY = tempfile.mkdtemp(prefix="jsms-metrics-")
_GIVEN = os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _TEMPORARY

from app.config import EPHEMERAL_STORE_FIX, load_settings  # noqa: E402

if _GIVEN is None:
    del os.environ["PROMETHEUS_MULTIPROC_DIR"]
else:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _GIVEN
settings = load_settings()
os.environ["PROMETHEUS_MULTIPROC_DIR"] = settings.prometheus_multiproc_dir or _TEMPORARY

from gunicorn.glogging import Logger  # noqa: E402
from prometheus_client import multiprocess  # noqa: E402

from app.callbacks import is_callback_post  # noqa: E402
from app.logs import gunicorn_logconfig  # noqa: E402

bind = f"0.0.0.0:{settings.port}"
# Worker model for a 2-core dyno (measured: bench/README.md, "Callback ingest"): gthread, one
# process per core with 16 threads each. A callback is Python CPU under the GIL, then a wait for
# its group commit (app/store/group.py): processes give parallelism, and the threads are the
# callbacks that can wait together, i.e. how large a group can grow. Waiting callbacks hold no
# database connection (the writer holds one), so threads cost no connections; 16 doubled the
# throughput of 4, and 32 bought nothing more.
# WEB_CONCURRENCY is what Heroku-style platforms set per dyno size; it is always honoured.
workers = settings.web_concurrency
worker_class = "gthread"
threads = settings.gunicorn_threads
timeout = 30
graceful_timeout = 25

# JSON lines like the service's own; the path without the query string, which may hold a phone
# (the path of an opt-out lookup holds one: MaskPhones masks it, as in every log line).
logconfig_dict = gunicorn_logconfig(settings.log_level.upper())
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'


class AccessLogWithoutCallbacks(Logger):
    """gunicorn's logger, minus the access line of a callback POST: the callback's own line
    (app/callbacks.py) already says status, outcome and duration, and the platform's router
    logs every request too. One line per callback instead of two; other routes keep theirs."""

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if is_callback_post(environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")):
            return  # before gunicorn builds the line's atoms: that is most of its cost
        super().access(resp, req, environ, request_time)


logger_class = AccessLogWithoutCallbacks


# gthread has no read timeout: a client that sends part of a request and stalls holds one of
# the worker's threads for as long as it likes, and a few such connections starve /healthz and
# the callbacks (measured: README, Guarantees). Every connection handed to a thread gets this
# socket timeout (seconds a read or write may stall); 0 turns it off.
read_timeout = settings.gunicorn_read_timeout


# What gunicorn's own refusals (a request it cannot parse) say in the contract's error codes.
GUNICORN_ERROR_CODES = {
    400: "bad_request",
    403: "forbidden",
    431: "request_header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
}


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's `util.write_error`, answering the contract's JSON error instead of an HTML
    page: a request gunicorn refuses before the app sees it (a request line over 4,094 bytes,
    a malformed header) gets `{"error": {"code", "message"}}` like every other error."""
    from gunicorn import util

    code = GUNICORN_ERROR_CODES.get(status_int, "bad_request")
    body = json.dumps({"error": {"code": code, "message": mesg or reason}})  # ASCII
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, (head + body).encode("latin-1"))


def post_fork(server: object, worker: object) -> None:
    """Answer gunicorn's own refusals in JSON (`write_json_error`); give each connection a
    socket timeout when a thread takes it (gthread's TConn.init)."""
    from gunicorn import util

    util.write_error = write_json_error
    if read_timeout <= 0:
        return
    from gunicorn.workers import gthread

    original_init = gthread.TConn.init

    def init_with_timeout(conn: gthread.TConn) -> None:
        original_init(conn)  # sets the socket blocking, i.e. with no timeout
        conn.sock.settimeout(read_timeout)

    gthread.TConn.init = init_with_timeout  # type: ignore[method-assign]


def on_starting(server: object) -> None:
    """Refuse to serve from a store the platform will wipe; then start from no metric files:
    counters restart with the master. Only prometheus's own files are removed, whatever else
    the directory holds."""
    problem = settings.ephemeral_store_problem()
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
