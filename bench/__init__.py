"""Benchmarks: each module measures one speed target against a baseline taken in the same run.

Run them from the repository's root as modules (`python -m bench.query`, `python -m bench.drain`,
`python -m bench.ingest.bench`); they import the test plumbing from the `tests` package. Method,
command lines and current figures: bench/README.md.
"""
