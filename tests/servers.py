"""Run the real processes (gunicorn, flask CLI) for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


class Gunicorn(str):
    """A running gunicorn: the string is its base URL; `.pid` is the master's."""

    pid: int

    def worker_pids(self) -> list[int]:
        """The master's current worker processes."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        return [int(pid) for pid in children]


@contextmanager
def running_gunicorn(
    env: dict[str, str], workers: int = 2, timeout: float = 30, gunicorn: Path = BIN / "gunicorn"
) -> Iterator[Gunicorn]:
    """Start `web` as the Procfile does, on a free port; yield its base URL; stop it."""
    port = free_port()
    env = {**env, "PORT": str(port), "WEB_CONCURRENCY": str(workers)}
    # Output goes to a file: a pipe nobody reads fills up and blocks the workers' logging.
    log = tempfile.NamedTemporaryFile("w+", prefix="gunicorn-", suffix=".log")  # noqa: SIM115
    process = subprocess.Popen(
        [str(gunicorn), "wsgi:app"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base_url = Gunicorn(f"http://127.0.0.1:{port}")
    base_url.pid = process.pid
    try:
        wait_until_up(base_url + "/healthz", process, timeout, log.name)
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


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
