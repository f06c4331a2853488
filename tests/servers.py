"""Run the real processes (gunicorn, flask CLI) for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


@contextmanager
def running_gunicorn(env: dict[str, str], workers: int = 2, timeout: float = 30) -> Iterator[str]:
    """Start `web` as the Procfile does, on a free port; yield its base URL; stop it."""
    port = free_port()
    env = {**env, "PORT": str(port), "WEB_CONCURRENCY": str(workers)}
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base_url + "/healthz", process, timeout)
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_until_up(url: str, process: subprocess.Popen[str], timeout: float) -> None:
    """Poll `url` until it answers 200; fail with the process's output if it dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise RuntimeError(f"process exited with {process.returncode}:\n{output}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up in {timeout} s")
