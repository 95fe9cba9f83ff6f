"""`recdock status`: what the station shows, read from the catalog (works while it runs).

The daemon writes every bay state change, check and fault to the catalog (WAL: readers
never block it), and ``<home>/run/station.json`` while it runs. This module only reads. A
home without a catalog is a station that never ran there: every bay idle, nothing queued,
no fault, and ``catalog_found`` false.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.catalog import Catalog, bays, checks, outbox
from agent.catalog.faults import list_faults
from agent.seams.indicators.patterns import LED_PATTERNS, State
from agent.station.faults import STATION_FAULT_KINDS
from agent.station.linkstate import CENTRE_LINK, MQTT_LINK, read_link_state

if TYPE_CHECKING:
    from agent.config import Config


@dataclass(frozen=True)
class StationView:
    """The settings `recdock status` shows: the station id and its bays. The running daemon
    writes them into ``<home>/run/station.json`` beside the fingerprint of the configuration
    it read, so status on a running station need not load (and validate) the configuration."""

    station_id: str
    bays: dict[str, int]  # USB port -> bay
    indicator_bays: tuple[int, ...]
    unreported_after_hours: float  # [faults]: a fault the centre has not confirmed by then

    @classmethod
    def of(cls, config: Config) -> StationView:
        return cls(
            config.station_id,
            dict(config.bays),
            tuple(config.indicators.bays),
            config.faults.unreported_after_hours,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "station_id": self.station_id,
            "bays": self.bays,
            "indicator_bays": list(self.indicator_bays),
            "unreported_after_hours": self.unreported_after_hours,
        }

    @classmethod
    def from_daemon(cls, daemon: dict[str, Any], fingerprint: dict[str, Any]) -> StationView | None:
        """What the running daemon read, when it read the configuration ``fingerprint`` names
        (the same file, unchanged since); None otherwise."""
        seen = daemon.get("config")
        if not daemon.get("running") or not isinstance(seen, dict):
            return None
        if seen.get("fingerprint") != fingerprint:
            return None
        try:
            return cls(
                str(seen["station_id"]),
                {str(p): int(n) for p, n in seen["bays"].items()},
                tuple(int(n) for n in seen["indicator_bays"]),
                float(seen["unreported_after_hours"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


def led_pattern(state: State) -> str:
    """The LED pattern of a state in words, as docs/indicators.md has it."""
    p = LED_PATTERNS[state]
    if not p.lit:
        return "dark"
    if not p.blinks:
        return "steady"
    return f"blink {p.on_time:g} s on / {p.off_time:g} s off"


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def daemon_info(home: Path) -> dict[str, Any]:
    path = home / "run" / "station.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"running": False}
    return {**data, "running": _alive(data.get("pid"))}


def link_view(home: Path, name: str) -> dict[str, Any] | None:
    """A link's state as its service last wrote it (agent/station/linkstate.py); None when
    it never wrote one (the link is not configured, or never ran). ``current`` is false when
    the process that wrote it is gone: the last state known."""
    state = read_link_state(home, name)
    if state is None:
        return None
    return {**asdict(state), "current": _alive(state.pid)}


def links(home: Path) -> dict[str, dict[str, Any] | None]:
    return {"broker": link_view(home, MQTT_LINK), "centre": link_view(home, CENTRE_LINK)}


def _last_check(catalog: Catalog, bay: int, session_id: str | None) -> dict[str, Any] | None:
    row = checks.last_at_bay(catalog, bay)
    if row is None:
        return None
    try:
        results = json.loads(row["results"])
    except ValueError:
        results = row["results"]
    return {
        "at": row["at"],
        "device_serial": row["device_serial"],
        "session_id": row["session_id"],
        "ready": bool(row["ready"]),
        "clock_offset_s": row["clock_offset_s"],
        "clock_offset_after_s": row["clock_offset_after_s"],
        "results": results,
        "current": session_id is not None and row["session_id"] == session_id,
    }


def snapshot(
    catalog: Catalog | None,
    config: Config | StationView,
    home: Path,
    now: datetime | None = None,
) -> dict[str, Any]:
    """What `recdock status` shows; ``catalog`` None: the station never ran in ``home``."""
    view = config if isinstance(config, StationView) else StationView.of(config)
    now = now or datetime.now(UTC)
    after = view.unreported_after_hours
    listed = list_faults(catalog) if catalog else []
    faults = [{**f.as_dict(now), "unreported": f.unreported(after, now)} for f in listed]
    station_fault = any(f["kind"] in STATION_FAULT_KINDS for f in faults)
    unreported = [f["id"] for f in faults if f["unreported"]]
    daemon = daemon_info(home)
    rows = bays.rows(catalog) if catalog else {}
    numbers = sorted(set(view.bays.values()) | set(view.indicator_bays) | set(rows))
    ports = {n: p for p, n in view.bays.items()}
    return {
        "station_id": view.station_id,
        "catalog_found": catalog is not None,
        "daemon": daemon,
        "station_fault": station_fault,
        "unreported_faults": unreported,
        "unreported_after_hours": after,
        "bays": [
            _bay_view(
                catalog,
                n,
                ports.get(n),
                rows.get(n) or {},
                daemon["running"],
                station_fault,
                bool(unreported),
            )
            for n in numbers
        ],
        "sync_backlog": outbox.backlog(catalog.conn) if catalog else 0,
        "links": links(home),
        "faults": faults,
    }


def _bay_view(
    catalog: Catalog | None,
    n: int,
    port: str | None,
    row: dict[str, Any],
    running: bool,
    station_fault: bool,
    unreported: bool = False,
) -> dict[str, Any]:
    state = State(row.get("state") or State.IDLE.value)
    led = State.STATION_FAULT if station_fault and running else state
    if led is State.IDLE and unreported:
        led = State.FAULT_UNREPORTED
    if not running:
        led = State.IDLE  # nobody drives the LEDs
    return {
        "bay": n,
        "port": port,
        "state": state.value,
        "led": led.value,
        "led_pattern": led_pattern(led),
        "device_serial": row.get("device_serial"),
        "profile": row.get("profile"),
        "reason": row.get("reason"),
        "detail": row.get("detail"),
        "session_id": row.get("session_id"),
        "progress": {"bytes": row.get("progress_bytes"), "total": row.get("progress_total")},
        "updated_at": row.get("updated_at"),
        "last_check": _last_check(catalog, n, row.get("session_id")) if catalog else None,
    }


def render(snap: dict[str, Any]) -> str:
    """The human-readable status."""
    d = snap["daemon"]
    lines = []
    if d.get("running"):
        mode = "SIMULATED station" if d.get("simulate") else "station"
        lines.append(
            f"{mode} {snap['station_id']}: running (pid {d['pid']}, since "
            f"{d.get('started_at', '?')})"
        )
        lines.extend(f"  {s}" for s in d.get("seams", []))
    elif not snap.get("catalog_found", True):
        lines.append(
            f"station {snap['station_id']}: has not run here yet (no catalog in this home); "
            "start it with `recdock run` (on a Pi: `systemctl start recdock`)"
        )
    else:
        lines.append(f"station {snap['station_id']}: NOT RUNNING")
    if snap["station_fault"]:
        lines.append("STATION FAULT: every bay shows it; see the faults below")
    if snap.get("unreported_faults"):
        lines.append(
            f"FAULTS NOT REPORTED: {len(snap['unreported_faults'])} fault(s) not confirmed by the "
            f"centre within {snap['unreported_after_hours']:g} h (check the link to the broker); "
            "the empty bays show it"
        )
    lines.append("")
    lines.append(f"{'bay':>3}  {'state':<15} {'LED':<44} {'device':<14} {'profile':<11} reason")
    for b in snap["bays"]:
        led = f"{b['led']} ({b['led_pattern']})"
        lines.append(
            f"{b['bay']:>3}  {b['state']:<15} {led:<44} {(b['device_serial'] or '-')[:14]:<14} "
            f"{(b['profile'] or '-')[:11]:<11} {b['reason'] or b['detail'] or ''}"
        )
        prog = b["progress"]
        if prog["total"]:
            pct = 100 * (prog["bytes"] or 0) / prog["total"]
            lines.append(f"     progress {prog['bytes']}/{prog['total']} bytes ({pct:.0f} %)")
        check = b["last_check"]
        if check and check["current"]:
            for r in check["results"] if isinstance(check["results"], list) else []:
                ok = {True: "ok", False: "FAIL", None: "n/a"}.get(r.get("ok"), "?")
                lines.append(
                    f"     {ok:<4} {r.get('name', '?'):<16} {r.get('value', '')} "
                    f"(needs {r.get('threshold', '')}) {r.get('detail', '')}".rstrip()
                )
    lines.append("")
    lines.append(f"sync backlog: {snap['sync_backlog']} messages waiting for the broker")
    lines.extend(_link_lines(snap.get("links") or {}))
    lines.extend(_fault_lines(snap["faults"]))
    return "\n".join(lines)


def _fault_lines(faults: list[dict[str, Any]]) -> list[str]:
    if not faults:
        return ["open faults: none"]
    lines = [f"open faults: {len(faults)}"]
    for f in faults:
        overdue = "  OVERDUE (24 h)" if f["overdue"] else ""
        overdue += "  NOT REPORTED" if f["unreported"] else ""
        lines.append(
            f"  {f['age_hours']:>6.1f} h  {f['state']:<12} {f['kind']:<9} "
            f"{f['subject']:<20} {f['detail']}{overdue}"
        )
    return lines


def _link_lines(links: dict[str, dict[str, Any] | None]) -> list[str]:
    """One line per link: reachable or unreachable, since when."""
    lines = []
    for name, label in (("broker", "broker"), ("centre", "central store")):
        link = links.get(name)
        if link is None:
            lines.append(f"{label}: not known (not configured, or not started yet)")
            continue
        if link["connected"]:
            text = f"{label} {link['peer']}: reachable since {link['since']}"
        else:
            text = f"{label} {link['peer']}: UNREACHABLE since {link['since']}"
            if link.get("last_error"):
                text += f" ({link['last_error']})"
        if not link["current"]:
            text += " [last known: the service that kept it is not running]"
        lines.append(text)
    return lines
