"""Per-request plumbing of a callback, per call in µs: the log line, gunicorn's access line, the
form, the metrics. Each before (the general machinery) against after (what app/ does now).

    .venv/bin/python bench/plumbing.py [--number 20000]

Runs in prometheus's multiprocess mode (a temporary PROMETHEUS_MULTIPROC_DIR), as under gunicorn.
The "before" log formatter is python-json-logger's, measured when it is installed
(`pip install python-json-logger`; the service no longer depends on it).
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import tempfile
import timeit
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-metrics-")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask, request  # noqa: E402
from gunicorn.config import Config  # noqa: E402
from gunicorn.glogging import Logger  # noqa: E402

from app import callbacks  # noqa: E402
from app.logs import JsonLines, MaskPhones, gunicorn_logconfig  # noqa: E402
from app.metrics import CALLBACKS, RECORDS  # noqa: E402
from tests.wire import report, signed_form  # noqa: E402

FIELDS = {
    "event": "callback",
    "app_key": "app-one",
    "type": "SMS_REPORT",
    "status": 200,
    "outcome": "stored",
    "duration_ms": 3.21,
    "stored": 1,
    "duplicates": 0,
    "quarantined": 0,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000)
    number = parser.parse_args().number
    rows = [
        ("callback log line: python-json-logger", _log_line(_python_json_logger())),
        ("callback log line: JsonLines (orjson)", _log_line(JsonLines())),
        ("access line, callback POST: gunicorn", _access(Logger)),
        ("access line, callback POST: skipped", _access(_skipping_logger())),
        *_form(),
        ("metrics: labels() per callback", _metrics_by_labels),
        ("metrics: cached children", _metrics_cached),
    ]
    for label, action in rows:
        if action is None:
            print(f"{label:<42} (not installed)")
            continue
        best = min(timeit.repeat(action, number=number, repeat=5)) / number
        print(f"{label:<42} {best * 1e6:7.1f} µs")


def _log_line(formatter: logging.Formatter | None) -> Callable[[], None] | None:
    """Make, mask and format the callback's INFO line, as the handler does."""
    if formatter is None:
        return None
    logger = logging.getLogger("app.callbacks")
    mask = MaskPhones()

    def line() -> None:
        record = logger.makeRecord(logger.name, logging.INFO, "f", 1, "callback", None, None)
        record.__dict__.update(FIELDS)
        mask.filter(record)
        formatter.format(record)

    return line


def _python_json_logger() -> logging.Formatter | None:
    try:
        from pythonjsonlogger.json import JsonFormatter
    except ImportError:
        return None
    return JsonFormatter(  # the service's configuration before issue 13
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        timestamp=False,
    )


def _skipping_logger() -> type[Logger]:
    class Skipping(Logger):  # what gunicorn.conf.py's AccessLogWithoutCallbacks does
        def access(self, resp, req, environ, request_time):  # type: ignore[no-untyped-def]
            if callbacks.is_callback_post(environ["REQUEST_METHOD"], environ["PATH_INFO"]):
                return
            super().access(resp, req, environ, request_time)

    return Skipping


def _access(logger_class: type[Logger]) -> Callable[[], None]:
    """gunicorn's access() for a callback POST, into a JSON handler writing to memory."""
    config = Config()
    config.set("accesslog", "-")
    config.set("logconfig_dict", gunicorn_logconfig("INFO"))
    config.set("access_log_format", '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms')
    logger = logger_class(config)
    for handler in logging.getLogger("gunicorn.access").handlers:
        handler.setStream(io.StringIO())  # type: ignore[attr-defined]
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/callbacks/jsms",
        "RAW_URI": "/callbacks/jsms",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.1",
        "QUERY_STRING": "",
    }
    headers = [("HOST", "x"), ("CONTENT-TYPE", callbacks.URLENCODED), ("CONTENT-LENGTH", "300")]
    req = SimpleNamespace(headers=headers)
    resp = SimpleNamespace(status="200 OK", sent=44, headers=[("Content-Type", "x")])
    took = timedelta(milliseconds=3)
    return lambda: logger.access(resp, req, environ, took)


def _form() -> list[tuple[str, Callable[[], None]]]:
    """A signed one-report callback body: the request context alone, then reading its fields
    with Werkzeug's form parser and with read_form (context included: subtract it)."""
    app = Flask(__name__)
    form = signed_form("app-one", "secret-one", "SMS_REPORT", [report("m1")])
    context = {"method": "POST", "data": form, "content_type": callbacks.URLENCODED}
    environ = app.test_request_context(**context).request.environ
    body = environ["wsgi.input"].read()

    def with_request(read: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            with app.request_context({**environ, "wsgi.input": io.BytesIO(body)}):
                read()

        return run

    return [
        ("form: request context alone", with_request(lambda: None)),
        ("form: + request.form (Werkzeug)", with_request(lambda: request.form)),
        ("form: + read_form()", with_request(callbacks.read_form)),
    ]


def _metrics_by_labels() -> None:
    CALLBACKS.labels("SMS_REPORT", "stored").inc()
    RECORDS.labels("callback", "report", "stored").inc(1)
    RECORDS.labels("callback", "report", "duplicate").inc(0)
    RECORDS.labels("callback", "report", "quarantined").inc(0)


def _metrics_cached() -> None:
    callbacks._callbacks_counter("SMS_REPORT", "stored").inc()
    for counter, count in zip(callbacks._records_counters("SMS_REPORT"), (1, 0, 0), strict=True):
        if count:
            counter.inc(count)


if __name__ == "__main__":
    main()
