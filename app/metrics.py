"""The process's Prometheus counters and histograms, which both ways in (callbacks and the
puller) update. They live in each process and are aggregated across gunicorn's workers through
`PROMETHEUS_MULTIPROC_DIR`; `app/ops/scrape.py` serves them with the store's gauges."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

CALLBACKS = Counter(
    "jsms_callbacks_total", "Callbacks received, by JSMS type and outcome.", ["type", "outcome"]
)
INGEST_SECONDS = Histogram(
    "jsms_ingest_duration_seconds",
    "Time to store one payload and commit it, by source.",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
PULL_SECONDS = Histogram(
    "jsms_pull_call_duration_seconds",
    "Upstream pull calls, including storing the batch, by kind and result (clock process).",
    ["kind", "result"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
GROUP_SIZE = Histogram(
    "jsms_callback_group_size",
    "Callbacks stored together in one transaction by a web worker's group commit.",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
RECORDS = Counter(
    "jsms_records_total",
    "Records ingested, by source, kind and result.",
    ["source", "kind", "result"],
)
SIGNATURES_REFUSED = Counter(
    "jsms_callback_signatures_refused_total",
    "Uses of a signature with other data: reused (kept, quarantined) or flooded (past the "
    "payloads one signature keeps, refused).",
    ["reason"],
)

PROCESS_METRICS = (CALLBACKS, GROUP_SIZE, INGEST_SECONDS, PULL_SECONDS, RECORDS, SIGNATURES_REFUSED)
