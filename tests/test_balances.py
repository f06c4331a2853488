"""The balance watch against the fake JSMS: the clock's job reads every app's balance in its
turn of the rate window, keeps the history, and `/metrics`, `/api/v1/balances` and the status
page show it; a failed read is shown like a pull error and never stops pulling."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from app.jsms.accounts import Balance, NotABalance, parse_balance
from app.jsms.client import JsmsApiError, JsmsClient, UpstreamUnavailable
from app.jsms.codes import explain
from app.pull.balance import BalanceReader, ReadOutcome, read_balances
from app.pull.clock import build_scheduler
from app.pull.puller import Puller
from app.pull.state import PassOutcome, SyncPolicy
from app.store.db import Database
from app.store.models import AppBalance, DeliveryReport, SyncState
from tests.fake_jsms import FakeJsms
from tests.support import APPS, FAKE_WINDOW, TOKEN, row_count

APP, SECRET = "app-one", APPS["app-one"]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EVERY = 600.0


@pytest.fixture
def puller(fake_jsms: FakeJsms, store: Database, tmp_path: Path) -> Iterator[Puller]:
    with JsmsClient(fake_jsms.url) as client:
        yield Puller(store, client, SyncPolicy(window=FAKE_WINDOW), spool=tmp_path)


def backdate(store: Database, delta: timedelta) -> None:
    """Move every read kept back in time (the reads were made `delta` earlier)."""
    with store.session() as session, session.begin():
        for read in session.scalars(select(AppBalance)):
            read.read_at -= delta


def balances(client: FlaskClient) -> dict[str, dict[str, object]]:
    response = client.get("/api/v1/balances", headers=AUTH)
    assert response.status_code == 200, response.get_json()
    return {item["app_key"]: item for item in response.get_json()["items"]}


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of a Prometheus exposition, None when absent."""
    wanted = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_the_clocks_job_reads_every_balance_and_keeps_the_history(
    client: FlaskClient, fake_jsms: FakeJsms, puller: Puller, store: Database
) -> None:
    scheduler = build_scheduler(puller, None, APPS, EVERY)
    job = scheduler.get_job("balance")
    assert job is not None and job.args[0].every == EVERY
    assert build_scheduler(puller, None, APPS, 0).get_job("balance") is None  # 0: never
    fake_jsms.set_balance(APP, app_balance=1000, app_industry=600, app_market=400)
    job.func(*job.args)  # what the scheduler runs, driven here
    assert {c.kind for c in fake_jsms.calls} == {"balance"} and len(fake_jsms.calls) == 2
    job.func(*job.args)
    assert len(fake_jsms.calls) == 2, "read again before BALANCE_POLL_SECONDS"

    item = balances(client)[APP]
    assert item["app_balance"] == 1000 and item["app_industry"] == 600
    assert item["app_voice"] is None  # left out of the answer
    assert item["seconds_left"] == {
        "balance": None,
        "voice": None,
        "industry": None,
        "market": None,
    }
    assert item["last_error_code"] is None and item["last_result"] == "ok"

    # Twelve hours later, 300 of each spent: at that rate the balance lasts 28 h.
    backdate(store, timedelta(hours=12))
    fake_jsms.set_balance(APP, app_balance=700, app_industry=300, app_market=100)
    job.func(*job.args)
    item = balances(client)[APP]
    assert item["app_balance"] == 700
    assert item["consumed_last_day"] == {"balance": 300, "voice": 0, "industry": 300, "market": 300}
    seconds_left = item["seconds_left"]
    assert isinstance(seconds_left, dict)
    assert seconds_left["balance"] == pytest.approx(28 * 3600, rel=0.01)
    assert seconds_left["market"] == pytest.approx(4 * 3600, rel=0.01)
    assert seconds_left["voice"] is None

    history = client.get("/api/v1/balances/history?app_key=app-one", headers=AUTH).get_json()
    assert [r["app_balance"] for r in history["items"]] == [1000, 700]
    assert history["next_cursor"] is None and row_count(store, AppBalance) == 4

    text = client.get("/metrics").text
    assert sample(text, "jsms_app_balance", app_key=APP, kind="balance") == 700
    assert sample(text, "jsms_app_balance", app_key=APP, kind="voice") is None
    assert sample(text, "jsms_app_balance_consumed_last_day", app_key=APP, kind="market") == 300
    left = sample(text, "jsms_app_balance_seconds_left", app_key=APP, kind="market")
    assert left == pytest.approx(4 * 3600, rel=0.01)
    assert sample(text, "jsms_app_balance", app_key="app-two", kind="balance") == 1000

    assert client.post("/login", data={"token": TOKEN}).status_code == 302
    html = client.get("/").get_data(as_text=True)
    rows = html.split('<table id="balances">')[1].split("</table>")[0]
    assert '<tr data-app="app-one" data-kind="market">' in rows
    assert '<td class="error">4 h 0 min</td>' in rows  # out within a day: red
    assert "<td>700</td><td>300<br>" in rows


def test_consumption_ignores_top_ups(
    client: FlaskClient, fake_jsms: FakeJsms, puller: Puller, store: Database
) -> None:
    reader = BalanceReader(puller, {APP: SECRET}, EVERY)
    # 1,000 fifteen hours ago, 800 five hours ago, 5,000 now: 200 spent, 4,200 bought.
    for count, later in ((1000, 10), (800, 5), (5000, 0)):
        fake_jsms.set_balance(APP, app_balance=count)
        assert reader.read(APP) == ReadOutcome.READ
        backdate(store, timedelta(hours=later))
    item = balances(client)[APP]
    assert item["consumed_last_day"]["balance"] == 200  # type: ignore[index]


def test_a_balance_read_and_a_pull_due_together_never_meet_in_the_window(
    fake_jsms: FakeJsms, puller: Puller, store: Database
) -> None:
    """Whichever goes first, the other waits for the window: the fake never answers 50201."""
    reader = BalanceReader(puller, {APP: SECRET}, EVERY)
    fake_jsms.add_reports(APP, 1200)  # three batches
    assert reader.read(APP) == ReadOutcome.READ
    puller.sync_app(APP, SECRET, ["report"])  # at once after the read
    assert reader.read(APP) == ReadOutcome.READ  # at once after the pass
    fake_jsms.add_reports(APP, 1200, prefix="again")
    # Side by side, as the clock's dispatcher and scheduler threads run them. A pass that finds
    # a read holding the app's lease ends "busy", and the clock tries it again a moment later.
    outcomes: list[ReadOutcome] = []

    def pull_as_the_clock_does() -> None:
        for _ in range(100):
            results = puller.sync_app(APP, SECRET, ["report"])
            if all(result.outcome != PassOutcome.BUSY for result in results):
                return
            time.sleep(0.05)

    threads = [
        threading.Thread(target=pull_as_the_clock_does),
        threading.Thread(target=lambda: outcomes.extend(reader.read(APP) for _ in range(3))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert fake_jsms.calls_with(50201) == []
    assert row_count(store, DeliveryReport) == 2400
    assert len(outcomes) == 3 and len(fake_jsms.calls_with(None, APP)) >= 2 + 6


def test_a_failed_read_is_shown_like_a_pull_error_and_pulling_goes_on(
    client: FlaskClient, fake_jsms: FakeJsms, puller: Puller, store: Database
) -> None:
    fake_jsms.fail_balance(APP, 401, 50002, "auth failed")
    fake_jsms.add_reports(APP, 3)
    reader = BalanceReader(puller, APPS, EVERY)
    read_balances(reader)  # the clock's job
    [result] = puller.sync_app(APP, SECRET, ["report"])
    assert result.outcome == "drained" and row_count(store, DeliveryReport) == 3
    with store.session() as session:
        state = session.get(SyncState, (APP, "report"))
        assert state is not None and state.mode == "pull" and state.last_error_code is None

    item = balances(client)[APP]
    assert item["last_error_code"] == 50002 and item["last_result"] == "50002"
    assert item["last_error_text"] == explain(50002).meaning  # type: ignore[union-attr]
    assert item["app_balance"] is None and item["read_at"] is None
    assert balances(client)["app-two"]["app_balance"] == 1000

    text = client.get("/metrics").text
    assert sample(text, "jsms_app_balance_read_failing", app_key=APP, result="50002") == 1
    assert sample(text, "jsms_app_balance_read_failing", app_key="app-two", result="ok") is None
    assert client.post("/login", data={"token": TOKEN}).status_code == 302
    html = client.get("/").get_data(as_text=True)
    rows = html.split('<table id="balances">')[1].split("</table>")[0]
    assert '<span class="error">50002</span>' in rows and "auth failed" in rows

    # Fixed in the console: the next read is good again, the error is gone.
    fake_jsms.set_balance(APP, app_balance=5)
    backdate(store, timedelta(seconds=EVERY))
    read_balances(reader)
    item = balances(client)[APP]
    assert item["app_balance"] == 5 and item["last_error_code"] is None


def test_the_fake_serves_the_balance_in_the_apps_window(fake_jsms: FakeJsms) -> None:
    with JsmsClient(fake_jsms.url) as client:
        assert client.balance(APP, SECRET) == Balance(1000, 0, 600, 400)
        with pytest.raises(JsmsApiError) as too_soon:
            client.pull(APP, SECRET, "report")  # type: ignore[arg-type]
        assert too_soon.value.code == 50201  # one window for pulls and the balance
        with pytest.raises(JsmsApiError) as wrong:
            client.balance(APP, "not-the-secret")
        assert wrong.value.code == 50002 and wrong.value.http_status == 401


def test_a_200_that_is_not_a_balance_is_an_unavailable_upstream() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>maintenance</html>")

    transport = httpx.MockTransport(answer)
    with (
        JsmsClient("http://jsms.test", transport=transport) as client,
        pytest.raises(UpstreamUnavailable, match="not a balance answer"),
    ):
        client.balance(APP, SECRET)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"app_balance": 5}, Balance(balance=5)),
        ({"app_balance": "12", "app_voice": 3.0, "extra": "x"}, Balance(balance=12, voice=3)),
        ({"app_balance": None, "app_market": -1}, Balance(market=-1)),
    ],
)
def test_balance_answers_are_parsed(data: object, expected: Balance) -> None:
    assert parse_balance(data) == expected


@pytest.mark.parametrize(
    "data",
    [[], {}, {"other": 1}, {"app_balance": True}, {"app_balance": "many"}, {"app_balance": 1.5},
     {"app_balance": "²"}, {"app_balance": "-١٢"}],
)
def test_what_is_not_a_balance_is_refused(data: object) -> None:
    with pytest.raises(NotABalance):
        parse_balance(data)


def test_the_history_is_paged_and_bad_parameters_are_refused(
    client: FlaskClient, fake_jsms: FakeJsms, puller: Puller, store: Database
) -> None:
    reader = BalanceReader(puller, {APP: SECRET}, EVERY)
    for count in (30, 20, 10):
        fake_jsms.set_balance(APP, app_balance=count)
        assert reader.read(APP) == ReadOutcome.READ
    seen: list[int] = []
    cursor = None
    while True:
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/balances/history", query_string=query, headers=AUTH)
        assert page.status_code == 200
        seen += [item["app_balance"] for item in page.get_json()["items"]]
        cursor = page.get_json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [30, 20, 10]
    exported = client.get("/api/v1/balances/history?format=csv", headers=AUTH)
    assert exported.get_data(as_text=True).splitlines()[0].startswith("id,app_key,read_at,result")
    for path, query in (
        ("/api/v1/balances", {"app_key": APP}),
        ("/api/v1/balances/history", {"since": "soon"}),
        ("/api/v1/balances/history", {"kind": "voice"}),
    ):
        response = client.get(path, query_string=query, headers=AUTH)
        assert response.status_code == 400, (path, query)
        assert response.get_json()["error"]["code"] == "invalid_parameter"
    assert client.get("/api/v1/balances").status_code == 401
    assert client.get("/api/v1/balances/history").status_code == 401


def test_the_clocks_pass_and_balance_job_due_together_share_the_window(
    fake_jsms: FakeJsms, puller: Puller, store: Database
) -> None:
    """The dispatcher's pass and the scheduler's balance job, started at the same moment for a
    never-pulled, never-read app: one waits for the other, the fake never answers 50201."""
    from app.pull.dispatch import Dispatcher, run_pass

    fake_jsms.add_reports(APP, 1100)
    job = build_scheduler(puller, None, {APP: SECRET}, EVERY).get_job("balance")
    assert job is not None
    dispatcher = Dispatcher(puller, {APP: SECRET}, max_parallel=1)
    balance_job = threading.Thread(target=job.func, args=job.args)
    balance_job.start()
    assert dispatcher.dispatch() == [APP]
    balance_job.join(timeout=60)
    dispatcher.shutdown()
    # What the next tick and the next look do for whichever found the lease taken.
    run_pass(puller, APP, SECRET, ["report"])
    job.func(*job.args)
    assert fake_jsms.calls_with(50201) == []
    assert row_count(store, DeliveryReport) == 1100
    assert row_count(store, AppBalance) == 1
    assert [c.kind for c in fake_jsms.calls].count("balance") == 1
