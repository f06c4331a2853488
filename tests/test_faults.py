"""Break things on purpose under load; nothing answered 2xx may be lost, nothing stored twice.

Senders behave like JSMS: every callback is retried until it gets a 2xx (here every 50 ms
instead of after minutes and hours).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select

from app.store.db import Database
from app.store.models import DeliveryReport, RawEvent
from app.store.schema import upgrade_to_head
from tests.fake_jsms import FakeJsms
from tests.postgres_cluster import OwnPostgres
from tests.servers import running_gunicorn, running_jsms, service_env
from tests.support import APPS, FAKE_WINDOW, postgres_unavailable_reason, row_count
from tests.wire import report, signed_form

pytestmark = pytest.mark.slow
RETRY_EVERY = 0.05
GIVE_UP_AFTER = 60.0  # seconds a sender keeps retrying one callback


@dataclass
class Delivery:
    msg_id: str
    form: dict[str, str]
    answers: list[int | str] = field(default_factory=list)

    @property
    def acked(self) -> bool:
        return any(isinstance(a, int) and 200 <= a < 300 for a in self.answers)


class Senders:
    """Threads that post callbacks, pacing themselves, retrying each until it gets a 2xx."""

    def __init__(self, base_url: str, count: int, threads: int = 4, pace: float = 0.01) -> None:
        self.url = f"{base_url}/callbacks/jsms"
        self.deliveries = [
            Delivery(
                f"m{i}", signed_form("app-one", APPS["app-one"], "SMS_REPORT", report(f"m{i}"))
            )
            for i in range(count)
        ]
        self.pace = pace
        self.threads = [
            threading.Thread(target=self._send, args=(self.deliveries[i::threads],))
            for i in range(threads)
        ]

    def start(self) -> Senders:
        for thread in self.threads:
            thread.start()
        return self

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=GIVE_UP_AFTER * 2)

    def acked(self) -> int:
        return sum(d.acked for d in self.deliveries)

    def wait_for_acks(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.acked() < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def answers(self) -> list[int | str]:
        return [a for d in self.deliveries for a in d.answers]

    def _send(self, deliveries: list[Delivery]) -> None:
        with httpx.Client(timeout=10) as http:
            for delivery in deliveries:
                deadline = time.monotonic() + GIVE_UP_AFTER
                while not delivery.acked and time.monotonic() < deadline:
                    try:
                        delivery.answers.append(http.post(self.url, data=delivery.form).status_code)
                    except httpx.TransportError as exc:
                        delivery.answers.append(type(exc).__name__)
                    if not delivery.acked:
                        time.sleep(RETRY_EVERY)
                time.sleep(self.pace)


def counts(url: str) -> tuple[int, int, set[str]]:
    return row_count(url, DeliveryReport), row_count(url, RawEvent), stored_msg_ids(url)


@pytest.fixture
def own_postgres():  # type: ignore[no-untyped-def]
    reason = postgres_unavailable_reason() or OwnPostgres.unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = OwnPostgres()
    cluster.init()
    cluster.start()
    yield cluster
    cluster.remove()


@pytest.mark.postgres
def test_postgres_restart_under_load_loses_nothing(own_postgres: OwnPostgres) -> None:
    upgrade_to_head(own_postgres.url)
    env = service_env(own_postgres.url, JSMS_APPS="app-one:" + APPS["app-one"])
    with running_gunicorn(env, workers=2) as server:
        senders = Senders(server.url, count=400).start()
        senders.wait_for_acks(60)
        own_postgres.stop()
        outage_started = len(senders.answers())
        time.sleep(2)
        own_postgres.start()
        senders.join()

    answers = senders.answers()
    during_outage = answers[outage_started:]
    assert 503 in during_outage, "callbacks during the outage should have been answered 503"
    assert set(answers) <= {200, 503}, f"only 200 and 503 expected, got {set(answers)}"
    assert all(d.acked for d in senders.deliveries), "every callback is stored after retries"
    reports, raw, msg_ids = counts(own_postgres.url)
    assert msg_ids == {d.msg_id for d in senders.deliveries}
    assert reports == 400
    # A raw event is committed exactly when a 200 went out: none lost, none phantom.
    assert raw == answers.count(200)


def test_worker_sigkill_under_load_loses_nothing(database_url: str) -> None:
    env = service_env(database_url, JSMS_APPS="app-one:" + APPS["app-one"])
    with running_gunicorn(env, workers=2) as server:
        senders = Senders(server.url, count=300).start()
        senders.wait_for_acks(60)
        # A callback in flight on the worker we kill: its body is half sent, so the worker is
        # inside the request (reading the form) when SIGKILL lands.
        with held_callback(server.port) as held:
            victim = worker_holding(server.worker_pids(), server.port, held.getsockname()[1])
            os.kill(victim, signal.SIGKILL)
            held.settimeout(30)
            try:
                answer = held.recv(1024)
            except ConnectionResetError:
                answer = b""
        senders.join()
        assert victim not in server.worker_pids()  # the master replaced it

    assert answer == b"", "the request in flight on the killed worker was never answered"
    assert all(d.acked for d in senders.deliveries)
    answers = senders.answers()
    reports, raw, msg_ids = counts(database_url)
    assert msg_ids == {d.msg_id for d in senders.deliveries} and reports == 300
    # A request in flight on the killed worker may have committed without answering; its
    # retry is then a duplicate: at most one extra raw event per sender thread, never a lost one.
    assert answers.count(200) <= raw <= answers.count(200) + len(senders.threads)


@contextmanager
def held_callback(port: int) -> Iterator[socket.socket]:
    """A connection to the server carrying a signed callback whose body is half sent."""
    body = urlencode(signed_form("app-one", APPS["app-one"], "SMS_REPORT", report("held")))
    head = (
        f"POST /callbacks/jsms HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        connection.sendall(head.encode() + body[: len(body) // 2].encode())
        yield connection
    finally:
        connection.close()


def worker_holding(workers: list[int], port: int, client_port: int) -> int:
    """The worker process holding the server side of our connection (found through /proc)."""
    wanted = f"0100007F:{port:04X} 0100007F:{client_port:04X}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        inodes = {
            line.split()[9]
            for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
            if " ".join(line.split()[1:3]) == wanted
        }
        for pid in workers:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with suppress(OSError):
                    if os.readlink(fd) in {f"socket:[{inode}]" for inode in inodes}:
                        return pid
        time.sleep(0.05)  # the worker has not accepted the connection yet
    raise AssertionError("no worker took the held connection")


def test_clock_sigkill_mid_drain_then_restart(
    fake_jsms: FakeJsms, database_url: str, tmp_path: Path
) -> None:
    """Killed without warning, the clock can lose at most the one batch in flight: handed out
    by the upstream but not committed. Everything committed stays; the lease expires; a new
    clock drains the rest."""
    backlog = 8000
    fake_jsms.add_reports("app-one", backlog)
    env = service_env(
        database_url,
        JSMS_APPS="app-one:" + APPS["app-one"],
        JSMS_API_BASE_URL=fake_jsms.url,
        JSMS_RATE_LIMIT_SECONDS=str(FAKE_WINDOW),
        PULL_LEASE_SECONDS="2",
    )
    # The fourth batch is handed out, but its answer is held: the kill lands on it in flight.
    fake_jsms.hold_answer(after=3)
    with running_jsms("clock", env, tmp_path / "first.log") as first:
        held = fake_jsms.wait_for_held(timeout=60)
        assert held, "the clock never asked for a fourth batch"
        first.kill()  # SIGKILL: no handler runs, the lease stays taken
        first.wait(timeout=30)
        fake_jsms.release()
    calls_before_kill = len(fake_jsms.calls_with())
    handed_before = [r["msgId"] for r in fake_jsms.handed_out("app-one", "report")]
    stored_before = stored_msg_ids(database_url)
    at_risk = set(handed_before) - stored_before
    in_flight = {r["msgId"] for r in held}
    assert len(handed_before) == 4 * 500 and len(in_flight) == 500
    # The kill hit work in flight: a whole batch handed out and not committed, and only that
    # one; the three batches before it were committed before the next call went out.
    assert at_risk == in_flight, "only the batch in flight may be lost"
    assert stored_before == set(handed_before) - in_flight

    with running_jsms("clock", env, tmp_path / "second.log") as second:
        deadline = time.monotonic() + 120
        while fake_jsms.pending("app-one", "report") and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(FAKE_WINDOW * 3)  # the last batch's commit
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0
    handed = [r["msgId"] for r in fake_jsms.handed_out("app-one", "report")]
    stored = stored_msg_ids(database_url)
    assert len(handed) == backlog and len(fake_jsms.calls_with()) > calls_before_kill
    assert stored_before <= stored, "everything committed before the kill stays"
    assert set(handed) - stored == at_risk, "after the restart only the batch in flight is missing"
    assert fake_jsms.calls_with(50201) == [], "the restart respected the window"


def stored_msg_ids(url: str) -> set[str]:
    database = Database(url)
    with database.session() as session:
        ids = set(session.scalars(select(DeliveryReport.msg_id)))
    database.engine.dispose()
    return ids
