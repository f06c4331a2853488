#!/usr/bin/env bash
# The callback ingest benchmark: service vs hello-world under the same gunicorn, with wrk.
#   bench/ingest/run.sh [--rounds 3 --duration 15 --connections 32 --threads 2]
#                       [--profile] [--memory 100000]      (all options: --help)
# Needs: PostgreSQL on 127.0.0.1:5432 with trust auth for `postgres` (or BENCH_POSTGRES_ADMIN_URL),
# wrk (installed with apt-get when run as root), the project's venv with the `bench` extra.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "[bench] installing wrk (Debian package)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
    else
        echo "[bench] wrk is required: apt-get install wrk (or your OS's package)" >&2
        exit 2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3.11 -m venv .venv
fi
if ! .venv/bin/python -c "import app" 2>/dev/null || [ ! -x .venv/bin/py-spy ]; then
    echo "[bench] installing the project with the bench extra into .venv"
    .venv/bin/pip install -q -e '.[bench]'
fi

exec .venv/bin/python -m bench.ingest.bench "$@"
