"""The centre's register beside the station's own ``[[devices]]`` (docs/faults.md).

The station keeps working from ``[[devices]]`` when the centre is away; the centre's register
(agent/catalog/register.py, set by its signed commands) adds each recorder's lifecycle. Where
the two name another officer or unit for the same recorder, that is a conflict: a
``register.conflict`` fault shows both sides, and neither is picked (rule 8,
docs/architecture.md). A recorder the centre has in maintenance, lost or retired that is docked
is flagged at its bay: a ``register`` finding makes it not ready, with the lifecycle as the
reason, in its health message too.
"""

from __future__ import annotations

import logging
from typing import Any

from agent.catalog import Catalog, register
from agent.catalog.faults import condition_gone, open_subjects, report_fault
from agent.checks.results import CheckResult
from agent.config import Config

log = logging.getLogger(__name__)

CONFLICT = "register.conflict"
FIELDS = ("officer", "unit")


def conflicts(catalog: Catalog, config: Config) -> dict[str, dict[str, Any]]:
    """Per serial, where ``[[devices]]`` and the centre's register disagree."""
    local = config.registered()
    found = {}
    for entry in register.entries(catalog):
        mine = local.get(entry["serial"])
        if mine is None:
            continue
        differ = {
            f: {"station": getattr(mine, f), "centre": entry[f]}
            for f in FIELDS
            if getattr(mine, f) and entry[f] and getattr(mine, f) != entry[f]
        }
        if differ:
            found[entry["serial"]] = {**differ, "centre_command_id": entry["command_id"]}
    return found


def check_conflicts(catalog: Catalog, config: Config) -> None:
    """Open a fault per recorder in conflict; resolve the ones that agree again."""
    found = conflicts(catalog, config)
    for serial, evidence in found.items():
        words = "; ".join(
            f"{f}: {v['station']} here, {v['centre']} at the centre"
            for f, v in evidence.items()
            if isinstance(v, dict)
        )
        report_fault(
            catalog,
            CONFLICT,
            serial,
            f"{serial}: the station's [[devices]] and the centre's register disagree ({words}). "
            "Neither is chosen: correct the one that is wrong",
            evidence=evidence,
        )
    for serial in open_subjects(catalog, CONFLICT) - set(found):
        condition_gone(catalog, CONFLICT, serial, hold_s=0, note="the registers agree again")


def lifecycle_findings(catalog: Catalog, serial: str) -> list[CheckResult]:
    """A docked recorder the centre does not have in service: not ready, and why."""
    entry = register.entry(catalog, serial)
    if entry is None or entry["lifecycle"] == "in_service":
        return []
    lifecycle = entry["lifecycle"]
    log.warning("%s is %s in the centre's register, and it is docked", serial, lifecycle)
    words = lifecycle.replace("_", " ")
    return [
        CheckResult(
            "register",
            False,
            lifecycle,
            "in_service",
            f"the centre's register has it {words} (set by {entry['set_by']} at "
            f"{entry['at']}): do not issue it; tell the supervisor it was docked here",
        )
    ]
