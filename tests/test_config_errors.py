"""A bad configuration stops every process with one line saying why: never a traceback, never
a secret. Run as the platform runs them: `web` (gunicorn's config check), `release`, `clock`,
and the `jsms` console script."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.servers import BIN, ROOT, service_env

# The Procfile's processes, plus the console script people type.
PROCESSES = {
    "web": [str(BIN / "gunicorn"), "--check-config", "wsgi:app"],
    "release": [str(BIN / "flask"), "--app", "wsgi", "jsms", "migrate"],
    "clock": [str(BIN / "flask"), "--app", "wsgi", "jsms", "clock"],
    "jsms": [str(BIN / "jsms"), "sync"],
}
BAD = [
    ({"DATABASE_URL": "nonsense"}, "configuration error: DATABASE_URL: Value error, not a"),
    ({"DATABASE_URL": "mysql://u:pw@h/db"}, "configuration error: DATABASE_URL: Value error, 'my"),
    ({"JSMS_APPS": "a:s1;b:s2"}, "configuration error: JSMS_APPS: Value error, JSMS_APPS entry"),
    ({"JSMS_APPS": "a:s1,a:s2"}, "configuration error: JSMS_APPS: Value error, JSMS_APPS names"),
    ({"GUNICORN_THREADS": "many"}, "configuration error: GUNICORN_THREADS: Input should be"),
    ({"PORT": "http"}, "configuration error: PORT: Input should be a valid integer"),
]


def run(process: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        PROCESSES[process], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The process's whole complaint, which must be a single line."""
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, done.stdout + done.stderr
    return lines[0]


@pytest.mark.parametrize("process", sorted(PROCESSES))
@pytest.mark.parametrize(("bad", "line"), BAD, ids=[next(iter(b.values())) for b, _ in BAD])
def test_a_bad_setting_is_one_line_and_exit_1(
    tmp_path: Path, process: str, bad: dict[str, str], line: str
) -> None:
    env = {**service_env(f"sqlite:///{tmp_path}/jsms.sqlite3", JSMS_APPS="a:s1"), **bad}
    done = run(process, env)
    assert done.returncode == 1
    said = one_line(done)
    assert said.startswith(line), said
    assert "s2" not in said and "pw" not in said  # never a secret


@pytest.mark.parametrize("process", ["release", "clock", "jsms"])
def test_web_concurrency_is_checked_by_every_process_of_ours(tmp_path: Path, process: str) -> None:
    """gunicorn reads WEB_CONCURRENCY itself when it is imported, before this service's code
    runs (README, Configuration); `release` refuses it first, so a deploy stops there."""
    env = service_env(f"sqlite:///{tmp_path}/jsms.sqlite3", JSMS_APPS="a:s1", WEB_CONCURRENCY="abc")
    done = run(process, env)
    assert done.returncode == 1
    assert one_line(done).startswith("configuration error: WEB_CONCURRENCY: Input should be")


@pytest.mark.postgres
@pytest.mark.parametrize("process", ["release", "clock", "jsms"])
def test_an_unreachable_database_says_the_drivers_reason_without_the_password(
    process: str,
) -> None:
    from tests.support import ADMIN_URL, postgres_unavailable_reason

    if postgres_unavailable_reason():
        pytest.skip("no PostgreSQL")
    server = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgres://", 1)
    if "@" in server and ":" not in server.split("//", 1)[1].split("@", 1)[0]:
        server = server.replace("@", ":hunter2-secret@", 1)  # trust auth ignores it
    env = service_env(f"{server}/jsms_no_such_database", JSMS_APPS="a:s1")
    done = run(process, env)
    assert done.returncode == 1
    said = one_line(done)
    assert 'database "jsms_no_such_database" does not exist' in said, said
    assert "hunter2" not in said
