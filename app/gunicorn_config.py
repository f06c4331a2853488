"""Gunicorn settings for `web` (`gunicorn --config python:app.gunicorn_config wsgi:app`)."""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
# WEB_CONCURRENCY is what Heroku-style platforms set per dyno size.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = 25
accesslog = "-"
