"""Concrete JSMS wire payloads (docs/jsms-protocol.md): callback forms signed the way JSMS signs
them, and the records they carry. The one signed-form builder; Hypothesis strategies of the same
payloads are in tests/strategies.py (this module stays free of Hypothesis: bench/ imports it)."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from app.jsms.signature import sign


def signed_form(
    app_key: str,
    secret: str,
    record_type: str,
    data: Any,
    *,
    nonce: str | None = None,
    timestamp: str | None = None,
) -> dict[str, str]:
    """A form body as JSMS posts it; `data` that is not a str is JSON-encoded."""
    nonce = nonce or str(secrets.randbits(62))
    timestamp = timestamp or str(int(time.time() * 1000))
    return {
        "nonce": nonce,
        "timestamp": timestamp,
        "signature": sign(app_key, secret, nonce, timestamp),
        "type": record_type,
        "data": data if isinstance(data, str) else json.dumps(data),
    }


def report(
    msg_id: str, phone: str = "13800138000", status: int = 4001, receive_time: Any = 1575015093000
) -> dict[str, Any]:
    """One SMS_REPORT item."""
    return {"msgId": msg_id, "phone": phone, "status": status, "receiveTime": receive_time}
