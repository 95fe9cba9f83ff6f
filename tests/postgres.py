"""A throwaway PostgreSQL cluster for the tests, from Debian's ``postgresql`` package.

``initdb`` makes a cluster in a temporary folder and ``pg_ctl`` starts it listening only on a
Unix socket in that folder (``listen_addresses=''``: no TCP, no system service); each test takes
a fresh database copied from a template the centre's catalog was created in once
(:meth:`Cluster.fresh_database`), so tests stay independent, and drops it at its end.
``initdb`` and ``postgres`` refuse to run as root: as root (CI), they run as the ``postgres``
user the Debian package creates, the cluster's folders owned by it. A cluster that cannot
start fails the tests loudly; nothing skips. Durability is not what these tests check, so the
cluster runs with ``fsync=off``; bench/fleet_centre.py starts one ``durable`` (PostgreSQL's
defaults: fsync and synchronous commit on), to compare with SQLite's ``synchronous=FULL``.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

TEMPLATE = "recdock_template"


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
            "run scripts/setup as root, or apt-get install postgresql"
        )
    return Path(found[-1]).parent


def _version(path: str) -> int:
    return int(Path(path).parent.parent.name)


class Cluster:
    """One cluster under ``root``: :meth:`start`, :meth:`fresh_database`, :meth:`stop`."""

    def __init__(self, root: Path, *, durable: bool = False) -> None:
        self.root = root
        self.durable = durable
        self.data = root / "data"
        self.socket_dir = root / "run"
        self.log = root / "postgres.log"
        self.bin = _bin_dir()
        self._as: list[str] = []
        self._names = itertools.count(1)

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*self._as, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{log}"
            )

    def start(self) -> None:
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            # initdb and postgres refuse root: the Debian package's postgres user runs them
            user = pwd.getpwnam("postgres")
            self.root.chmod(0o755)
            for path in (self.root, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run(
            str(self.bin / "initdb"),
            *("-D", str(self.data), "-U", "postgres", "--auth=trust"),
            *("-E", "UTF8", "--locale=C.UTF-8", "--no-sync"),
        )
        options = f"-c listen_addresses='' -k {self.socket_dir} -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            str(self.bin / "pg_ctl"),
            *("-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"),
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def _admin(self, *statements: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def make_template(self) -> None:
        """The template every test's database is copied from: the catalog created in it."""
        from central.catalog import CentralCatalog

        self._admin(f"CREATE DATABASE {TEMPLATE}")
        CentralCatalog(self.url(TEMPLATE)).close()

    def fresh_database(self, *, empty: bool = False) -> str:
        """The URL of a new database: a copy of the migrated template, or ``empty``."""
        name = f"test_{next(self._names)}"
        template = "template0" if empty else TEMPLATE
        self._admin(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a test's database (its connections closed by force): a copy is some 8 MB."""
        name = url.split("/")[-1].split("?")[0]
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")


def start_cluster(*, durable: bool = False) -> Cluster:
    """A started cluster with the migrated template, in a new temporary folder."""
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="recdock-pg-")), durable=durable)
    try:
        cluster.start()
        cluster.make_template()
    except BaseException:
        shutil.rmtree(cluster.root, ignore_errors=True)
        raise
    return cluster


def remove(cluster: Cluster) -> None:
    try:
        cluster.stop()
    finally:
        shutil.rmtree(cluster.root, ignore_errors=True)
