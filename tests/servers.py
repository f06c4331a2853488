"""Run the real processes (gunicorn, flask CLI) for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment a deployed process would get, and nothing from a developer's .env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JSMS_", "API_TOKENS"))}
    env.update(DATABASE_URL=database_url, PYTHONUNBUFFERED="1", **extra)
    return env


@dataclass
class Gunicorn:
    """A running gunicorn: its base URL, port and master process."""

    url: str
    port: int
    process: Popen[bytes]
    name: str = "gunicorn"

    @property
    def pid(self) -> int:
        """The master's process id."""
        return self.process.pid

    def worker_pids(self) -> list[int]:
        """The master's current worker processes."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        return [int(pid) for pid in children]


@contextmanager
def running_gunicorn(
    env: dict[str, str],
    workers: int | None = 2,
    timeout: float = 30,
    *,
    args: Sequence[str] = ("wsgi:app",),
    port: int | None = None,
    log_path: Path | None = None,
    name: str = "gunicorn",
    gunicorn: Path = BIN / "gunicorn",
) -> Iterator[Gunicorn]:
    """Start gunicorn (`web` as the Procfile does, unless `args` say otherwise) on a free port,
    or `port`, with the `gunicorn` executable given; `workers` sets WEB_CONCURRENCY (None: as in
    `env`); stopped on the way out.
    Output goes to `log_path`, else to a temporary file."""
    port = port or free_port()
    env = {**env, "PORT": str(port)}
    if workers is not None:
        env["WEB_CONCURRENCY"] = str(workers)
    # Output goes to a file: a pipe nobody reads fills up and blocks the workers' logging.
    with ExitStack() as stack:
        if log_path is None:
            log = stack.enter_context(tempfile.NamedTemporaryFile("w+b", prefix="gunicorn-"))
            log_name = log.name
        else:
            log = stack.enter_context(log_path.open("ab"))
            log_name = str(log_path)
        process = subprocess.Popen(
            [str(gunicorn), *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        server = Gunicorn(f"http://127.0.0.1:{port}", port, process, name)
        try:
            wait_until_up(server.url + "/healthz", process, timeout, log_name)
            yield server
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float, log: str) -> None:
    """Poll `url` until it answers 200; fail with the process's output if it dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = Path(log).read_text(errors="replace")
            raise RuntimeError(f"process exited with {process.returncode}:\n{output}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up in {timeout} s")


@contextmanager
def running_jsms(command: str, env: dict[str, str], log_path: Path) -> Iterator[Popen[bytes]]:
    """`flask --app wsgi jsms <command>` as a process (the clock, a sync pass), output to
    `log_path`; killed if still running on the way out."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "flask"), "--app", "wsgi", "jsms", command],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
