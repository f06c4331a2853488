"""CALLBACK_ALLOWED_NETWORKS, with X-Forwarded-For believed only from TRUSTED_PROXIES."""

from __future__ import annotations

import pytest

from app import create_app
from tests.support import APPS, make_settings
from tests.wire import report, signed_form

FORM = signed_form("app-one", APPS["app-one"], "SMS_REPORT", report("m1"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "status"),
    [
        ("203.0.113.9", None, 200),  # allowed network, direct
        ("198.51.100.1", None, 403),  # not allowed, direct
        ("198.51.100.1", "203.0.113.9", 403),  # untrusted peer: its X-Forwarded-For is ignored
        ("10.1.2.3", "203.0.113.9", 200),  # trusted router vouches for an allowed client
        ("10.1.2.3", "203.0.113.9, 198.51.100.1", 403),  # nearest untrusted hop decides
        ("10.1.2.3", "198.51.100.1, 203.0.113.9", 200),  # a spoofed left-most hop changes nothing
        ("10.1.2.3", "not-an-ip", 403),
    ],
)
def test_allow_list(database_url: str, peer: str, forwarded: str | None, status: int) -> None:
    settings = make_settings(
        database_url, callback_allowed_networks="203.0.113.0/24", trusted_proxies="10.0.0.0/8"
    )
    client = create_app(settings).test_client()
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    response = client.post(
        "/callbacks/jsms", data=FORM, headers=headers, environ_base={"REMOTE_ADDR": peer}
    )
    assert response.status_code == status
    if status == 403:
        assert response.get_json()["error"]["code"] == "address_not_allowed"


def test_no_allow_list_means_any_address(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/callbacks/jsms", data=FORM, environ_base={"REMOTE_ADDR": "192.0.2.1"})
    assert response.status_code == 200
