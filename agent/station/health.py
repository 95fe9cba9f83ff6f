"""The fault rules on the station itself, run from the daemon's loop (docs/faults.md):

* ``station.temperature``: the thermal zone above ``station_temperature_max_c``;
* ``station.undervoltage``: the firmware's throttled flags report under-voltage (now or since
  boot);
* ``station.disk``: the store's disk below ``store_low_percent`` free; ``station.disk_smart``:
  smartctl says the disk is failing;
* ``station.clock``: the station clock unsynchronised (NTP) for ``ntp_unsynchronised_minutes``;
* ``station.broker``: with MQTT on, the link to the broker down (or never up since the start)
  longer than ``broker_unreachable_minutes`` (the MQTT service keeps its state in a run file,
  agent/station/linkstate.py);
* ``station.centre``: with uploads on, the central store not answering (connection refused,
  name not found, TLS, timeout) longer than ``centre_unreachable_hours`` (the uploader keeps
  its contacts in a run file, agent/station/linkstate.py);
* ``station.outbox``: with MQTT on, the oldest queued message older than
  ``outbox_max_age_minutes``;
* ``station.backlog``: with uploads on, a recording waiting longer than
  ``backlog_max_age_hours``;
* ``station.restart``: the previous run ended without a clean stop (the watchdog killed it, or
  it crashed).

The hardware readings come through the sensors seam (agent/seams/health/). A condition that
is gone is resolved once it has stayed gone ``clear_after_minutes``.
"""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.catalog import Catalog, outbox, recordings
from agent.catalog.faults import condition_gone, report_fault
from agent.config import Config
from agent.seams.clock import StationClock
from agent.seams.health import UNDER_VOLTAGE_NOW, UNDER_VOLTAGE_SINCE_BOOT, Reading, Sensors
from agent.station.linkstate import CENTRE_LINK, read_link_state

log = logging.getLogger(__name__)

SUBJECT = "station"
Found = tuple[str, dict[str, Any], str] | None  # (detail, evidence, severity)


class StationHealth:
    """Applies the station rules; ``check`` once in a while from the daemon's loop."""

    def __init__(self, config: Config, home: Path, sensors: Sensors, clock: StationClock) -> None:
        self.config = config
        self.home = home
        self.sensors = sensors
        self.clock = clock
        self.unsynchronised_since: datetime | None = None

    def restarted(self, catalog: Catalog, previous: dict[str, Any]) -> None:
        """At start-up: the previous run left its state file (it never stopped cleanly)."""
        report_fault(
            catalog,
            "station.restart",
            SUBJECT,
            f"the previous run (pid {previous.get('pid')}, since {previous.get('started_at')}) "
            "ended without a clean stop: the systemd watchdog restarted it, or it crashed. "
            "Read its log (journalctl -u recdock)",
            severity="warning",
            evidence={"previous_run": previous},
        )

    def check(self, catalog: Catalog, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        reading = self.sensors.read()
        found = {
            "station.temperature": self._temperature(reading),
            "station.undervoltage": self._undervoltage(reading),
            "station.disk": self._disk_space(),
            "station.disk_smart": self._smart(reading),
            "station.clock": self._clock(now),
            "station.broker": self._broker(now),
            "station.centre": self._centre(now),
            "station.outbox": self._outbox(catalog, now),
            "station.backlog": self._backlog(catalog, now),
            "station.restart": None,
        }
        hold = self.config.faults.clear_after_minutes * 60
        for kind, what in found.items():
            if what is None:
                condition_gone(catalog, kind, SUBJECT, hold_s=hold, note="condition gone", now=now)
            else:
                detail, evidence, severity = what
                report_fault(catalog, kind, SUBJECT, detail, severity=severity, evidence=evidence)

    # -- the rules -----------------------------------------------------------------------

    def _temperature(self, r: Reading) -> Found:
        limit = self.config.faults.station_temperature_max_c
        if r.temperature_c is None or r.temperature_c <= limit:
            return None
        detail = (
            f"the station is at {r.temperature_c:.1f} C (limit {limit:g} C): check its "
            "fan, its case and the room"
        )
        return detail, {"temperature_c": r.temperature_c, "limit_c": limit}, "error"

    def _undervoltage(self, r: Reading) -> Found:
        if r.throttled is None or not r.throttled & (UNDER_VOLTAGE_NOW | UNDER_VOLTAGE_SINCE_BOOT):
            return None
        now = bool(r.throttled & UNDER_VOLTAGE_NOW)
        detail = (
            f"the station's supply is too weak (under-voltage {'now' if now else 'since boot'}"
            f", throttled flags {r.throttled:#x}): use the official power supply"
        )
        return detail, {"throttled": f"{r.throttled:#x}", "under_voltage_now": now}, "error"

    def _disk_space(self) -> Found:
        store = self.home / "store"
        try:
            usage = shutil.disk_usage(store if store.exists() else self.home)
        except OSError:
            return None
        pct, limit = 100.0 * usage.free / usage.total, self.config.faults.store_low_percent
        if pct >= limit:
            return None
        detail = (
            f"the store's disk has {pct:.1f} % free (at least {limit:g} % wanted): have "
            "the synced recordings moved off, or a larger disk fitted"
        )
        evidence = {
            "free_bytes": usage.free,
            "total_bytes": usage.total,
            "free_percent": round(pct, 2),
            "limit_percent": limit,
        }
        return detail, evidence, "warning"

    def _smart(self, r: Reading) -> Found:
        if r.disk is None or r.disk.passed:
            return None
        detail = f"the store's disk is failing ({r.disk.detail}): replace it before it is lost"
        return detail, {"device": r.disk.device, "smart": r.disk.detail}, "critical"

    def _clock(self, now: datetime) -> Found:
        if self.clock.synchronised():
            self.unsynchronised_since = None
            return None
        since = self.unsynchronised_since = self.unsynchronised_since or now
        minutes, limit = (
            (now - since).total_seconds() / 60,
            self.config.faults.ntp_unsynchronised_minutes,
        )
        if minutes < limit:
            return None
        detail = (
            f"the station clock has not been NTP-synchronised for {minutes:.0f} min "
            "(recorder clocks are not set meanwhile): check the network and timesyncd"
        )
        evidence = {
            "unsynchronised_since": since.isoformat(),
            "limit_minutes": limit,
            "clock": self.clock.describe(),
        }
        return detail, evidence, "error"

    def _broker(self, now: datetime) -> Found:
        """The MQTT link down longer than the limit (its state: agent/station/linkstate.py)."""
        if not self.config.mqtt.enabled:
            return None
        state = read_link_state(self.home)
        if state is None or state.connected:
            return None
        minutes = (now - datetime.fromisoformat(state.since)).total_seconds() / 60
        limit = self.config.faults.broker_unreachable_minutes
        if minutes < limit:
            return None
        detail = (
            f"the station has not been connected to the broker {state.peer} for "
            f"{minutes:.0f} min (limit {limit:g} min; {state.last_error or 'no error given'}): "
            "the broker or the network is down; events wait in the outbox"
        )
        evidence = {
            "disconnected_since": state.since,
            "minutes": round(minutes, 1),
            "limit_minutes": limit,
            "broker": state.peer,
            "last_connected_at": state.last_connected_at,
            "last_error": state.last_error,
        }
        return detail, evidence, "error"

    def _centre(self, now: datetime) -> Found:
        """The central store unreachable longer than the limit (its state: the uploader's
        contacts, agent/station/linkstate.py); any HTTP answer counts as reachable."""
        if not self.config.upload.enabled:
            return None
        state = read_link_state(self.home, CENTRE_LINK)
        if state is None or state.connected:
            return None
        hours = (now - datetime.fromisoformat(state.since)).total_seconds() / 3600
        limit = self.config.faults.centre_unreachable_hours
        if hours < limit:
            return None
        detail = (
            f"the central store {state.peer} has not answered for {hours:.1f} h (limit "
            f"{limit:g} h; {state.last_error or 'no error given'}): the centre or the network "
            "is down; recordings wait in the store"
        )
        evidence = {
            "unreachable_since": state.since,
            "hours": round(hours, 2),
            "limit_hours": limit,
            "endpoint": state.peer,
            "failure": state.failure,
            "last_error": state.last_error,
            "last_reachable_at": state.last_connected_at,
            "checked_at": state.checked_at,
        }
        return detail, evidence, "error"

    def _outbox(self, catalog: Catalog, now: datetime) -> Found:
        """The oldest message waiting for the broker's acknowledgement older than the limit:
        connected or not, nothing goes out (a broker refusing what we send, a stuck publisher)."""
        if not self.config.mqtt.enabled:
            return None
        oldest = outbox.oldest_created_at(catalog.conn)
        limit = self.config.faults.outbox_max_age_minutes
        if oldest is None or (now - datetime.fromisoformat(oldest)).total_seconds() < limit * 60:
            return None
        minutes = (now - datetime.fromisoformat(oldest)).total_seconds() / 60
        m = self.config.mqtt
        detail = (
            f"a message has waited {minutes:.0f} min in the outbox for the broker {m.host}:"
            f"{m.port} (limit {limit:g} min): read the station's log (journalctl -u recdock)"
        )
        evidence = {
            "oldest_queued_at": oldest,
            "backlog": outbox.backlog(catalog.conn),
            "limit_minutes": limit,
            "broker": f"{m.host}:{m.port}",
        }
        return detail, evidence, "error"

    def _backlog(self, catalog: Catalog, now: datetime) -> Found:
        if not self.config.upload.enabled:
            return None
        oldest = recordings.oldest_unsynced(catalog)
        limit = self.config.faults.backlog_max_age_hours
        if oldest is None or oldest["offloaded_at"] is None:
            return None
        hours = (now - datetime.fromisoformat(oldest["offloaded_at"])).total_seconds() / 3600
        if hours < limit:
            return None
        detail = (
            f"a recording has waited {hours:.1f} h for upload (limit {limit:g} h; footage "
            "is due at the centre within 24 h): check the link to the central store"
        )
        evidence = {
            "oldest_store_path": oldest["store_path"],
            "offloaded_at": oldest["offloaded_at"],
            "waiting": recordings.count_unsynced(catalog),
            "limit_hours": limit,
        }
        return detail, evidence, "error"
