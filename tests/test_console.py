"""The `jsms` command as a person runs it, and `web` as the platform starts it: the console
script from anywhere, people's output on stdout and logs on stderr, `.env` read by gunicorn too,
a bad setting stopping gunicorn once, and no metric files left in the working directory."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.fake_jsms import FakeJsms
from tests.servers import BIN, ROOT, free_port, service_env, wait_until_up
from tests.support import APPS, FAKE_WINDOW

pytestmark = pytest.mark.slow
APPS_ENV = ",".join(f"{key}:{secret}" for key, secret in APPS.items())


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_jsms_is_a_command_from_anywhere_in_the_venv(tmp_path: Path) -> None:
    done = run([str(BIN / "jsms"), "--help"], tmp_path, service_env(f"sqlite:///{tmp_path}/x.db"))
    assert done.returncode == 0, done.stderr
    for command in ("clock", "doctor", "migrate", "purge", "reprocess", "sync"):
        assert f"  {command} " in done.stdout


def test_people_read_stdout_and_logs_go_to_stderr_without_library_noise(
    database_url: str, fake_jsms: FakeJsms, tmp_path: Path
) -> None:
    fake_jsms.add_reports("app-one", 3)
    fake_jsms.set_mode("app-two", "callback")
    env = service_env(
        database_url,
        JSMS_APPS=APPS_ENV,
        JSMS_API_BASE_URL=fake_jsms.url,
        JSMS_RATE_LIMIT_SECONDS=str(FAKE_WINDOW),
        LOG_LEVEL="INFO",
        # What `flask` exports from a copied .env.example: it must not mean "this directory".
        PROMETHEUS_MULTIPROC_DIR="",
    )
    workdir = tmp_path / "anywhere"
    workdir.mkdir()
    # -v: progress on stderr (without it, people's commands log warnings only).
    done = run([str(BIN / "jsms"), "-v", "sync", "--kind", "report"], workdir, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "app-one report: drained, 1 call(s), 3 record(s) pulled"
        " (3 stored, 0 duplicates, 0 quarantined); mode pull",
        done.stdout.splitlines()[1],
    ]
    assert done.stdout.splitlines()[1].startswith("app-two report: callback mode, 1 call(s)")
    logs = [json.loads(line) for line in done.stderr.splitlines()]
    noisy = ("alembic", "httpx", "httpcore", "apscheduler")
    assert not [e for e in logs if e["logger"].startswith(noisy)], done.stderr
    assert any(entry.get("event") == "pull_call" for entry in logs)
    assert list(workdir.iterdir()) == []  # no histogram_<pid>.db, nothing at all


def test_flask_with_a_copied_env_example_writes_no_metric_files_here(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        (ROOT / ".env.example").read_text() + "\nPROMETHEUS_MULTIPROC_DIR=\n"
    )
    env = service_env(f"sqlite:///{tmp_path}/db.sqlite3", PYTHONPATH=str(ROOT))
    done = run([str(BIN / "flask"), "--app", "wsgi", "jsms", "migrate"], tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("database schema upgraded from nothing: now at head (")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("db.sqlite3")) == [
        ".env"
    ]


def test_a_bad_setting_stops_gunicorn_once_with_the_message(tmp_path: Path) -> None:
    env = service_env(f"sqlite:///{tmp_path}/x.db", JSMS_APPS="key-without-secret")
    done = run([str(BIN / "gunicorn"), "wsgi:app"], ROOT, env)
    assert done.returncode != 0
    message = "configuration error: JSMS_APPS:"
    assert done.stderr.count(message) == 1, done.stderr
    assert "key-without-secret" in done.stderr and "Traceback" not in done.stderr
    assert "Booting worker" not in done.stderr


def test_gunicorn_reads_port_workers_and_threads_from_dot_env(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    workdir = tmp_path / "service"
    workdir.mkdir()
    (workdir / ".env").write_text(
        f"PORT={port}\nWEB_CONCURRENCY=3\nGUNICORN_THREADS=7\nPROMETHEUS_MULTIPROC_DIR=\n"
    )
    env = service_env(database_url, PYTHONPATH=str(ROOT))
    for name in ("PORT", "WEB_CONCURRENCY", "GUNICORN_THREADS", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    gunicorn = [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"]

    printed = run([*gunicorn, "--print-config"], workdir, env)
    assert printed.returncode == 0, printed.stderr
    config = dict(
        tuple(part.strip() for part in line.split("=", 1))
        for line in printed.stdout.splitlines()
        if "=" in line
    )
    assert (config["bind"], config["workers"], config["threads"]) == (
        f"['0.0.0.0:{port}']",
        "3",
        "7",
    )

    log = tmp_path / "gunicorn.log"
    with log.open("w") as output:
        process = subprocess.Popen(gunicorn, cwd=workdir, env=env, stderr=output)
        try:
            wait_until_up(f"http://127.0.0.1:{port}/healthz", process, 60, str(log))
            assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 200
        finally:
            process.terminate()
            process.wait(timeout=30)
    booted = [json.loads(line) for line in log.read_text().splitlines()]
    assert sum("Booting worker" in entry["message"] for entry in booted) == 3
    assert sorted(p.name for p in workdir.iterdir()) == [".env"]  # no metric files here
