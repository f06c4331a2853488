"""The callback ingest benchmark (run.sh, bench.py) and its hello-world ceiling (hello.py)."""
