"""The one token check: the query API's bearer header and the status page's sign-in use it."""

from __future__ import annotations

import hashlib
import hmac

from flask import Flask, Request, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from app.config import get_settings
from app.errors import Unauthenticated
from app.network import came_over_https


def token_digest(token: str) -> str:
    """SHA-256 of a token: what is compared, and what a session cookie keeps instead of it."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def digest_is_known(digest: str, tokens: tuple[str, ...]) -> bool:
    """True when `digest` is one of the tokens' digests; with no tokens, never.

    Digests have one length whatever the token's, and every token is compared, so the time
    taken says nothing about which token matched or how long it is.
    """
    matches = [hmac.compare_digest(digest, token_digest(t)) for t in tokens]
    return bool(digest) and any(matches)


def token_is_valid(token: str, tokens: tuple[str, ...]) -> bool:
    """True when `token` is one of the configured tokens."""
    return bool(token) and digest_is_known(token_digest(token), tokens)


def require_bearer(request: Request, tokens: tuple[str, ...]) -> None:
    """Raise `Unauthenticated` unless the request carries `Authorization: Bearer <token>`."""
    scheme, _, given = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token_is_valid(given.strip(), tokens):
        raise Unauthenticated(
            "a valid bearer token is required",
            headers={"WWW-Authenticate": 'Bearer realm="jsms-receipts"'},
        )


class SessionCookie(SecureCookieSessionInterface):
    """Flask's signed cookie, marked `Secure` whenever the request came over https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        settings = get_settings()
        return came_over_https(request, settings.trusted_proxies, settings.dyno is not None)

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """No session for JSMS's callbacks, nor for the query API (a bearer token, never a
        cookie): building the signer to read one cost each callback ~4 % of a worker's CPU
        (`bench/ingest/run.sh --profile`), each API request 15 us. Flask then hands the view a
        null session and saves nothing."""
        if request.path.startswith(("/callbacks/", "/api/")):
            return None
        return super().open_session(app, request)
