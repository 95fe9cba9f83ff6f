"""The central store keeps answering while its receipts database is locked by someone else.

Requests that need the database wait for the lock (SQLite's 30 s busy timeout; PostgreSQL's
lock, held by another connection) in a worker thread; every other request (OPTIONS, HEAD of an
unfinished upload) is answered at once, because no handler waits for the database or a file on
the event loop.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from central.app import create_app
from central.catalog.db import Database
from tests.central_server import TOKEN_A, TOKENS, serve_app
from tests.test_central_upload import auth, create

# Another process takes the database for itself: in WAL mode only the exclusive locking mode
# keeps readers out (a plain BEGIN EXCLUSIVE does not), so that is what the holder uses.
_HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
db.execute("PRAGMA locking_mode=EXCLUSIVE")
db.execute("BEGIN EXCLUSIVE")
db.execute("DELETE FROM failures WHERE 0")
print("locked", flush=True)
sys.stdin.read()
db.execute("COMMIT")
"""


@contextlib.contextmanager
def locked(db: Path | Database) -> Iterator[None]:
    """Hold ``db`` (the receipts' SQLite file, or on PostgreSQL their tables and the uploads')
    locked from another process until the block ends."""
    if isinstance(db, Database):
        import psycopg

        with psycopg.connect(str(db.url), autocommit=True) as holder:
            holder.execute("BEGIN")
            holder.execute("LOCK TABLE receipts, failures, uploads IN ACCESS EXCLUSIVE MODE")
            yield
            holder.execute("COMMIT")
        return
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        assert holder.wait(10) == 0


def test_server_answers_while_the_receipts_database_is_locked(
    tmp_path: Path, central_db: str
) -> None:
    data = tmp_path / "central"
    app = create_app(data, TOKENS, database=central_db)
    with serve_app(app) as url, ThreadPoolExecutor(4) as pool:
        unfinished = create(url, TOKEN_A, 10, "c" * 64).headers["Location"]
        with locked(app.state.uploads.db_path):
            # a receipt of an unknown upload is looked up in the database, and so is an upload's
            # record (every worker shares it): these wait
            waiting = [
                pool.submit(
                    requests.get,
                    f"{url}/files/{secrets.token_hex(16)}/receipt",
                    headers=auth(TOKEN_A),
                    timeout=60,
                )
                for _ in range(2)
            ]
            head = pool.submit(requests.head, unfinished, headers=auth(TOKEN_A), timeout=60)
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                start = time.monotonic()
                assert requests.options(f"{url}/files/", timeout=2).status_code == 204
                assert requests.get(f"{url}/api/health", timeout=2).status_code == 200
                assert time.monotonic() - start < 1.0
            assert not any(f.done() for f in [*waiting, head]), "they did not wait for the lock"
        for f in waiting:
            assert f.result().status_code == 404
        assert head.result().status_code == 200 and head.result().headers["Upload-Offset"] == "0"
