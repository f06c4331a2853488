"""Why the database could not be used, in the driver's words, for people (never a password)."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url

# The driver's message is kept to this many characters (a whole line, in practice).
MAX_REASON = 300


def database_problem(error: BaseException, url: URL | str) -> str:
    """The driver's reason (`database "x" does not exist`, `Connection refused`, `no such
    table: sync_state`) on one line, the URL's password masked wherever it appears."""
    cause = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    # SQLAlchemy's own trailer lines say nothing about the cause.
    lines = [line for line in lines if not line.startswith(("[SQL", "(Background on"))]
    reason = "; ".join(lines) or type(cause).__name__
    password = make_url(url).password if isinstance(url, str) else url.password
    if password:
        reason = reason.replace(str(password), "***")
    return reason[:MAX_REASON]
