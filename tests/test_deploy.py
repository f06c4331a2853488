"""Deploying where a Procfile runs: the lock file, app.json, and no ephemeral store on a dyno."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import Settings
from app.ops.doctor import FAIL, examine, render
from app.store.db import Database
from tests.servers import BIN, ROOT, running_gunicorn, service_env
from tests.support import APPS, make_settings

APP_JSON = json.loads((ROOT / "app.json").read_text())
# Read by gunicorn.conf.py, through Settings (and so from .env) like every other variable.
GUNICORN_VARIABLES = {"PORT", "WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_READ_TIMEOUT"}
# Set by the platform, never by the operator: listed in .env.example as a comment only.
PLATFORM_VARIABLES = {"DYNO"}
LOCK_COMMAND = "uv pip compile pyproject.toml --generate-hashes --python-version 3.11"


def example_variables() -> set[str]:
    """The variables `.env.example` sets (commented-out ones are not)."""
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.M))


def procfile() -> dict[str, str]:
    """Process type → command."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def test_app_json_declares_every_variable_with_a_description() -> None:
    env = APP_JSON["env"]
    settings = {name.upper() for name in Settings.model_fields}
    assert set(env) == example_variables()
    assert settings - PLATFORM_VARIABLES <= set(env)
    assert set(env) <= settings
    gunicorn_conf = (ROOT / "gunicorn.conf.py").read_text()
    assert all(f"settings.{name.lower()}" in gunicorn_conf for name in GUNICORN_VARIABLES)
    assert settings >= PLATFORM_VARIABLES and not PLATFORM_VARIABLES & set(env)
    assert "# DYNO=" in (ROOT / ".env.example").read_text()
    assert all(len(entry["description"]) > 10 for entry in env.values())
    assert env["SECRET_KEY"]["generator"] == env["API_TOKENS"]["generator"] == "secret"
    assert env["JSMS_APPS"]["required"] is True
    assert "value" not in env["DATABASE_URL"]


def test_app_json_provisions_postgres_and_runs_the_procfile() -> None:
    plans = [addon["plan"] if isinstance(addon, dict) else addon for addon in APP_JSON["addons"]]
    assert any(plan.split(":")[0] == "heroku-postgresql" for plan in plans)
    processes = procfile()
    assert set(processes) == {"release", "web", "clock"}
    # release runs once per deploy; it is not a formation.
    assert set(APP_JSON["formation"]) == set(processes) - {"release"}
    assert all(f["quantity"] >= 1 for f in APP_JSON["formation"].values())
    assert (ROOT / ".python-version").read_text().strip() == "3.11"


def test_the_lock_file_matches_pyproject(tmp_path: Path) -> None:
    """Regenerating requirements.txt (pins kept as preferences) changes nothing: whoever edits
    the dependencies in pyproject.toml must rerun the command in its header."""
    lock = ROOT / "requirements.txt"
    assert LOCK_COMMAND in lock.read_text().splitlines()[1]
    regenerated = tmp_path / "requirements.txt"
    shutil.copy(lock, regenerated)
    done = subprocess.run(
        [str(BIN / "uv"), *LOCK_COMMAND.split()[1:], "-q", "-o", str(regenerated)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr

    def pins(path: Path) -> list[str]:
        lines = (line.strip() for line in path.read_text().splitlines())
        return [line for line in lines if line and not line.startswith("#")]

    assert pins(regenerated) == pins(lock), (
        f"requirements.txt is stale: run `{LOCK_COMMAND} -o requirements.txt`"
    )
    assert all(line.startswith("--hash=sha256:") or "==" in line for line in pins(lock))


@pytest.mark.slow
def test_web_starts_from_the_locked_requirements_alone(tmp_path: Path) -> None:
    """What the buildpack does: install requirements.txt (hash-checked) into a fresh venv and
    run the Procfile's commands from the checkout, with the project itself not installed."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--require-hashes", "-r",
         str(ROOT / "requirements.txt")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    not_installed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import app"], cwd=tmp_path, capture_output=True
    )
    assert not_installed.returncode != 0, "the project must run from the checkout, not be installed"

    env = service_env(
        f"sqlite:///{tmp_path}/jsms.sqlite3",
        JSMS_APPS=",".join(f"{k}:{v}" for k, v in APPS.items()),
        DYNO="web.1",
    )
    release = subprocess.run(
        [str(venv / "bin" / "flask"), "--app", "wsgi", "jsms", "migrate"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert release.returncode == 0, release.stdout + release.stderr
    with running_gunicorn(env, workers=1, gunicorn=venv / "bin" / "gunicorn") as server:
        import httpx

        assert httpx.get(server.url + "/readyz").status_code == 200
        echo = httpx.get(server.url + "/callbacks/jsms/app-one", params={"echostr": "abc"})
        assert echo.text == "abc"


def dyno_env(tmp_path: Path) -> dict[str, str]:
    """A dyno's environment with no database add-on."""
    env = service_env("", JSMS_APPS="app-one:secret-one", DYNO="web.1", PORT="0")
    del env["DATABASE_URL"]
    return env


@pytest.mark.slow
@pytest.mark.parametrize(
    ("process", "command"),
    [
        ("web", [str(BIN / "gunicorn"), "wsgi:app"]),
        ("clock", [str(BIN / "flask"), "--app", "wsgi", "jsms", "clock"]),
        ("release", [str(BIN / "flask"), "--app", "wsgi", "jsms", "migrate"]),
    ],
)
def test_on_a_dyno_without_a_database_processes_refuse_to_start(
    process: str, command: list[str], tmp_path: Path
) -> None:
    done = subprocess.run(
        command, cwd=ROOT, env=dyno_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert f"refusing to start {process}: DYNO is set (web.1) but DATABASE_URL is not" in output
    assert "heroku addons:create heroku-postgresql" in output
    assert "Traceback" not in output


def test_doctor_fails_on_a_dyno_without_a_database(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path}/x.sqlite3")
    try:
        on_dyno = make_settings(None, dyno="clock.1", jsms_apps={})  # type: ignore[arg-type]
        findings = list(examine(on_dyno, database, tmp_path))
        durable = [f for f in findings if f.check == "durable store"]
        assert [f.status for f in durable] == [FAIL]
        report = render(findings)
        assert "[FAIL] durable store: DYNO is set (clock.1) but DATABASE_URL is not" in report
        assert "fix: add a database: heroku addons:create heroku-postgresql" in report

        with_database = make_settings(database.url, dyno="clock.1", jsms_apps={})
        found = examine(with_database, database, tmp_path)
        assert not [f for f in found if f.check == "durable store"]
        laptop = make_settings(None, jsms_apps={})  # type: ignore[arg-type]
        assert not [f for f in examine(laptop, database, tmp_path) if f.check == "durable store"]
    finally:
        database.engine.dispose()
