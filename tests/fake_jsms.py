"""A fake JSMS receipt API: a real HTTP server that follows the upstream's pull rules.

Rules (see docs/jsms-protocol.md): HTTP Basic `appKey:masterSecret` (50001 missing, 50002
wrong), one call per window per appKey across both kinds and the balance (50201), at most 500
records per call, each record handed out once. `GET /v1/accounts/app` answers the app's balance
(`set_balance`), or the error `fail_balance` set (the modes below are the pulls' own). Per-app
modes make the pulls answer like JSMS in other states:

| mode            | answer                                                        |
|-----------------|---------------------------------------------------------------|
| `pull`          | 200 and the next batch (the normal case)                      |
| `callback`      | 403 50202 (callbacks are on for this app)                     |
| `frozen`        | 403 50301                                                     |
| `not_activated` | 403 50008                                                     |
| `server_error`  | 500 50019                                                     |
| `illegal_ip`    | 403 50035 (this host is not on the app's IP allow-list)       |
| `blocked`       | 403 50036 (JSMS blacklisted the app)                          |
| `bare_500`      | 500 with an HTML body (a proxy error page)                    |
| `slow`          | sleeps `slow_seconds`, then `[]` (nothing handed out)         |
| `not_json`      | 200 with a body that is not JSON (nothing handed out)         |

Every call is recorded (monotonic time, app, kind, HTTP status, JSMS code, records handed out).
`hold_answer()` keeps the answer of a later batch: its records are handed out (gone from the
queue) but the caller still waits for them, so a fault can land on a batch in flight.

Standalone, for watching the service locally:
    python -m tests.fake_jsms --port 8765 --apps key:secret --reports 2000
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import random
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BATCH = 500
KIND_BY_PATH = {"/v1/report": "report", "/v1/reply": "reply", "/v1/accounts/app": "balance"}
MODE_ERRORS = {
    "callback": (403, 50202, "pull not allow"),
    "frozen": (403, 50301, "developer account frozen"),
    "not_activated": (403, 50008, "sms service not activated"),
    "server_error": (500, 50019, "server error"),
    "illegal_ip": (403, 50035, "illegal IP"),
    "blocked": (403, 50036, "app in black"),
}


@dataclass(frozen=True, slots=True)
class Call:
    """One request the fake answered."""

    at: float  # time.monotonic() when the request was handled
    app_key: str | None
    kind: str | None
    status: int
    code: int | None  # the JSMS error code, None on success
    handed_out: int


@dataclass
class _App:
    secret: str
    mode: str = "pull"
    last_call: float | None = None  # monotonic time of the last call that used the window
    queues: dict[str, deque[Any]] = field(
        default_factory=lambda: {"report": deque(), "reply": deque()}
    )
    handed_out: dict[str, list[Any]] = field(default_factory=lambda: {"report": [], "reply": []})
    # 200 bodies to answer verbatim before any queued records (an empty body, a BOM, …).
    bodies: dict[str, deque[str]] = field(
        default_factory=lambda: {"report": deque(), "reply": deque()}
    )
    # What `GET /v1/accounts/app` answers: the balance, or (status, code, message).
    balance: dict[str, int] = field(
        default_factory=lambda: {
            "app_balance": 1000, "app_voice": 0, "app_industry": 600, "app_market": 400
        }
    )
    balance_error: tuple[int, int, str] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeJsms:
    """The fake upstream; `start()` serves it on 127.0.0.1 (ephemeral port by default)."""

    def __init__(
        self,
        apps: dict[str, str],
        window: float = 5.0,
        port: int = 0,
        slow_seconds: float = 2.0,
    ) -> None:
        self.window = window
        self.slow_seconds = slow_seconds
        self.apps = {key: _App(secret) for key, secret in apps.items()}
        self.calls: list[Call] = []
        self._calls_changed = threading.Condition()
        self._hold_after: int | None = None  # batches still answered before the held one
        self._held: list[Any] | None = None  # the held batch, once handed out
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL to give the service as JSMS_API_BASE_URL."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeJsms:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    # -- the backlog ------------------------------------------------------------------------

    def add(self, app_key: str, kind: str, items: Iterable[Any]) -> None:
        """Queue records to be handed out, oldest first (any JSON value: the upstream's records
        are not always what its documentation says)."""
        app = self.apps[app_key]
        with app.lock:
            app.queues[kind].extend(items)

    def add_body(self, app_key: str, kind: str, body: str) -> None:
        """Queue one `200` answer whose body is exactly `body`, served before queued records.

        `add` takes items of any shape (any JSON value); this is for bodies that are not a JSON
        array at all: empty, blank, a byte order mark, a truncated document.
        """
        app = self.apps[app_key]
        with app.lock:
            app.bodies[kind].append(body)

    def add_reports(self, app_key: str, count: int, prefix: str = "m") -> None:
        """Queue `count` synthetic delivery reports with unique msgIds."""
        self.add(app_key, "report", synthetic_reports(count, prefix))

    def set_mode(self, app_key: str, mode: str) -> None:
        """Change how the fake answers for an app (see the module docstring)."""
        if mode not in MODE_ERRORS and mode not in {"pull", "bare_500", "slow", "not_json"}:
            raise ValueError(f"unknown mode {mode!r}")
        self.apps[app_key].mode = mode

    def set_balance(self, app_key: str, **counts: int) -> None:
        """What the balance endpoint answers for the app (`app_balance=900, …`; fields left
        out are absent from the answer, as fastjson leaves out nulls)."""
        app = self.apps[app_key]
        with app.lock:
            app.balance, app.balance_error = dict(counts), None

    def fail_balance(self, app_key: str, status: int, code: int, message: str) -> None:
        """Make the balance endpoint answer this JSMS error for the app (pulls are unchanged)."""
        self.apps[app_key].balance_error = (status, code, message)

    def pending(self, app_key: str, kind: str) -> int:
        """Records still waiting upstream."""
        return len(self.apps[app_key].queues[kind])

    def handed_out(self, app_key: str, kind: str) -> list[dict[str, Any]]:
        """Every record handed out so far (gone from the upstream for good)."""
        app = self.apps[app_key]
        with app.lock:
            return list(app.handed_out[kind])

    # -- the call log -----------------------------------------------------------------------

    def hold_answer(self, after: int = 0) -> None:
        """Hold the answer of the batch that comes after `after` more batches with records: its
        records are handed out (gone from the queue, in `handed_out`), but the HTTP answer waits
        until `release()`, so the caller is mid-call. One hold at a time."""
        with self._calls_changed:
            self._hold_after, self._held = after, None
            self._release.clear()

    def wait_for_held(self, timeout: float = 30.0) -> list[Any] | None:
        """Block until the held batch is handed out; returns it (None on timeout)."""
        with self._calls_changed:
            self._calls_changed.wait_for(lambda: self._held is not None, timeout)
            return None if self._held is None else list(self._held)

    def release(self) -> None:
        """Send the held answer (if its caller is still there to read it)."""
        self._release.set()

    def _wait_if_held(self, body: Any) -> None:
        """In the handler thread, before answering: wait while `body` is the held batch."""
        if body is not None and body is self._held:
            self._release.wait(timeout=120)

    def calls_with(self, code: int | None = None, app_key: str | None = None) -> list[Call]:
        """Calls answered with `code` (None: successes), optionally for one app."""
        with self._calls_changed:
            return [
                c
                for c in self.calls
                if c.code == code and (app_key is None or c.app_key == app_key)
            ]

    def wait_for_calls(self, count: int, timeout: float = 30.0) -> bool:
        """Block until at least `count` calls were answered (False on timeout)."""
        with self._calls_changed:
            return self._calls_changed.wait_for(lambda: len(self.calls) >= count, timeout)

    def _record(self, call: Call) -> None:
        with self._calls_changed:
            self.calls.append(call)
            self._calls_changed.notify_all()

    # -- answering --------------------------------------------------------------------------

    def answer(self, path: str, authorization: str | None) -> tuple[int, Any]:
        """The (HTTP status, JSON body or raw text) for one GET, applying the upstream's rules."""
        now = time.monotonic()
        kind = KIND_BY_PATH.get(path.split("?", 1)[0])
        if kind is None:
            return self._fail(now, None, None, 404, 50016, "api not found")
        credentials = _basic_credentials(authorization)
        if credentials is None:
            return self._fail(now, None, kind, 400, 50001, "auth missing")
        app_key, secret = credentials
        app = self.apps.get(app_key)
        if app is None or app.secret != secret:
            return self._fail(now, app_key, kind, 401, 50002, "auth failed")
        with app.lock:
            if app.last_call is not None and now - app.last_call < self.window:
                return self._fail(now, app_key, kind, 403, 50201, "pull out of frequency")
            app.last_call = now
            if kind == "balance":
                return self._balance(now, app, app_key)
            mode = app.mode
            if mode in MODE_ERRORS:
                status, code, message = MODE_ERRORS[mode]
                return self._fail(now, app_key, kind, status, code, message)
            if mode == "bare_500":
                self._record(Call(now, app_key, kind, 500, None, 0))
                return 500, "<html><body>502 Bad Gateway</body></html>"
            if mode == "not_json":
                self._record(Call(now, app_key, kind, 200, None, 0))
                return 200, "<html>maintenance</html>"
            if mode == "slow":
                self._record(Call(now, app_key, kind, 200, None, 0))
            else:
                return self._hand_out(now, app, app_key, kind)
        time.sleep(self.slow_seconds)  # outside the lock: later calls still meet the window
        return 200, []

    def _hand_out(self, now: float, app: _App, app_key: str, kind: str) -> tuple[int, Any]:
        """The next batch, gone from the queue for good (the caller holds the app's lock)."""
        if app.bodies[kind]:
            self._record(Call(now, app_key, kind, 200, None, 0))
            return 200, app.bodies[kind].popleft()
        queue = app.queues[kind]
        batch = [queue.popleft() for _ in range(min(MAX_BATCH, len(queue)))]
        app.handed_out[kind].extend(batch)
        with self._calls_changed:
            if batch and self._hold_after is not None:
                if self._hold_after == 0:
                    self._held, self._hold_after = batch, None
                else:
                    self._hold_after -= 1
        self._record(Call(now, app_key, kind, 200, None, len(batch)))
        return 200, batch

    def _balance(self, now: float, app: _App, app_key: str) -> tuple[int, Any]:
        """The balance answer (the caller holds the app's lock)."""
        if app.balance_error is not None:
            return self._fail(now, app_key, "balance", *app.balance_error)
        self._record(Call(now, app_key, "balance", 200, None, 0))
        return 200, dict(app.balance)

    def _fail(
        self, now: float, app_key: str | None, kind: str | None, status: int, code: int, msg: str
    ) -> tuple[int, Any]:
        self._record(Call(now, app_key, kind, status, code, 0))
        return status, {"error": {"code": code, "message": msg}}


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(appKey, secret) from an HTTP Basic header, None when absent or malformed."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    key, sep, secret = decoded.partition(":")
    return (key, secret) if sep else None


def _handler_for(fake: FakeJsms) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            status, body = fake.answer(self.path, self.headers.get("Authorization"))
            fake._wait_if_held(body)
            raw = body if isinstance(body, str) else json.dumps(body)
            data = raw.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            # A client that gave up (a timeout test) is gone; what it missed is in fake.calls.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Quiet: the call log is `fake.calls`."""

    return Handler


def synthetic_reports(count: int, prefix: str = "m") -> list[dict[str, Any]]:
    """Delivery reports with unique msgIds, mostly delivered, receive times in epoch ms: one
    millisecond apart, the last one now (the moment they are queued, as a carrier would)."""
    base = int(time.time() * 1000) - count
    statuses = [4001] * 8 + [4002, 4004]
    return [
        {
            "msgId": f"{prefix}{i:09d}",
            "phone": f"1380013{i % 10000:04d}",
            "status": statuses[i % len(statuses)],
            "receiveTime": base + i,
        }
        for i in range(count)
    ]


def synthetic_replies(count: int) -> list[dict[str, Any]]:
    """Uplink replies with distinct contents, replied one millisecond apart up to now."""
    base = int(time.time() * 1000) - count
    return [
        {"phone": f"1390013{i % 10000:04d}", "replyTime": base + i, "content": f"reply {i}"}
        for i in range(count)
    ]


def main() -> None:
    """Serve the fake in the foreground, optionally adding reports over time."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--apps", default="demo-app:demo-secret", help="key:secret[,key:secret]")
    parser.add_argument("--window", type=float, default=5.0, help="seconds between calls")
    parser.add_argument("--reports", type=int, default=2000, help="initial reports per app")
    parser.add_argument("--replies", type=int, default=0, help="initial replies per app")
    parser.add_argument("--trickle", type=float, default=0.0, help="new reports/second per app")
    parser.add_argument("--mode", action="append", default=[], help="key=mode, e.g. k=callback")
    args = parser.parse_args()
    apps = dict(pair.split(":", 1) for pair in args.apps.split(","))
    fake = FakeJsms(apps, window=args.window, port=args.port)
    for key in apps:
        fake.add_reports(key, args.reports, prefix=f"{key}-")
        fake.add(key, "reply", synthetic_replies(args.replies))
    for setting in args.mode:
        key, _, mode = setting.partition("=")
        fake.set_mode(key, mode)
    fake.start()
    print(f"fake JSMS at {fake.url} (window {args.window}s), apps: {', '.join(apps)}", flush=True)
    serial = 0
    try:
        while True:
            time.sleep(1.0)
            for key in apps:
                if args.trickle:
                    count = int(args.trickle) + (random.random() < args.trickle % 1)
                    fake.add(key, "report", synthetic_reports(count, f"{key}-t{serial}-"))
            serial += 1
            answered = len(fake.calls)
            if answered and serial % 10 == 0:
                print(f"{answered} calls answered, 50201 so far: {len(fake.calls_with(50201))}")
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
