"""JSMS callback signatures: sha1 over the app's key, master secret, nonce and timestamp."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping


def sign(app_key: str, master_secret: str, nonce: str, timestamp: str) -> str:
    """The hex signature JSMS sends with a callback for this app, nonce and timestamp."""
    text = f"appKey={app_key}&appMasterSecret={master_secret}&nonce={nonce}&timestamp={timestamp}"
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def find_signer(apps: Mapping[str, str], nonce: str, timestamp: str, signature: str) -> str | None:
    """The app key among `apps` whose secret produces `signature`, or None.

    Every candidate is compared in constant time, and all of them are tried, so the answer's
    timing does not tell which app (if any) came close.
    """
    received = signature.strip().lower().encode("ascii", "replace")
    found = None
    for app_key, secret in apps.items():
        expected = sign(app_key, secret, nonce, timestamp).encode("ascii")
        if hmac.compare_digest(expected, received) and found is None:
            found = app_key
    return found
