"""The query bench's servers and client: the service and the hello-world app under one gunicorn
command line, each asked over one keep-alive HTTP connection, as a sender's client would."""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.servers import Gunicorn, free_port, running_gunicorn, service_env

# Both apps run under exactly this command line; only the app module differs (bench/ingest
# measures callbacks the same way).
SERVICE_APP = "wsgi:app"
HELLO_APP = "bench.ingest.hello:app"
HELLO_PATH = "/hello"


def gunicorn_args(app_module: str, port: int) -> list[str]:
    """`gunicorn --config gunicorn.conf.py --bind 127.0.0.1:PORT APP`."""
    return ["--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", app_module]


@dataclass
class Client:
    """One keep-alive HTTP/1.1 connection to a server; `get` times a request end to end."""

    port: int
    headers: dict[str, str]

    def __post_init__(self) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def get(self, path: str, query: dict[str, str] | None = None) -> tuple[float, Any]:
        """Milliseconds from sending the request to having read the whole answer; the JSON."""
        target = f"{path}?{urlencode(query)}" if query else path
        for attempt in (1, 2):
            try:
                start = time.perf_counter()
                self.connection.request("GET", target, headers=self.headers)
                response = self.connection.getresponse()
                body = response.read()
                elapsed = (time.perf_counter() - start) * 1000
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # gunicorn closes a keep-alive connection idle for `keepalive` seconds (while
                # the bench asks PostgreSQL for its EXPLAIN ANALYZE): reconnect once, untimed.
                self.connection.close()
                if attempt == 2:
                    raise
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")
        return elapsed, json.loads(body)

    def close(self) -> None:
        self.connection.close()


@dataclass
class Served:
    """The service's API client and the hello-world client, both warm and keep-alive, and the
    two gunicorns serving them."""

    api: Client
    hello: Client
    servers: tuple[Gunicorn, Gunicorn]

    def hello_ms(self) -> float:
        """One hello-world request's time, the floor of any request on this gunicorn line."""
        return self.hello.get(HELLO_PATH)[0]

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time so far of each gunicorn (master and workers): the service's, hello's."""
        service, hello = self.servers
        return _cpu([service.pid, *service.worker_pids()]), _cpu([hello.pid, *hello.worker_pids()])


def _cpu(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (from /proc)."""
    total = 0
    for pid in pids:
        with suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


@contextmanager
def served(database_url: str, token: str, log_dir: Path) -> Iterator[Served]:
    """Both apps under gunicorn (one worker each: one connection only ever reaches one)."""
    env = service_env(database_url, API_TOKENS=token)
    with ExitStack() as stack:
        clients, servers = [], []
        for name, module in (("service", SERVICE_APP), ("hello", HELLO_APP)):
            port = free_port()
            server = stack.enter_context(
                running_gunicorn(
                    env,
                    workers=1,
                    args=gunicorn_args(module, port),
                    port=port,
                    log_path=log_dir / f"query-{name}.log",
                    name=name,
                )
            )
            client = Client(port, {"Authorization": f"Bearer {token}"})
            stack.callback(client.close)
            clients.append(client)
            servers.append(server)
        yield Served(clients[0], clients[1], (servers[0], servers[1]))
