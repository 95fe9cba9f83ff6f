"""`recdock verify`: check the store and the audit log (rule 2, docs/architecture.md).

It names every problem it finds:

- an audit entry altered, removed or reordered (the hash chain), and a cut end of the log:
  the highest entry an earlier check saw is gone or replaced (agent/verify/chain.py);
- the audit log and the catalog's own columns disagreeing: a recording whose entry is
  missing or says something else, an entry whose row is gone, a session ended or a file
  removed from its recorder that no entry records (agent/verify/crosscheck.py);
- a store file changed (hash), removed, made writable, or added (a file in the store that
  the catalog does not know); a session's manifest or write-once record that does not list
  exactly its catalogued files (agent/verify/store.py).

Temp files of an interrupted copy, and verified copies an interrupted offload linked but did
not catalogue (the next offload adopts them), are notes, not problems.

It streams: memory stays the same whatever the catalog's size. A check can cover one session,
device or day range (the audit chain is always checked whole), or only the audit chain; an
interrupted full check resumes where it stopped (agent/verify/run.py).
"""

from agent.verify.report import KEPT, NOTE, PROBLEM, Progress, Scope, VerifyReport
from agent.verify.run import NothingToResumeError, VerifyBusyError, verify

__all__ = [
    "KEPT",
    "NOTE",
    "PROBLEM",
    "NothingToResumeError",
    "Progress",
    "Scope",
    "VerifyBusyError",
    "VerifyReport",
    "verify",
]
