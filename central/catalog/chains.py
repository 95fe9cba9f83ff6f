"""A transaction's view of its stations' audit chains: read once, moved in memory, written once.

The consumer stores a batch of messages in one transaction (central/messages.py). Each stored
event checks the chain against its station's row (:func:`central.catalog.stations.claim_chain`:
epoch, baseline, complete head, highest seq) and then moves it (one more event, the highest
seq, last seen, the head). Done per event, that is two writes of the same row per event; on
PostgreSQL every write of a row makes a new version of it, and a row written a thousand times
in one transaction makes each next write and read walk the versions before it, so a batch
costs more the longer a station's run in it. Here the row is read (and held: other workers
wait, as before) at a station's first event of the transaction; its events then move a
:class:`Chain` in memory, and :meth:`Chains.write` writes each moved station once, just before
the commit (:meth:`central.catalog.CentralCatalog.tx`).

Each message runs in a savepoint (:meth:`central.catalog.CentralCatalog.savepoint`): what a
message moved is undone with it when it fails (:meth:`Chains.mark`, :meth:`Chains.undo`), as
its rows are. Nothing else in the transaction writes the columns held here: a re-baseline
(an operator's, its own transaction) waits for the row; the duplicate and conflict counts and
``chain_ok`` are written at once, as before.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from central.catalog import stations
from central.catalog.db import Connection


@dataclass
class Chain:
    """One station's chain as this transaction sees it."""

    epoch: int
    base: tuple[int, str]  # the baseline: seq and hash the chain starts from
    head: tuple[int, str]  # the head of the part complete from the baseline
    max_seq: int  # the highest seq held in this epoch
    stored: int = 0  # events stored in this transaction, not yet written to the row
    last_seen: str = ""
    moved: bool = False  # the head moved in this transaction

    def stored_event(self, seq: int, at: str, head: tuple[int, str] | None) -> None:
        """An event at ``seq`` was stored at ``at``; the complete head moved to ``head``."""
        self.stored += 1
        self.max_seq = max(self.max_seq, seq)
        self.last_seen = max(self.last_seen, at)
        if head is not None:
            self.head, self.moved = head, True


class Chains:
    """The chains one transaction has read and moved, by station."""

    def __init__(self) -> None:
        self._held: dict[str, Chain] = {}
        self._undo: dict[str, Chain | None] | None = None

    def of(self, conn: Connection, station: str) -> Chain:
        """The station's chain, to be moved: read (and its row held) at first use."""
        if self._undo is not None and station not in self._undo:
            found = self._held.get(station)
            self._undo[station] = dataclasses.replace(found) if found else None
        chain = self._held.get(station)
        if chain is None:
            row = stations.claim_chain(conn, station)
            chain = Chain(
                epoch=int(row[0]),
                base=(int(row[1]), str(row[2])),
                head=(int(row[3]), str(row[4])),
                max_seq=int(row[5]),
            )
            self._held[station] = chain
        return chain

    def mark(self) -> None:
        """A savepoint starts: remember each chain as it is before it is first moved."""
        self._undo = {}

    def keep(self) -> None:
        """The savepoint was released: what it moved stays."""
        self._undo = None

    def undo(self) -> None:
        """The savepoint was rolled back: each chain it touched is as it was before it."""
        for station, before in (self._undo or {}).items():
            if before is None:
                self._held.pop(station, None)
            else:
                self._held[station] = before
        self._undo = None

    def write(self, conn: Connection) -> None:
        """Write every chain that stored events, one statement a station (before the commit)."""
        for station, chain in self._held.items():
            if chain.stored:
                stations.stored_events(
                    conn,
                    station,
                    count=chain.stored,
                    max_seq=chain.max_seq,
                    at=chain.last_seen,
                    head=chain.head if chain.moved else None,
                )
                chain.stored, chain.moved = 0, False
