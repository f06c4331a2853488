"""A callback handed to a writer in another process, against the writer's thread: CPU each way.

    .venv/bin/python -m bench.ingest.process_handoff [--callbacks 3000] [--repeats 5]

The group writer shares its process, and so the GIL, with the request threads
(`app/store/group.py`); a writer process of its own would not, but each callback would then
cross a pipe, pickled, and its result come back the same way. This measures both hand-offs in
one run, one callback at a time and with nothing stored (the writer answers at once), as the
whole CPU of both sides per callback (`time.process_time` here; the writer process's own
`getrusage`): the thread's is `GroupWriter.store` with `write_group` answering at once, as
`handoff.py` serves it; the process's is the parsed callback pickled over a
`multiprocessing` pipe and its `IngestResult` back. Prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import pickle
import random
import resource
import statistics
import time
from multiprocessing import Pipe, Process
from multiprocessing.connection import Connection

import app.store.group as group
from app.store.group import GroupWriter, Pending
from app.store.ingest import IngestResult
from bench.ingest.stubs import STORED, write_nothing
from bench.ingest.writer import callbacks


def thread_cpu(made: list[Pending]) -> float:
    """Microseconds of CPU per callback through the writer's thread (both threads)."""
    writer = GroupWriter(database=None)  # type: ignore[arg-type]  # write_group never uses it
    started = time.process_time()
    for p in made:
        writer.store(p.use, p.raw, p.batch, p.suspect)
    return (time.process_time() - started) / len(made) * 1e6


def _own_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def _writer_process(pipe: Connection) -> None:
    """Answer each pickled callback with a pickled result; at b"", send the CPU it took."""
    started = _own_cpu()
    while message := pipe.recv_bytes():
        pickle.loads(message)
        pipe.send_bytes(pickle.dumps(STORED))
    pipe.send_bytes(pickle.dumps(_own_cpu() - started))


def _exchange(pipe: Connection, p: Pending) -> IngestResult:
    pipe.send_bytes(pickle.dumps((p.use, p.raw, p.batch, p.suspect)))
    result: IngestResult = pickle.loads(pipe.recv_bytes())
    return result


def process_cpu(made: list[Pending]) -> float:
    """Microseconds of CPU per callback through a writer process (both processes)."""
    ours, theirs = Pipe()
    child = Process(target=_writer_process, args=(theirs,))
    child.start()
    try:
        _exchange(ours, made[0])  # the writer process is up
        started = _own_cpu()
        for p in made:
            _exchange(ours, p)
        mine = _own_cpu() - started
        ours.send_bytes(b"")
        child_cpu: float = pickle.loads(ours.recv_bytes())
    finally:
        child.join(10)
    return (mine + child_cpu) / len(made) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callbacks", type=int, default=3000, help="callbacks per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs each way (median)")
    args = parser.parse_args()
    group.write_group = write_nothing
    made = callbacks(random.Random(27), args.callbacks)
    thread_cpu(made[:200])  # warm: the writer's thread started
    threads = [thread_cpu(made) for _ in range(args.repeats)]
    processes = [process_cpu(made) for _ in range(args.repeats)]
    thread, process = statistics.median(threads), statistics.median(processes)
    print(f"hand-off to the writer's thread:  {thread:6.1f} us of CPU a callback (both sides)")
    print(f"hand-off to a writer process:     {process:6.1f} us of CPU a callback (both sides)")
    print(f"ratio process/thread: {process / thread:.2f}x (medians of {args.repeats} runs of "
          f"{args.callbacks})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
