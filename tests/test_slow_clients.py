"""Slow clients on loopback: connections that send part of a request head and stall, more of
them than the worker has threads, do not starve `/healthz` or the callbacks: every connection
a gunicorn thread takes has a socket timeout (gunicorn.conf.py, GUNICORN_READ_TIMEOUT)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest

from tests.servers import running_gunicorn, service_env
from tests.support import APPS
from tests.wire import report, signed_form

THREADS = 2
STALLED = 3 * THREADS  # more stalled connections than the worker has threads


@contextmanager
def stalled_connections(base_url: str, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that each sent half a request head and then say nothing more."""
    host, port = base_url.removeprefix("http://").split(":")
    with ExitStack() as stack:
        sockets = []
        for _ in range(count):
            sock = stack.enter_context(socket.create_connection((host, int(port))))
            sock.sendall(b"POST /callbacks/jsms HTTP/1.1\r\nHost: x\r\nContent-Ty")
            sockets.append(sock)
        yield sockets


@pytest.mark.slow
def test_stalled_connections_do_not_starve_health_or_callbacks(database_url: str) -> None:
    env = service_env(
        database_url,
        JSMS_APPS="app-one:" + APPS["app-one"],
        GUNICORN_THREADS=str(THREADS),
        GUNICORN_READ_TIMEOUT="1",
    )
    with (
        running_gunicorn(env, workers=1) as server,
        stalled_connections(server.url, STALLED) as stalled,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        # Without the timeout these wait behind the stalled clients forever (60 s here).
        assert client.get("/healthz").status_code == 200
        for i in range(5):
            form = signed_form("app-one", APPS["app-one"], "SMS_REPORT", [report(f"m{i}")])
            assert client.post("/callbacks/jsms", data=form).json()["stored"] == 1
        for sock in stalled:  # each was closed by the server, not left holding a thread
            sock.settimeout(60)
            assert closed_by_peer(sock)


def closed_by_peer(sock: socket.socket) -> bool:
    """True when the server has closed the connection (an orderly close or a reset)."""
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
