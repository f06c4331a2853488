"""Every bench runs end to end at its smallest size, so none can rot between measurements.

Each runs as CI and bench/README.md run it, `python -m bench.<name>` from the repository's root,
with `--smoke`: tiny sizes, and only its accounting checks (every record stored once, no non-2xx;
the rollup's answers equal the reports-scanning ones) decide the exit status; the timings mean
nothing here. The figures themselves live in bench/README.md.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import IN_CI, postgres_unavailable_reason

ROOT = Path(__file__).resolve().parent.parent


def run_bench(*args: str, timeout: int = 240) -> subprocess.CompletedProcess[str]:
    """`python -m bench.<...> args` from the root; fails the test with its output unless exit 0."""
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{output}"
    return done


@pytest.fixture
def postgres() -> None:
    reason = postgres_unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.mark.slow
def test_query_bench_runs(postgres: None) -> None:
    out = run_bench("bench.query", "--reports", "3000", "--smoke").stdout
    assert "30-day stats, UTC" in out


@pytest.mark.slow
def test_opt_out_bench_runs(postgres: None) -> None:
    out = run_bench("bench.opt_outs", "--replies", "2000", "--smoke").stdout
    assert "migrated to head" in out


@pytest.mark.slow
def test_drain_bench_runs(postgres: None) -> None:
    out = run_bench(
        "bench.drain", "--apps", "1", "2", "--reports", "20", "--window", "0.1", "--smoke"
    ).stdout
    assert "postgresql" in out and "sqlite" in out


@pytest.mark.slow
def test_rollup_speed_bench_runs(postgres: None) -> None:
    out = run_bench("bench.rollup_speed", "--smoke").stdout
    assert "rollup answers exact" in out and "4,000 reports" in out


@pytest.mark.slow
def test_rollup_cost_bench_runs(postgres: None) -> None:
    out = run_bench("bench.rollup_cost", "--smoke").stdout
    assert "adds up" in out and "grouped  ratio on/off" in out


@pytest.mark.slow
def test_ingest_bench_runs(postgres: None) -> None:
    if shutil.which("wrk") is None:
        message = "wrk (Debian's wrk package; .ci/run installs it)"
        if IN_CI:
            pytest.fail(f"CI=true requires {message}", pytrace=False)
        pytest.skip(f"needs {message}")
    out = run_bench(
        "bench.ingest.bench", "--smoke", "--request-side", "--round-trip", "--writer-process"
    ).stdout
    assert "checks: all held" in out
    # Every app served: the parts of a callback, the service with one more round trip and the
    # one writing from a process of its own, each storing its own bodies (rows = 2xx counted
    # for every app that stores).
    assert "the writer's database work" in out and "one more round trip a group" in out
    assert "in a process of its own" in out
    assert "service + round-trip + writer-process non-2xx: 0" in out


def test_process_handoff_bench_runs() -> None:
    out = run_bench("bench.ingest.process_handoff", "--callbacks", "50", "--repeats", "1").stdout
    assert "ratio process/thread" in out


def test_profile_summary_runs(tmp_path: Path) -> None:
    """The profile summary reads py-spy's raw format (one stack a line, then its sample count)."""
    profile = tmp_path / "profile.txt"
    profile.write_text("main (app.py:1);ingest (app/store/ingest.py:9) 3\nmain (app.py:1) 1\n")
    out = run_bench("bench.ingest.profile_summary", str(profile)).stdout
    assert "ingest" in out
