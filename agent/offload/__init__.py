"""Offload: copy a recorder's files into the store, prove each copy, only then clear it.

``offloader``: the session and the per-file loop. ``copy``: one file into the store. ``clear``:
rule 1, what may leave the recorder and how. ``recovery``: after a crash. ``session``: a
session's lock, row and end. ``report``: what the caller is told.
"""

from __future__ import annotations

from agent.offload.offloader import Offloader
from agent.offload.recovery import recover_interrupted
from agent.offload.report import FileResult, OffloadReport, Stopped
from agent.offload.session import finalize_session

__all__ = [
    "FileResult",
    "OffloadReport",
    "Offloader",
    "Stopped",
    "finalize_session",
    "recover_interrupted",
]
