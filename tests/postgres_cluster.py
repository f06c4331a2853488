"""A PostgreSQL cluster of the test's own (initdb + pg_ctl on a free port), so it can be stopped."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.servers import free_port


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class OwnPostgres:
    """initdb a throwaway cluster; start, stop and restart it; remove it at the end."""

    def __init__(self) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="jsms-pg-"))
        self.data = self.directory / "data"
        # PostgreSQL refuses to run as root: run its tools as the `postgres` user then.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.directory, "postgres")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def unavailable_reason() -> str | None:
        """Why such a cluster cannot be made here, or None."""
        if not (_tool("initdb") and _tool("pg_ctl")):
            return "initdb/pg_ctl not found (Debian: postgresql)"
        return None

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(
            str(_tool("initdb")),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._run(
            str(_tool("pg_ctl")),
            "-D",
            str(self.data),
            "-o",
            options,
            "-w",
            "-l",
            str(self.directory / "log"),
            "start",
        )

    def stop(self) -> None:
        self._run(str(_tool("pg_ctl")), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def crash(self) -> None:
        """Stop at once, as a power cut would (`-m immediate`: no checkpoint, no WAL flush)."""
        self._run(str(_tool("pg_ctl")), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
