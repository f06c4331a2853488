"""The README's callback example (form fields, signature computed in the shell, curl) works
against the running service, as written."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Iterator

import pytest
from flask import Flask
from werkzeug.serving import make_server

from app.store.db import Database
from app.store.models import DeliveryReport
from tests.servers import ROOT
from tests.support import APPS


def readme_shell_block(containing: str) -> str:
    """The README's ```sh block that contains `containing`."""
    blocks = re.findall(r"^```sh\n(.*?)^```$", (ROOT / "README.md").read_text(), re.M | re.S)
    [block] = [b for b in blocks if containing in b]
    return block


@pytest.fixture
def served(app: Flask) -> Iterator[str]:
    """The app behind a real HTTP server on a free port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def test_the_readme_curl_callback_is_accepted_and_stored(served: str, database: Database) -> None:
    block = readme_shell_block("sha1sum")
    first, rest = block.split("\n", 1)
    assert first.startswith("APP_KEY=your-app-key MASTER_SECRET=your-master-secret BASE_URL=")
    ours = f"APP_KEY=app-one MASTER_SECRET={APPS['app-one']} BASE_URL={served}\n"
    answers = [
        subprocess.run(
            ["bash", "-euo", "pipefail", "-c", ours + rest],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        for _ in range(2)
    ]
    assert [json.loads(a) for a in answers] == [
        {"stored": 1, "duplicates": 0, "quarantined": 0},
        {"stored": 0, "duplicates": 1, "quarantined": 0},
    ]
    with database.session() as session:
        [stored] = session.query(DeliveryReport).all()
    assert (stored.msg_id, stored.status, stored.delivered) == ("curl-1", 4001, True)
