"""The service with its group writer's database work in a process of its own, one per worker.

Served beside `wsgi:app` (`--writer-process`): the writer's thread still gathers each group, but
sends it, pickled over a pipe, to a child process that writes it (`write_group`, its own engine)
and sends the outcomes back. That child shares no GIL with the request threads, so the
difference to the service is what sharing it costs, less what the pipe and pickling cost. The
bench counts the children's CPU with their worker's. A measuring device, not a design: a child
that dies leaves its worker's callbacks failing (500), which the bench would report.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
from collections.abc import Sequence
from contextlib import suppress
from multiprocessing.connection import Connection

import app.store.group as group_commit
from app import create_app
from app.store.db import Database
from app.store.group import Outcome, Pending

_write_group = group_commit.write_group
_pipes: dict[int, Connection] = {}  # per worker process: its writer child's end
_starting = threading.Lock()


def _child(pipe: Connection, workers_end: Connection, url: str) -> None:
    """Write each group that arrives and answer its outcomes (or the error's repr), until its
    worker is gone (the pipe's end of file)."""
    workers_end.close()  # forked with it: else the pipe never ends when the worker exits
    database = Database(url)
    with suppress(EOFError):
        _serve(pipe, database)


def _serve(pipe: Connection, database: Database) -> None:
    while message := pipe.recv_bytes():
        group = [Pending(*fields) for fields in pickle.loads(message)]
        try:
            pipe.send_bytes(pickle.dumps(("ok", _write_group(database, group))))
        except Exception as exc:  # the bench counts the 500s it leads to
            pipe.send_bytes(pickle.dumps(("error", repr(exc))))


def _pipe(database: Database) -> Connection:
    """This worker's writer child, started with its first group."""
    with _starting:
        if os.getpid() not in _pipes:
            ours, theirs = multiprocessing.Pipe()
            url = database.engine.url.render_as_string(hide_password=False)
            fork = multiprocessing.get_context("fork")
            fork.Process(target=_child, args=(theirs, ours, url), daemon=True).start()
            theirs.close()
            _pipes[os.getpid()] = ours
        return _pipes[os.getpid()]


def _write_in_child(database: Database, group: Sequence[Pending]) -> list[Outcome]:
    pipe = _pipe(database)
    pipe.send_bytes(pickle.dumps([(p.use, p.raw, p.batch, p.suspect) for p in group]))
    kind, outcomes = pickle.loads(pipe.recv_bytes())
    if kind != "ok":
        raise RuntimeError(f"the writer process failed: {outcomes}")
    return list(outcomes)


group_commit.write_group = _write_in_child
app = create_app()
