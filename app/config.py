"""The one reader of the environment: every setting the service has, parsed once."""

from __future__ import annotations

import hashlib
import os
import re
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated
from zoneinfo import ZoneInfo

from flask import current_app
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.jsms.keywords import DEFAULT_OPT_IN, DEFAULT_OPT_OUT, Keywords
from app.timezones import zone_named

# prometheus_client reads PROMETHEUS_MULTIPROC_DIR itself, when it is first imported. An empty
# value (a copied .env.example, which `flask` loads into the environment) would make it write
# metric files into the working directory; empty means unset, for it as for Settings below.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR", None) == "":
    del os.environ["PROMETHEUS_MULTIPROC_DIR"]

# What to do about `Settings.ephemeral_store_problem`.
EPHEMERAL_STORE_FIX = (
    "add a database: heroku addons:create heroku-postgresql (it sets DATABASE_URL), "
    "or set DATABASE_URL to a PostgreSQL URL"
)
# Where JSMS, its carriers and their customers count their days.
DEFAULT_BUSINESS_TIMEZONE = "Asia/Shanghai"


# What may not appear in an app key or master secret: another separator than `,` between apps
# (`a:s1;b:s2` would otherwise be one app whose secret is `s1;b:s2`).
APP_SEPARATORS = re.compile(r"[;|:\s]")
# The databases the service supports, and the drivers it ships (pyproject.toml).
SUPPORTED_DATABASES = {
    "postgresql": ("psycopg",),
    "postgres": ("psycopg",),
    "sqlite": ("pysqlite",),
}
DATABASE_URL_FORMS = "postgres://user:password@host:5432/name or sqlite:////absolute/path.sqlite3"


def database_url_problem(value: str) -> None:
    """Raise ValueError saying what is wrong with a DATABASE_URL (without its text)."""
    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError(f"not a database URL; expected {DATABASE_URL_FORMS}") from None
    backend, _, driver = url.drivername.partition("+")
    if backend not in SUPPORTED_DATABASES:
        raise ValueError(
            f"{backend!r} is not supported: use PostgreSQL or SQLite ({DATABASE_URL_FORMS})"
        )
    if driver and driver not in SUPPORTED_DATABASES[backend]:
        raise ValueError(
            f"driver {driver!r} is not installed: leave it out ({backend}://…) "
            f"or use {backend}+{SUPPORTED_DATABASES[backend][0]}://…"
        )


class Settings(BaseSettings):
    """Typed settings from the environment (and `.env` in development)."""

    # An empty value (`VAR=` as in .env.example) means unset: the default applies.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    database_url: str | None = None
    jsms_apps: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    jsms_api_base_url: str = "https://api.sms.jpush.cn"
    jsms_rate_limit_seconds: float = Field(default=5.0, gt=0)
    # How often the clock reads each app's balance (GET /v1/accounts/app); 0: never.
    balance_poll_seconds: float = Field(default=600.0, ge=0)
    # A puller's lease on an app; a dead holder's lease is free after this.
    pull_lease_seconds: float = Field(default=60.0, gt=0)
    # The most apps one clock pulls at once (a thread each); more due apps wait, most urgent first.
    pull_max_parallel_apps: int = Field(default=64, ge=1)
    api_tokens: Annotated[tuple[str, ...], NoDecode] = ()
    # gunicorn.conf.py: where `web` listens, its worker processes and threads per worker.
    port: int = Field(default=5000, ge=0, le=65535)  # 0: any free port
    web_concurrency: int = Field(default=2, ge=1)
    gunicorn_threads: int = Field(default=16, ge=1)
    # Seconds a connection may stall mid-request before gunicorn closes it (0: never).
    gunicorn_read_timeout: float = Field(default=5.0, ge=0)
    # Retention in days (0 keeps forever); quarantined raw events are always kept.
    raw_event_retention_days: int = Field(default=90, ge=0)
    record_retention_days: int = Field(default=0, ge=0)
    # Where gunicorn's workers share metric files (gunicorn.conf.py sets one when unset).
    prometheus_multiproc_dir: str | None = None
    # Signs the status page's session cookie; derived from API_TOKENS when unset.
    secret_key: str | None = None
    log_level: str = "INFO"
    # PostgreSQL: a statement of a GET request (query API, status page, metrics) running longer
    # is cancelled, and the request answered 503; 0 means no limit.
    api_statement_timeout_ms: int = Field(default=10_000, ge=0)
    # Only these networks may post callbacks (empty: anyone; the signature still decides).
    callback_allowed_networks: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = ()
    # Bearer token /metrics requires when set (unset: /metrics is open, as Prometheus expects).
    metrics_token: str | None = None
    # Proxies whose X-Forwarded-For is believed (the platform's router); others' is ignored.
    trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = ()
    # Set by Heroku-style platforms on every dyno (`web.1`, `clock.1`, `release.1234`): its disk
    # does not outlive the process, so the SQLite default must not be used there; and its
    # router is the only way in, so its X-Forwarded-Proto is believed.
    dyno: str | None = None
    # The IANA zone whose days and hours the stats, BI views and status page count in.
    business_timezone: str = DEFAULT_BUSINESS_TIMEZONE
    # Replies whose whole content (trimmed, NFKC-folded, any case) opts a phone out / back in.
    opt_out_keywords: Annotated[tuple[str, ...], NoDecode] = DEFAULT_OPT_OUT
    opt_in_keywords: Annotated[tuple[str, ...], NoDecode] = DEFAULT_OPT_IN

    @field_validator("jsms_apps", mode="before")
    @classmethod
    def _parse_apps(cls, value: object) -> object:
        """`appKey:masterSecret[,appKey:masterSecret…]` into {appKey: masterSecret}; apps are
        separated by `,` only, and each app key appears once (messages never show a secret)."""
        if not isinstance(value, str):
            return value
        apps: dict[str, str] = {}
        for pair in filter(None, (p.strip() for p in value.split(","))):
            key, sep, secret = (part.strip() for part in pair.partition(":"))
            if not sep or not key or not secret:
                raise ValueError(f"JSMS_APPS entry {key!r} is not appKey:masterSecret")
            stray = APP_SEPARATORS.search(f"{key}:{secret}".replace(":", "", 1))
            if stray:
                raise ValueError(
                    f"JSMS_APPS entry {key!r} holds {stray.group()!r}: separate apps with ',' "
                    "only (appKey:masterSecret,appKey:masterSecret)"
                )
            if key in apps:
                raise ValueError(f"JSMS_APPS names app key {key!r} more than once")
            apps[key] = secret
        return apps

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        """A PostgreSQL or SQLite URL SQLAlchemy can parse (never echoed: it holds a password)."""
        if value is not None:
            database_url_problem(value)
        return value

    @field_validator("callback_allowed_networks", "trusted_proxies", mode="before")
    @classmethod
    def _parse_networks(cls, value: object) -> object:
        """Comma-separated CIDRs or addresses (`10.0.0.0/8, 203.0.113.7`)."""
        if isinstance(value, str):
            return tuple(ip_network(n.strip(), strict=False) for n in value.split(",") if n.strip())
        return value

    @field_validator("business_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        """An IANA name the tz database knows (`zone_named` says why not)."""
        zone_named(value)
        return value

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _parse_tokens(cls, value: object) -> object:
        """Comma-separated tokens; blanks ignored."""
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value

    @field_validator("opt_out_keywords", "opt_in_keywords", mode="before")
    @classmethod
    def _parse_keywords(cls, value: object) -> object:
        """Comma-separated keywords; blanks ignored (`TD, 退订, STOP`)."""
        if isinstance(value, str):
            value = tuple(k.strip() for k in value.split(",") if k.strip())
        if isinstance(value, tuple | list):
            Keywords.of(value, ())  # each 1 to 32 characters, or a ValueError naming the list
        return value

    @model_validator(mode="after")
    def _check_keywords(self) -> Settings:
        """No keyword in both lists (a reply would have to mean two things)."""
        try:
            self.keywords()
        except ValueError as exc:
            raise ValueError(f"OPT_OUT_KEYWORDS, OPT_IN_KEYWORDS: {exc}") from None
        return self

    def keywords(self) -> Keywords:
        """OPT_OUT_KEYWORDS and OPT_IN_KEYWORDS, folded for matching replies."""
        return Keywords.of(self.opt_out_keywords, self.opt_in_keywords)

    def business_zone(self) -> ZoneInfo:
        """BUSINESS_TIMEZONE as a zone."""
        return zone_named(self.business_timezone)

    def session_secret(self) -> str:
        """The cookie-signing key: SECRET_KEY, or one derived from the tokens (so changing the
        tokens also ends every session)."""
        if self.secret_key:
            return self.secret_key
        material = "\n".join(sorted(self.api_tokens)) or "no tokens: nobody can sign in"
        return hashlib.sha256(f"jsms-receipts session\n{material}".encode()).hexdigest()

    def ephemeral_store_problem(self) -> str | None:
        """Why a process must not start here, or None: on a dyno without DATABASE_URL the
        SQLite default would sit on a disk that is wiped at the next restart."""
        if not self.dyno or self.database_url:
            return None
        return (
            f"DYNO is set ({self.dyno}) but DATABASE_URL is not: the SQLite default would live "
            "on this dyno's ephemeral disk and every receipt would be lost at its next restart"
        )

    def sqlalchemy_url(self, instance_path: str) -> str:
        """The database URL to connect to, with Heroku's `postgres://` and the default resolved."""
        url = self.database_url or f"sqlite:///{instance_path}/jsms-receipts.sqlite3"
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url


def load_settings() -> Settings:
    """Settings from the environment; a bad value stops the process with a readable message
    naming the variable (never its value, which may be a secret)."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        raise SystemExit(f"configuration error: {problems}") from None


def get_settings() -> Settings:
    """The current app's settings (as `get_database()` is its database)."""
    settings: Settings = current_app.config["SETTINGS"]
    return settings
