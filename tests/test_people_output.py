"""What a person runs answers on stdout; logs stay out of the way (WARNING and up on stderr,
`-v` for progress), while the `clock` process keeps logging at INFO."""

from __future__ import annotations

import subprocess

from tests.fake_jsms import FakeJsms, synthetic_replies
from tests.servers import BIN, ROOT, service_env
from tests.support import APPS, FAKE_WINDOW

APP, SECRET = "app-one", APPS["app-one"]


def jsms(database_url: str, fake_jsms: FakeJsms, *args: str) -> subprocess.CompletedProcess[str]:
    env = service_env(
        database_url,
        JSMS_APPS=f"{APP}:{SECRET}",
        JSMS_API_BASE_URL=fake_jsms.url,
        JSMS_RATE_LIMIT_SECONDS=str(FAKE_WINDOW),
    )
    env.pop("LOG_LEVEL", None)
    return subprocess.run(
        [str(BIN / "jsms"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_sync_over_several_calls_is_quiet_on_stderr(database_url: str, fake_jsms: FakeJsms) -> None:
    fake_jsms.add_reports(APP, 1200)
    fake_jsms.add(APP, "reply", synthetic_replies(600))
    done = jsms(database_url, fake_jsms, "sync")
    assert done.returncode == 0, done.stderr
    assert len(fake_jsms.calls) == 5
    assert [line.split(",")[0] for line in done.stdout.splitlines()] == [
        "app-one report: drained",
        "app-one reply: drained",
    ]
    assert len(done.stderr.splitlines()) <= 3, done.stderr

    fake_jsms.add_reports(APP, 10, prefix="again")
    verbose = jsms(database_url, fake_jsms, "-v", "sync", "--kind", "report")
    assert verbose.returncode == 0
    assert '"event":"pull_call"' in verbose.stderr  # progress, when asked for
    assert verbose.stdout.startswith("app-one report: drained, 1 call(s), 10 record(s)")
