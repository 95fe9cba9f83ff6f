"""One page of a list read from the catalog: ``LIMIT ? OFFSET ?`` on a stable order.

Every list the JSON API and the dashboard show is read a page at a time, its filters in the
``WHERE`` clause of its owner module's query, and its order ending in a unique key, so a page
boundary never repeats or skips a row of an unchanged catalog. ``limit`` None reads to the end
(a limit past any catalog's rows: SQLite's ``LIMIT -1`` is an error on PostgreSQL, and
PostgreSQL's ``LIMIT NULL`` one on SQLite); the owner modules' ``count`` functions take the
same filters and give the total. No table lives here.
"""

from __future__ import annotations

MAX_OFFSET = 2**62  # past any catalog's rows, inside both databases' 64-bit integers

SQL = " LIMIT ? OFFSET ?"


def params(limit: int | None, offset: int = 0) -> tuple[int, int]:
    """The parameters of :data:`SQL`; ValueError for a negative offset or limit."""
    if (limit is not None and limit < 0) or not 0 <= offset <= MAX_OFFSET:
        raise ValueError(f"a page needs 0 <= offset <= {MAX_OFFSET} and limit >= 0")
    return (MAX_OFFSET if limit is None else limit, offset)
