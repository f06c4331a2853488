"""An external fuzzer against a real gunicorn: `st run <base>/api/v1/openapi.json --checks all`
(schemathesis 4's CLI) with a valid token finds nothing. `schemathesis.toml` at the repository
root says which 400s a schema cannot foresee (signed cursors, the stats range)."""

from __future__ import annotations

import subprocess

import pytest

from tests.servers import BIN, ROOT, running_gunicorn, service_env

TOKEN = "fuzz-" + "t" * 40


@pytest.mark.slow
def test_schemathesis_cli_finds_no_failure(database_url: str) -> None:
    env = service_env(database_url, API_TOKENS=TOKEN, JSMS_APPS="app-one:secret-one")
    with running_gunicorn(env, workers=1) as server:
        base_url = server.url
        result = subprocess.run(
            [str(BIN / "st"), "run", f"{base_url}/api/v1/openapi.json",
             "--header", f"Authorization: Bearer {TOKEN}", "--checks", "all",
             "--max-examples", "25", "--seed", "12", "--no-color"],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failures" not in result.stdout.split("SUMMARY")[-1]
