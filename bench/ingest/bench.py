"""Callback ingest under load: the service vs a hello-world Flask app, same gunicorn, same wrk.

Run through `bench/ingest/run.sh` (it installs wrk and the bench extra), or from the repository's
root as `python -m bench.ingest.bench`. Steps, all on loopback:
1. create a throwaway PostgreSQL database and migrate it;
2. start `gunicorn --config gunicorn.conf.py` twice, on `wsgi:app` and on
   `bench.ingest.hello:app` (the command lines differ only in the app module);
3. warm both up, then alternate wrk rounds (hello, service, hello, service, …) sending unique,
   signed SMS_REPORT callbacks; after each service round check that the rows stored equal the
   2xx answers counted (no loss, no double counting);
4. optionally profile the service with py-spy, and measure a worker's RSS over N callbacks;
5. print medians (req/s, p50, p99), the ratio, the checks; write JSON to bench/results/;
6. stop everything and drop the database.

Exit status: 0 when every check held (non-2xx, rows vs 2xx) and every target was met (issue 13:
ratio >= 0.5, p99 < 50 ms, gunicorn CPU <= 2.0 ms and PostgreSQL CPU <= 0.3 ms per callback;
issue 27: gunicorn's CPU per callback <= 3x a hello-world request's; all medians of the
rounds), 1 otherwise. `--smoke` (CI): one short round each, and only the accounting
checks decide the exit status (not a round running out of bodies); the figures mean nothing
at that length.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg

from app.jsms.signature import sign
from tests.servers import Gunicorn as Server
from tests.servers import free_port, running_gunicorn
from tests.support import sample, throwaway_postgres

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

APP_KEY, SECRET = "bench-app", "bench-secret"
CALLBACK_PATH = "/callbacks/jsms"
HELLO_APP = "bench.ingest.hello:app"  # gunicorn imports it from the working directory, the root
REQUEST_SIDE_APP = "bench.ingest.request_side:app"  # the service, its writer answering at once
HANDOFF_APP = "bench.ingest.handoff:app"  # the service, its writer's groups answered at once
ROUND_TRIP_APP = "bench.ingest.round_trip:app"  # the service, one more round trip a group
WRITER_PROCESS_APP = "bench.ingest.writer_process:app"  # the service, its writer's DB work apart
# The apps that store what they are sent: each has its rows counted, and each gets bodies of
# its own (another one sent the same bodies would only count retries).
STORING = ("service", "round-trip", "writer-process")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the database -----------------------------------------------------------------------------


@contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    """A fresh migrated database `jsms_bench_<random>`; dropped on the way out, whatever happens."""
    with throwaway_postgres(admin_url, prefix="jsms_bench") as url:
        log(f"database {url.rsplit('/', 1)[1]} created and migrated")
        yield url.replace("postgresql+psycopg://", "postgresql://", 1)
    log("database dropped")


def count_rows(url: str) -> tuple[int, int]:
    """(delivery_reports, raw_events) right now."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        reports = conn.execute("SELECT count(*) FROM delivery_reports").fetchone()
        raws = conn.execute("SELECT count(*) FROM raw_events").fetchone()
    return int(reports[0]), int(raws[0])  # type: ignore[index]


# --- the load ---------------------------------------------------------------------------------


def write_bodies(path: Path, count: int, tag: str) -> None:
    """`count` signed SMS_REPORT callbacks, one form body a line, each with its own msgId."""
    rng = random.Random(tag)
    now_ms = int(time.time() * 1000)
    with path.open("w") as out:
        for i in range(count):
            nonce, timestamp = str(rng.getrandbits(62)), str(now_ms + i)
            data = {
                "msgId": f"{tag}-{i}",
                "status": 4001 if i % 10 else 4003,
                "receiveTime": now_ms - 5000,
                "phone": f"13{rng.randrange(10**9):09d}",
            }
            body = {
                "nonce": nonce,
                "timestamp": timestamp,
                "signature": sign(APP_KEY, SECRET, nonce, timestamp),
                "type": "SMS_REPORT",
                "data": json.dumps(data, separators=(",", ":")),
            }
            out.write(urlencode(body) + "\n")


@dataclass
class Load:
    """What one wrk run did (the BENCH_RESULT line callbacks.lua prints)."""

    app: str
    result: dict[str, float]
    rows: int | None = None  # delivery_reports added during the run (service only)
    raws: int | None = None  # raw_events added during the run (service only)
    counted: bool = False  # a fixed number of callbacks: running out of bodies is the end

    @property
    def non_2xx(self) -> int:
        r = self.result
        return int(r["not_ok"] + (r["sent"] - r["answered"]))

    def check(self, window: bool = True) -> list[str]:
        """What went wrong with this run's accounting, if anything; with `window`, also a
        round that ran out of bodies before its load window ended (its rate is then a floor,
        not a measure: what `--smoke`, whose figures mean nothing, does not ask)."""
        r, problems = self.result, []
        if r["sent"] != r["answered"]:
            problems.append(f"{r['sent'] - r['answered']:.0f} callbacks sent got no answer")
        if r["not_ok"]:
            problems.append(f"{r['not_ok']:.0f} non-2xx answers ({r['statuses']})")
        if self.rows is not None and self.rows != r["ok"]:
            problems.append(f"rows stored {self.rows} != 2xx answers {r['ok']:.0f}")
        if self.raws is not None and self.raws != r["ok"]:
            problems.append(f"raw events {self.raws} != 2xx answers {r['ok']:.0f}")
        if self.rows is not None and r["stored_sum"] != r["ok"]:
            problems.append(f"answers said stored {r['stored_sum']:.0f}, expected {r['ok']:.0f}")
        if window and r["exhausted"] and not self.counted:
            problems.append("bodies ran out before the load window ended (raise --max-rate)")
        return problems


def wrk_command(
    args: argparse.Namespace,
    port: int,
    bodies: Path,
    per_thread: int,
    duration: float,
    load_seconds: float,
) -> list[str]:
    """wrk sending the prepared signed bodies (callbacks.lua) to the callback URL."""
    return [
        "wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{int(duration)}s",
        "--timeout", "10s", "-s", str(HERE / "callbacks.lua"),
        f"http://127.0.0.1:{port}{CALLBACK_PATH}", "--", str(bodies), str(per_thread),
        str(load_seconds),
    ]  # fmt: skip


def run_wrk(
    port: int, bodies: Path, per_thread: int, load_seconds: float, args: argparse.Namespace
) -> dict[str, float]:
    """One wrk run; its BENCH_RESULT as a dict. wrk's own -d bounds it whatever happens."""
    budget = (load_seconds or args.count_timeout) + args.drain_seconds
    command = wrk_command(args, port, bodies, per_thread, budget, load_seconds)
    out = subprocess.run(command, capture_output=True, text=True, timeout=budget + 60, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            parsed: dict[str, float] = json.loads(line.removeprefix("BENCH_RESULT "))
            return parsed
    raise RuntimeError(f"wrk printed no BENCH_RESULT:\n{out.stdout}\n{out.stderr}")


# --- the servers ------------------------------------------------------------------------------


def gunicorn_args(app_module: str, port: int) -> list[str]:
    """The one command line both apps run under; only `app_module` differs."""
    return [
        "--config",
        "gunicorn.conf.py",  # what `web: gunicorn wsgi:app` reads from the working directory
        "--bind",
        f"127.0.0.1:{port}",  # loopback only, whatever the config binds
        app_module,
    ]


@contextmanager
def gunicorn(
    name: str, app_module: str, port: int, env: dict[str, str], log_path: Path
) -> Iterator[Server]:
    """A running gunicorn (tests/servers.py's launcher), stopped on the way out."""
    args = gunicorn_args(app_module, port)
    log(f"starting {name}: gunicorn {' '.join(args)}")
    with running_gunicorn(
        env, workers=None, args=args, port=port, log_path=log_path, name=name
    ) as server:
        yield server


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the given processes have used so far."""
    return sum(cpu_split(pids))


def cpu_split(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU time the given processes have used so far: the system part is the
    kernel's, for their sockets, pipes, futex wake-ups and scheduling."""
    ticks = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for pid in pids:
        with suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            user, system = user + int(fields[11]), system + int(fields[12])  # utime, stime
    return user / ticks, system / ticks


def thread_files(pids: list[int], name: str) -> Iterator[str]:
    """The text of /proc's `name` file of every thread of the given processes still running."""
    for pid in pids:
        with suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with suppress(OSError):
                    yield (task / name).read_text()


def children(pids: list[int]) -> list[int]:
    """The processes the given ones started (any of their threads), still running."""
    return [int(child) for text in thread_files(pids, "children") for child in text.split()]


def context_switches(pids: list[int]) -> int:
    """Context switches (voluntary and not) of every thread of the given processes so far: a
    thread that blocks (on a lock, the GIL, a socket) and is woken again counts one each time."""
    return sum(
        int(line.split()[1])
        for text in thread_files(pids, "status")
        for line in text.splitlines()
        if "ctxt_switches:" in line  # voluntary_… and nonvoluntary_…
    )


def backends_of(database: str) -> list[int]:
    """PostgreSQL backend pids serving `database` (their process title names it)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with suppress(OSError):
                title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if title.startswith("postgres: ") and f" {database} " in title:
                    pids.append(int(proc.name))
    return pids


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


# --- the steps --------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, db_url: str, out_dir: Path) -> None:
        self.args, self.db_url, self.out_dir = args, db_url, out_dir
        self.tag = uuid.uuid4().hex[:8]
        self.files = 0

    def bodies(self, count: int) -> Path:
        """A fresh file of `count` unique callbacks (unique across the whole run)."""
        self.files += 1
        path = self.out_dir / f"bodies-{self.files}.txt"
        write_bodies(path, count, f"{self.tag}-{self.files}")
        return path

    def per_thread(self, load_seconds: float) -> int:
        return int(self.args.max_rate * load_seconds / self.args.threads) + 1

    def load(self, server: Server, bodies: Path, per_thread: int, seconds: float) -> Load:
        """One round against `server`; for an app that stores, with the rows it added."""
        before = count_rows(self.db_url) if server.name in STORING else None
        # gunicorn's total: the master (its arbiter loop, signals), every worker and whatever a
        # worker started (writer_process.py's writers).
        gunicorn_pids = [server.pid, *server.worker_pids()]
        gunicorn_pids += children(server.worker_pids())
        db_name = self.db_url.rsplit("/", 1)[1]
        (user0, sys0), (busy0, all0) = cpu_split(gunicorn_pids), machine_busy()
        switches0 = context_switches(gunicorn_pids)
        db0 = {pid: cpu_seconds([pid]) for pid in backends_of(db_name)}
        result = run_wrk(server.port, bodies, per_thread, seconds, self.args)
        (user1, sys1), (busy1, all1) = cpu_split(gunicorn_pids), machine_busy()
        switches = context_switches(gunicorn_pids) - switches0
        db1 = {pid: cpu_seconds([pid]) for pid in backends_of(db_name)}
        db_cpu = sum(db1[pid] - db0.get(pid, 0.0) for pid in db1)
        answered = max(result["answered"] + result["drained"], 1)
        cpu = user1 - user0 + sys1 - sys0
        result["gunicorn_cpu_ms_per_request"] = round(1000 * cpu / answered, 3)
        result["gunicorn_sys_ms_per_request"] = round(1000 * (sys1 - sys0) / answered, 3)
        result["switches_per_request"] = round(switches / answered, 2)
        result["db_cpu_ms_per_request"] = round(1000 * db_cpu / answered, 3)
        result["machine_busy_pct"] = round(100 * (busy1 - busy0) / max(all1 - all0, 1e-9), 1)
        load = Load(server.name, result)
        if before is not None:
            after = count_rows(self.db_url)
            load.rows, load.raws = after[0] - before[0], after[1] - before[1]
        return load

    def rounds(self, servers: list[Server]) -> list[Load]:
        """Warm-up, then `--rounds` rounds, each app in turn (hello first, then the APPS order)."""
        a = self.args
        runs: list[Load] = []
        per_thread = self.per_thread(a.warmup)
        files = self.round_bodies(servers, per_thread * a.threads)
        for server in servers:
            warm = self.load(server, files[server.name], per_thread, a.warmup)
            log(f"warm-up {server.name}: {warm.result['rate']:.0f} req/s {warm.check() or ''}")
        for path in set(files.values()):
            path.unlink()
        per_thread = self.per_thread(a.duration)
        for number in range(1, a.rounds + 1):
            files = self.round_bodies(servers, per_thread * a.threads)
            for server in servers:
                load = self.load(server, files[server.name], per_thread, a.duration)
                runs.append(load)
                r = load.result
                log(
                    f"round {number} {server.name:12}: {r['rate']:8.1f} req/s  "
                    f"p50 {r['p50_us'] / 1000:6.2f} ms  p99 {r['p99_us'] / 1000:6.2f} ms  "
                    f"2xx {r['ok']:.0f}  non-2xx {load.non_2xx}  rows {load.rows}  "
                    f"CPU ms/req: gunicorn {r['gunicorn_cpu_ms_per_request']:.3f} "
                    f"(kernel {r['gunicorn_sys_ms_per_request']:.3f}) "
                    f"switches/req {r['switches_per_request']:.1f}  "
                    f"db {r['db_cpu_ms_per_request']:.2f}  "
                    f"machine busy {r['machine_busy_pct']:.0f}%  "
                    f"{'; '.join(load.check()) or 'ok'}"
                )
            for path in set(files.values()):
                path.unlink()
        return runs

    def round_bodies(self, servers: list[Server], count: int) -> dict[str, Path]:
        """Each app's bodies for one round: one file for the apps that store nothing and the
        first that stores, and a file of its own for every other app that stores."""
        shared = self.bodies(count)
        others = [server.name for server in servers if server.name in STORING][1:]
        return {s.name: self.bodies(count) if s.name in others else shared for s in servers}

    def profile(self, service: Server) -> dict[str, object]:
        """py-spy on every worker during one more service round (not a measured one).

        Two views: "wall" samples every busy thread (time a request spends, waits included);
        "cpu" (--gil) samples only the thread holding the GIL (what burns the workers' CPU).
        """
        a = self.args
        outputs = {
            "wall": (self.out_dir / "profile-wall.txt", "raw", []),
            "cpu": (self.out_dir / "profile-cpu.txt", "raw", ["--gil"]),
            "cpu-svg": (self.out_dir / "profile-cpu.svg", "flamegraph", ["--gil"]),
        }
        per_thread = self.per_thread(a.profile_seconds)
        bodies = self.bodies(per_thread * a.threads)
        spies = [
            subprocess.Popen(
                [
                    str(BIN / "py-spy"),
                    "record",
                    "--pid",
                    str(service.process.pid),
                    "--subprocesses",
                    "--rate",
                    "100",
                    "--duration",
                    str(a.profile_seconds),
                    "--format",
                    fmt,
                    "--output",
                    str(path),
                    "--nonblocking",
                    *extra,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for path, fmt, extra in outputs.values()
        ]
        time.sleep(1)
        load = self.load(service, bodies, per_thread, a.profile_seconds)
        for spy in spies:
            spy.wait(timeout=a.profile_seconds + 60)
        bodies.unlink()
        log(f"profiles in {self.out_dir} ({load.result['rate']:.0f} req/s under py-spy)")
        summaries = {}
        for view in ("wall", "cpu"):
            summary = subprocess.run(
                [sys.executable, "-m", "bench.ingest.profile_summary", str(outputs[view][0])],
                capture_output=True,
                text=True,
                check=False,
            )
            summaries[view] = summary.stdout
            print(f"--- profile, {view} view ---\n{summary.stdout}", flush=True)
        return {
            "files": {k: str(v[0]) for k, v in outputs.items()},
            "summaries": summaries,
            "checks": load.check(),
        }

    def memory(self, env: dict[str, str]) -> dict[str, object]:
        """One worker, N callbacks; its RSS sampled against the rows stored so far."""
        a = self.args
        env = {**env, "WEB_CONCURRENCY": "1"}
        per_thread = a.memory // a.threads
        bodies = self.bodies(per_thread * a.threads)
        port = free_port()
        samples: list[tuple[int, int]] = []
        with gunicorn("service", "wsgi:app", port, env, self.out_dir / "memory.log") as service:
            (worker,) = service.worker_pids()
            start_rows = count_rows(self.db_url)[0]
            samples.append((0, rss_kib(worker)))
            wrk = subprocess.Popen(
                wrk_command(a, port, bodies, per_thread, a.count_timeout + a.drain_seconds, 0),
                stdout=subprocess.PIPE,
                text=True,
            )
            deadline = time.monotonic() + a.count_timeout + a.drain_seconds + 30
            while wrk.poll() is None and time.monotonic() < deadline:
                time.sleep(a.memory_interval)
                samples.append((count_rows(self.db_url)[0] - start_rows, rss_kib(worker)))
                if samples[-1][0] >= per_thread * a.threads:
                    # All stored; wrk's main thread would sleep out -d even though its threads
                    # have stopped: let the last answers arrive, then SIGINT makes it report.
                    time.sleep(a.drain_seconds)
                    wrk.send_signal(signal.SIGINT)
                    break
            stdout, _ = wrk.communicate(timeout=60)
            samples.append((count_rows(self.db_url)[0] - start_rows, rss_kib(worker)))
        bodies.unlink()
        result = next(
            json.loads(line.removeprefix("BENCH_RESULT "))
            for line in stdout.splitlines()
            if line.startswith("BENCH_RESULT ")
        )
        load = Load("service", result, rows=samples[-1][0], counted=True)
        log(f"memory: {len(samples)} samples, {load.check() or 'accounting ok'}")
        for rows, kib in thin(samples, a.memory):
            log(f"  after {rows:7d} callbacks: worker RSS {kib / 1024:6.1f} MiB")
        return {"samples": samples, "checks": load.check(), "result": result}


def thin(samples: list[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    """The samples nearest to 0, 10%, 20%, …, 100% of the callbacks."""
    marks = [total * k // 10 for k in range(11)]
    picked = []
    for mark in marks:
        best = min(samples, key=lambda s: abs(s[0] - mark))
        if best not in picked:
            picked.append(best)
    return picked


def median(loads: list[Load], key: str) -> float:
    return statistics.median(load.result[key] for load in loads)


# Issue 13's and 27's targets: medians of the alternating rounds. CPU is gunicorn's total
# (master and workers) per request; cpu_ratio is the service's over the hello-world's.
TARGETS = {
    "ratio": 0.5,
    "p99_ms": 50.0,
    "gunicorn_cpu_ms": 2.0,
    "db_cpu_ms": 0.3,
    "cpu_ratio": 3.0,
}


def group_sizes(server: Server) -> dict[str, float]:
    """An app's `jsms_callback_group_size` histogram so far: groups and callbacks."""
    text = urllib.request.urlopen(f"{server.url}/metrics", timeout=10).read().decode()
    groups = sample(text, "jsms_callback_group_size_count")
    callbacks = sample(text, "jsms_callback_group_size_sum")
    return {"groups": groups, "callbacks": callbacks, "mean": callbacks / max(groups, 1)}


# The apps a run may serve, in the order each round asks them.
APPS = ("hello", "request-side", "hand-off", "service", "round-trip", "writer-process")


def print_request_side(figures: dict[str, dict[str, Any]]) -> None:
    """Where a callback's CPU goes: the request side alone, the hand-off to the writer's thread
    and back, and the writer's database work (with what it costs the threads around it)."""
    hello, alone, handoff, service = (
        figures[app]["gunicorn_cpu_ms"] for app in ("hello", "request-side", "hand-off", "service")
    )
    parts = (
        ("the request side alone", alone),
        ("the hand-off to the writer and back", handoff - alone),
        ("the writer's database work", service - handoff),
    )
    print("CPU per callback, part by part (x hello-world's request):")
    for name, ms in parts:
        print(f"  {name:38} {ms:6.3f} ms = {ms / max(hello, 1e-9):4.2f}x")


# The apps that try one lever of the writer's, and what their line says of it.
LEVERS = {
    "writer-process": "the writer's database work in a process of its own",
    "round-trip": "one more round trip a group",
}


def print_levers(figures: dict[str, dict[str, Any]]) -> None:
    """What each lever served changes against the service: CPU per callback, throughput."""
    service, hello = figures["service"], figures["hello"]["gunicorn_cpu_ms"]
    for app, lever in LEVERS.items():
        if app in figures:
            extra = figures[app]["gunicorn_cpu_ms"] - service["gunicorn_cpu_ms"]
            print(
                f"{lever}: {extra:+.3f} ms a callback ({extra / max(hello, 1e-9):+.2f}x "
                f"hello-world's request), {figures[app]['rate'] / service['rate']:.2f}x the "
                "throughput"
            )


def report(
    runs: list[Load], connections: int, groups: dict[str, dict[str, float]] | None = None
) -> dict[str, Any]:
    by_app = {
        app: [r for r in runs if r.app == app] for app in APPS if any(r.app == app for r in runs)
    }
    stored_by = [app for app in STORING if app in by_app]
    storing = [r for app in stored_by for r in by_app[app]]
    figures: dict[str, dict[str, Any]] = {
        app: {
            "rate": median(loads, "rate"),
            "p50_ms": median(loads, "p50_us") / 1000,
            "p99_ms": median(loads, "p99_us") / 1000,
            "gunicorn_cpu_ms": median(loads, "gunicorn_cpu_ms_per_request"),
            "db_cpu_ms": median(loads, "db_cpu_ms_per_request"),
            "switches": median(loads, "switches_per_request"),
            "rates": [round(r.result["rate"], 1) for r in loads],
        }
        for app, loads in by_app.items()
    }
    ratio = figures["service"]["rate"] / figures["hello"]["rate"]
    non_2xx = sum(r.non_2xx for r in storing)
    ok = sum(int(r.result["ok"]) for r in storing)
    rows = sum(r.rows or 0 for r in storing)
    raws = sum(r.raws or 0 for r in storing)
    print()
    print(
        f"{'app':14} {'req/s (median)':>15} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11}"
        f" {'PG ms/req':>10} {'switches/req':>13}   rounds req/s"
    )
    for app, f in figures.items():
        print(
            f"{app:14} {f['rate']:15.1f} {f['p50_ms']:8.2f} {f['p99_ms']:8.2f}"
            f" {f['gunicorn_cpu_ms']:11.3f} {f['db_cpu_ms']:10.3f} {f['switches']:13.1f}"
            f"   {f['rates']}"
        )
    cpu_ratio = figures["service"]["gunicorn_cpu_ms"] / max(
        figures["hello"]["gunicorn_cpu_ms"], 1e-9
    )
    print(f"ratio service/hello: {ratio:.2f}")
    if "request-side" in figures:
        print_request_side(figures)
    print_levers(figures)
    print(
        f"CPU per request service/hello (gunicorn master + workers): {cpu_ratio:.2f}x "
        f"({figures['service']['gunicorn_cpu_ms']:.3f} vs {figures['hello']['gunicorn_cpu_ms']:.3f}"
        f" ms); service p99 at {connections} connections: {figures['service']['p99_ms']:.1f} ms"
    )
    print(
        f"{' + '.join(stored_by)} non-2xx: {non_2xx}; 2xx {ok}; delivery_reports rows {rows}; "
        f"raw_events {raws}"
    )
    for app, counts in (groups or {}).items():  # the apps that store, warm-up included
        print(
            f"group commit, {app}: {counts['callbacks']:.0f} callbacks in "
            f"{counts['groups']:.0f} transactions, {counts['mean']:.1f} a group on average"
        )
    svc = figures["service"]
    checks = {
        f"ratio >= {TARGETS['ratio']}": ratio >= TARGETS["ratio"],
        f"p99 < {TARGETS['p99_ms']:.0f} ms": svc["p99_ms"] < TARGETS["p99_ms"],
        "zero non-2xx": non_2xx == 0,
        f"gunicorn CPU <= {TARGETS['gunicorn_cpu_ms']} ms": svc["gunicorn_cpu_ms"]
        <= TARGETS["gunicorn_cpu_ms"],
        f"CPU per request <= {TARGETS['cpu_ratio']:g}x hello's": cpu_ratio <= TARGETS["cpu_ratio"],
        f"PostgreSQL CPU <= {TARGETS['db_cpu_ms']} ms": svc["db_cpu_ms"] <= TARGETS["db_cpu_ms"],
    }
    for name, met in checks.items():
        print(f"target {name}: {'MET' if met else 'NOT MET'}")
    # Scale on paper: what one PostgreSQL core and one web dyno (this machine's 2 cores) carry.
    per_core = 1000 / max(svc["db_cpu_ms"], 1e-9)
    print(
        f"scale on paper: one PostgreSQL core stores ~{per_core:,.0f} callbacks/s; "
        f"one web dyno like this machine ~{svc['rate']:,.0f}/s measured "
        f"(~{2000 / max(svc['gunicorn_cpu_ms'], 1e-9):,.0f}/s from gunicorn's CPU alone); "
        f"one PostgreSQL core carries ~{per_core / max(svc['rate'], 1e-9):.1f} such dynos"
    )
    return {
        "figures": figures,
        "ratio": ratio,
        "cpu_ratio": cpu_ratio,
        "non_2xx": non_2xx,
        "ok": ok,
        "rows": rows,
        "raw_events": raws,
        "groups": groups,
        "targets": checks,
        "target_met": all(checks.values()),
    }


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="measured rounds per app (alternating)")
    p.add_argument("--duration", type=float, default=15, help="seconds of load per round")
    p.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per app")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument(
        "--max-rate",
        type=float,
        default=16000,
        help="req/s the bodies file is sized for (unique bodies per round)",
    )
    p.add_argument(
        "--drain-seconds",
        type=float,
        default=3,
        help="wrk's -d is the load plus this: time to collect the last answers",
    )
    p.add_argument("--profile", action="store_true", help="also profile the service (py-spy)")
    p.add_argument(
        "--request-side",
        action="store_true",
        help="also serve the service with its writer answering at once (the request side alone)",
    )
    p.add_argument(
        "--round-trip",
        action="store_true",
        help="also serve the service with one more round trip a group (what one costs)",
    )
    p.add_argument(
        "--writer-process",
        action="store_true",
        help="also serve the service with its writer's database work in a process of its own",
    )
    p.add_argument("--profile-seconds", type=int, default=15)
    p.add_argument("--memory", type=int, default=0, help="callbacks for the RSS curve (0: skip)")
    p.add_argument("--memory-interval", type=float, default=1.0)
    p.add_argument(
        "--count-timeout", type=int, default=900, help="upper bound in seconds for the --memory run"
    )
    p.add_argument(
        "--admin-url",
        default=os.environ.get(
            "BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    p.add_argument("--skip-rounds", action="store_true", help="only --profile / --memory")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="CI: 1 round of 1 s, 1 s warm-up; only the checks (no loss) decide the exit status",
    )
    args = p.parse_args()
    if args.smoke:
        args.rounds, args.duration, args.warmup, args.drain_seconds = 1, 1, 1, 1
    return args


def main() -> int:
    args = parse_args()
    out_dir = ROOT / "bench" / "results" / time.strftime("ingest-%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    log(
        f"results in {out_dir}; WEB_CONCURRENCY={os.environ.get('WEB_CONCURRENCY', '(default)')}"
        f" GUNICORN_THREADS={os.environ.get('GUNICORN_THREADS', '(default)')}; nproc "
        f"{os.cpu_count()}; load average {os.getloadavg()}"
    )
    outcome: dict[str, object] = {"args": vars(args)}
    problems: list[str] = []
    with throwaway_database(args.admin_url) as db_url:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JSMS_", "API_TOKENS"))}
        env.update(DATABASE_URL=db_url, JSMS_APPS=f"{APP_KEY}:{SECRET}", PYTHONUNBUFFERED="1")
        bench = Bench(args, db_url, out_dir)
        if not args.skip_rounds or args.profile:
            with ExitStack() as servers:
                apps = [("hello", HELLO_APP), ("service", "wsgi:app")]
                if args.request_side:
                    apps[1:1] = [("request-side", REQUEST_SIDE_APP), ("hand-off", HANDOFF_APP)]
                if args.round_trip:
                    apps.append(("round-trip", ROUND_TRIP_APP))
                if args.writer_process:
                    apps.append(("writer-process", WRITER_PROCESS_APP))
                served = [
                    servers.enter_context(
                        gunicorn(name, module, free_port(), env, out_dir / f"{name}.log")
                    )
                    for name, module in apps
                ]
                svc = next(server for server in served if server.name == "service")
                if not args.skip_rounds:
                    runs = bench.rounds(served)
                    outcome["rounds"] = [r.__dict__ for r in runs]
                    groups = {s.name: group_sizes(s) for s in served if s.name in STORING}
                    outcome["report"] = result = report(runs, args.connections, groups)
                    problems += [p for r in runs for p in r.check(window=not args.smoke)]
                    missed = [name for name, met in result["targets"].items() if not met]
                    if not args.smoke:
                        problems += [f"target missed: {name}" for name in missed]
                if args.profile:
                    outcome["profile"] = profile = bench.profile(svc)
                    problems += profile["checks"]  # type: ignore[arg-type]
        if args.memory:
            outcome["memory"] = memory = bench.memory(env)
            problems += memory["checks"]  # type: ignore[arg-type]
    (out_dir / "result.json").write_text(json.dumps(outcome, indent=2, default=str))
    for problem in problems:
        print(f"CHECK FAILED: {problem}")
    print(
        f"checks: {'all held' if not problems else f'{len(problems)} failed'}; "
        f"details in {out_dir / 'result.json'}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
