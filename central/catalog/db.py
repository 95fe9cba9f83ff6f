"""The one seam between the centre's catalog and its database: SQLite (the embedded default) or
PostgreSQL (psycopg 3). No table lives here.

A database is named by a URL (:func:`parse`): a plain path or ``sqlite:///path`` is a SQLite
file; ``postgresql://...`` (or ``postgres://``) is PostgreSQL. :func:`connect` opens one
connection either way, with the same face to the owner modules: ``execute(sql, params)``
taking the ``?`` placeholders (and ``:name`` ones with a mapping) the catalog's SQL is written
with, rows read by column name or position, ``in_transaction``, and ``dialect``: what little
differs (:class:`Dialect`). On PostgreSQL the placeholders become psycopg's ``%s`` and
``%(name)s`` and a literal ``%`` is doubled (never inside a string literal's quotes: those are
copied as they are, save for the doubling); a ``numeric`` result (a ``sum`` of integers, an
``avg``) comes back as an ``int`` when it is whole and a ``float`` otherwise, as SQLite gives
them; the session's time zone is UTC.

The catalog's SQL is written in the subset both accept; the few places that cannot be are
next to each other in their owner module, chosen by ``conn.dialect``. The table definitions are
written once, in SQLite's words, and :func:`ddl` says them in PostgreSQL's: ``INTEGER PRIMARY
KEY`` (SQLite's row id) an identity column, every ``INTEGER`` a ``BIGINT`` (sizes and sequence
numbers pass 2^31), ``REAL`` a ``DOUBLE PRECISION`` (SQLite's REAL is 8 bytes) and ``BLOB`` a
``BYTEA``. psycopg is imported only when a PostgreSQL database is opened (``recdock-central
--help`` stays light). A URL's password is never logged: :func:`redacted`.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Connection", "Database", "Dialect", "connect", "ddl", "parse", "redacted"]


@dataclass(frozen=True)
class Dialect:
    """What differs between the two databases, in the few words the owner modules need."""

    name: str
    begin: str  # a write transaction
    for_update: str  # appended to a SELECT that reads a row the transaction will write
    schema_lock: str  # taken while the tables are created (several workers may start at once)

    def json_text(self, column: str, path: str) -> str:
        """An expression: the JSON text in ``column`` at ``path`` (``a.b``) as SQL text or a
        number (SQLite keeps a JSON number's type; PostgreSQL gives text)."""
        if self.name == "sqlite":
            return f"json_extract({column}, '$.{path}')"
        return f"(({column})::jsonb #>> '{{{path.replace('.', ',')}}}')"

    def json_number(self, column: str, path: str) -> str:
        """An expression: the JSON number in ``column`` at ``path`` as a number (NULL when the
        value is missing or JSON null)."""
        if self.name == "sqlite":
            return f"json_extract({column}, '$.{path}')"
        return f"CAST({self.json_text(column, path)} AS DOUBLE PRECISION)"


class Connection(Protocol):
    """What the owner modules use of a connection (``sqlite3.Connection`` has it)."""

    dialect: Dialect

    def execute(self, sql: str, params: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, rows: Any, /) -> Any: ...


SQLITE = Dialect("sqlite", "BEGIN IMMEDIATE", "", "SELECT 1")
POSTGRESQL = Dialect(
    "postgresql", "BEGIN", " FOR UPDATE", "SELECT pg_advisory_xact_lock(127182736)"
)


@dataclass(frozen=True)
class Database:
    """Where the catalog lives: a SQLite ``path``, or a PostgreSQL ``url``."""

    dialect: Dialect
    path: Path | None = None
    url: str | None = None

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else redacted(self.url or "")


def parse(target: str | Path | Database) -> Database:
    """The database ``target`` names: a path, ``sqlite:///path`` or ``postgresql://...``."""
    if isinstance(target, Database):
        return target
    text = str(target)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        return Database(POSTGRESQL, url=text)
    if scheme == "sqlite":  # sqlite:///var/lib/c.db (and SQLAlchemy's sqlite:////var/lib/c.db)
        path = urlsplit(text).path
        return Database(SQLITE, path=Path(path[1:] if path.startswith("//") else path))
    if scheme:
        raise ValueError(
            f"database {redacted(text)!r}: use a file path, sqlite:///path or postgresql://..."
        )
    return Database(SQLITE, path=Path(text))


def redacted(url: str) -> str:
    """``url`` without its password (for logs and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def connect(db: Database) -> Any:
    """One new connection to ``db``, outside any transaction (``BEGIN`` starts one)."""
    if db.dialect is POSTGRESQL:
        return _connect_postgresql(str(db.url))
    assert db.path is not None
    conn = sqlite3.connect(
        db.path, timeout=30, isolation_level=None, check_same_thread=False, factory=_Sqlite
    )
    conn.row_factory = sqlite3.Row
    conn.create_function("greatest", -1, _greatest, deterministic=True)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _greatest(*values: Any) -> Any:
    """PostgreSQL's ``greatest`` (NULLs ignored), which SQLite lacks."""
    present = [v for v in values if v is not None]
    return max(present) if present else None


class _Sqlite(sqlite3.Connection):
    dialect = SQLITE


def unavailable_errors(db: Database) -> tuple[type[BaseException], ...]:
    """The errors that mean the database cannot store anything now (locked, full, gone,
    a serialisation failure): the work is retried, never dropped."""
    if db.dialect is POSTGRESQL:
        import psycopg

        return (psycopg.OperationalError,)
    return (sqlite3.OperationalError,)


@contextlib.contextmanager
def transaction(conn: Any) -> Iterator[Any]:
    """One write transaction on ``conn`` (its dialect's ``BEGIN``): committed when the block
    ends, rolled back when it raises."""
    conn.execute(conn.dialect.begin)
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def integrity_errors(conn: Any) -> tuple[type[BaseException], ...]:
    """The errors a constraint the rows break raises, on this connection's database."""
    if conn.dialect is POSTGRESQL:
        import psycopg

        return (psycopg.IntegrityError,)
    return (sqlite3.IntegrityError,)


def columns(conn: Any, table: str) -> set[str]:
    """The columns ``table`` has."""
    if conn.dialect is SQLITE:
        return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ?",
        (table,),
    )
    return {r[0] for r in rows}


# -- PostgreSQL --------------------------------------------------------------------------------

_DDL = (
    (re.compile(r"\bINTEGER PRIMARY KEY\b"), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
)


def ddl(statement: str, dialect: Dialect) -> str:
    """A table's definition (or an added column's) in ``dialect``'s words; written in SQLite's."""
    if dialect is SQLITE:
        return statement
    for pattern, words in _DDL:
        statement = _outside_literals(statement, lambda s, p=pattern, w=words: p.sub(w, s))
    return statement


# a string literal, a quoted name, a cast, a placeholder, a percent sign
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|::|\?|:[A-Za-z_]\w*|%")


def _outside_literals(sql: str, change: Callable[[str], str]) -> str:
    parts = re.split(r"('(?:[^']|'')*')", sql)
    return "".join(p if i % 2 else change(p) for i, p in enumerate(parts))


@functools.lru_cache(maxsize=2048)
def to_psycopg(sql: str) -> str:
    """``sql`` with psycopg's placeholders: ``?`` -> ``%s``, ``:name`` -> ``%(name)s``, and
    every other ``%`` doubled."""

    def token(m: re.Match[str]) -> str:
        t = m.group(0)
        if t[0] in "'\"":
            return t.replace("%", "%%")
        if t == "::":
            return t
        if t == "?":
            return "%s"
        if t == "%":
            return "%%"
        return f"%({t[1:]})s"

    return _TOKEN.sub(token, sql)


class Row:
    """A PostgreSQL row read as ``sqlite3.Row`` is: by name, by position, ``dict(row)``."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: Mapping[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        return self._values[self._index[key]] if isinstance(key, str) else self._values[key]

    def keys(self) -> list[str]:
        return list(self._index)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=True))!r})"


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    index = {c.name: i for i, c in enumerate(cursor.description or ())}
    return lambda values: Row(values, index)


class _PgConnection:
    """A psycopg connection (autocommit: the catalog says BEGIN and COMMIT itself) with the
    face of a ``sqlite3.Connection``."""

    dialect = POSTGRESQL

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        return self.raw.execute(to_psycopg(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        cur = self.raw.cursor()
        cur.executemany(to_psycopg(sql), rows)
        return cur

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        self.raw.close()


def _connect_postgresql(url: str) -> _PgConnection:
    import psycopg

    try:
        raw = psycopg.connect(url, autocommit=True, row_factory=_row_factory)
    except psycopg.OperationalError as exc:
        # psycopg's message names the host and the database, never the password
        raise psycopg.OperationalError(f"PostgreSQL {redacted(url)}: {exc}") from None
    raw.adapters.register_loader("numeric", _numeric_loader())
    raw.execute("SET TIME ZONE 'UTC'")
    return _PgConnection(raw)


@functools.cache
def _numeric_loader() -> type:
    from psycopg.adapt import Loader

    class NumericLoader(Loader):
        """``numeric`` as SQLite gives it: an int when whole, else a float."""

        def load(self, data: Any) -> int | float:
            text = bytes(data).decode()
            return int(text) if text.lstrip("-").isdigit() else float(text)

    return NumericLoader
