"""Structured logs: JSON lines, phone numbers masked."""

from __future__ import annotations

import json
import logging
import os
import select
import threading
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from app.callbacks import is_callback_post
from app.jsms.client import JsmsClient
from app.logs import json_handler, mask_phone
from app.pull.puller import Puller
from app.pull.state import SyncPolicy
from app.store.db import Database
from tests.fake_jsms import FakeJsms
from tests.support import APPS, FAKE_WINDOW, json_lines
from tests.wire import report, signed_form


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("to 13812345678 now", "to 138****5678 now"),
        ("+8613812345678", "+861****5678"),
        ("status 4001 at 2026-11-25 06:00:00 from 127.0.0.1", None),
        ("手机13812345678", "手机138****5678"),
        ("phone=13812345678;", "phone=138****5678;"),
        # Identifiers are left alone: a clock's holder id, a spool file's name.
        ("clock started: holder vm:6103:a2345678", None),
        ("kept in instance/unstored/20261205T081703123456-0123456789ab.json", None),
    ],
)
def test_mask_phone(text: str, expected: str | None) -> None:
    assert mask_phone(text) == (expected or text)


def test_json_lines_mask_phones_in_message_and_fields() -> None:
    with json_lines("test.json") as (logger, stream):
        logger.warning(
            "lookup of %s failed", "13812345678", extra={"phone": "13900001111", "app_key": "k"}
        )
    line = json.loads(stream.getvalue())
    assert line["message"] == "lookup of 138****5678 failed"
    assert line["phone"] == "139****1111"
    assert line["level"] == "WARNING" and line["logger"] == "test.json" and line["app_key"] == "k"
    assert "13812345678" not in stream.getvalue() and "13900001111" not in stream.getvalue()


def test_lines_from_threads_writing_at_once_stay_whole() -> None:
    """Lines that threads write into one pipe at the same time come out whole and in each
    thread's order, those longer than the pipe's atomic write (a traceback's) included, which
    the kernel may split: the handler's lock keeps another line out of them."""
    read_end, write_end = os.pipe()
    received = bytearray()
    reader = threading.Thread(target=lambda: _drain(read_end, received))
    reader.start()
    handler = json_handler()
    handler.setStream(os.fdopen(write_end, "w"))  # type: ignore[attr-defined]
    logger = logging.getLogger("test.threads")
    logger.addHandler(handler)
    logger.propagate = False
    long_text = "x" * (3 * select.PIPE_BUF)

    def write(thread: int) -> None:
        for n in range(200):
            logger.warning("line", extra={"writer": thread, "n": n, "text": long_text[: n * 97]})

    try:
        threads = [threading.Thread(target=write, args=(t,)) for t in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        handler.stream.close()  # type: ignore[attr-defined]
        reader.join()
    lines = [json.loads(line) for line in received.decode().splitlines()]
    assert len(lines) == 6 * 200
    assert max(len(line["text"]) for line in lines) > select.PIPE_BUF
    for writer in range(6):
        assert [line["n"] for line in lines if line["writer"] == writer] == list(range(200))


def _drain(fd: int, into: bytearray) -> None:
    with os.fdopen(fd, "rb") as pipe:
        while chunk := pipe.read1(65536):
            into += chunk


def test_one_log_line_per_callback(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="app.callbacks")
    form = signed_form("app-one", APPS["app-one"], "SMS_REPORT", [report("m1"), report("m1")])
    started = time.perf_counter()
    client.post("/callbacks/jsms", data=form)
    elapsed_ms = (time.perf_counter() - started) * 1000
    client.post("/callbacks/jsms", data=form | {"signature": "0" * 40})
    ok, refused = [r for r in caplog.records if r.name == "app.callbacks"]
    assert (ok.app_key, ok.type, ok.status, ok.outcome, ok.stored, ok.duplicates) == (  # type: ignore[attr-defined]
        "app-one",
        "SMS_REPORT",
        200,
        "stored",
        1,
        1,
    )
    # The request's own time: more than nothing, at most what the client waited.
    assert 0 < ok.duration_ms <= elapsed_ms  # type: ignore[attr-defined]
    assert (refused.status, refused.outcome) == (401, "bad_signature")  # type: ignore[attr-defined]
    assert "13800138000" not in caplog.text


@pytest.mark.parametrize(
    "path",
    [
        "/callbacks/jsms",
        "/callbacks/jsms/app-one",
        "/callbacks/jsms/unknown-app",
        "/callbacks/jsms/",
        "/callbacks/jsms/app-one/more",
        "/callbacks/jsmsx",
        "/callbacks",
    ],
)
def test_every_post_the_access_log_leaves_out_has_its_callback_line(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    """gunicorn.conf.py drops the access line where is_callback_post says so: exactly there the
    callback's own line must be written, whatever the answer (200, 4xx)."""
    caplog.set_level(logging.INFO, logger="app.callbacks")
    client.post(path, data={"nonce": "1"})
    lines = [r for r in caplog.records if r.name == "app.callbacks" and r.msg == "callback"]
    assert len(lines) == (1 if is_callback_post("POST", path) else 0)
    assert not is_callback_post("GET", path)


def test_one_log_line_and_one_duration_per_pull_call(
    fake_jsms: FakeJsms, store: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The README's Logs and Metrics sections: each upstream call writes a `pull call` line with
    its `duration_ms`, and is counted in `jsms_pull_call_duration_seconds` under its kind and
    result; the time is the call's own (more than nothing, at most what its caller waited), the
    same in both."""
    caplog.set_level(logging.INFO, logger="app.pull.puller")
    labels = {"kind": "report", "result": "ok"}

    def observed(suffix: str) -> float:
        name = f"jsms_pull_call_duration_seconds_{suffix}"
        return REGISTRY.get_sample_value(name, labels) or 0.0

    count, total = observed("count"), observed("sum")
    fake_jsms.add_reports("app-one", 3)
    started = time.perf_counter()
    with JsmsClient(fake_jsms.url) as jsms:
        puller = Puller(store, jsms, SyncPolicy(window=FAKE_WINDOW), spool=tmp_path)
        puller.sync_app("app-one", APPS["app-one"], ["report"], max_calls=1)
    elapsed = time.perf_counter() - started
    [call] = [r for r in caplog.records if r.__dict__.get("event") == "pull_call"]
    assert call.getMessage() == "pull call"
    # And the pass's own line, for people reading the clock's log.
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("pull app=")]
    assert line == "pull app=app-one kind=report outcome=drained calls=1 items=3 stored=3"
    assert observed("count") - count == 1
    seconds = observed("sum") - total
    assert 0 < seconds <= elapsed
    # The same time in the line, in milliseconds to two places.
    assert abs(call.__dict__["duration_ms"] - seconds * 1000) <= 0.0051
