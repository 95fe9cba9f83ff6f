"""The fleet simulator: stations that publish what a real station publishes in a shift.

Issue 14's load bench (``bench/bench_central.py fleet``; bench/fleet_run.py measures with it).
This module keeps the simulated fleet: the stations, their recorders, what a docking writes,
and the schedule of a shift change at a given rate.

**Each simulated station is a real station's catalog.** A station has its own Ed25519 key
(enrolled at the centre), its own MQTT identity (its certificate's common name, the shipped
ACL's user), its bays and its recorders (each with an officer and a unit), and its own
station catalog (agent/catalog) in a folder of its own. A docking goes through the station's
own write functions, each one transaction with its audit entry and outbox row as on a station
(rule 3, docs/architecture.md): the bay's states (agent/catalog/bays.py), the session's start
(agent/offload/session.py) and its end (the row and entry ``finalize_session`` writes; no
manifest, there is no store), a ``file.stored`` per recording (in one group commit, the
offloader's fields) and a ``file.removed_from_recorder`` per recording, the pre-shift checks
(agent/checks/rules.py's battery, storage and firmware rules on the recorder's reported
values; agent/checks/__init__.py's ``record_checks``: the ``checks`` event and the retained
recorder report), a recorder fault opening or its condition gone (agent/catalog/faults.py),
and the bay going idle when the recorder is taken. The station's status (``online``) and its
periodic health report (agent/station/report.py) come from the same code. What leaves is read
from the station's outbox (agent/catalog/outbox.py's ``pending``: the events built from the
audit log) and signed as the outbox publisher signs it (sync/wire/signing.py), so the centre
gets byte for byte what a station would send: a valid chain per station, retained states
signed over their topics. What a simulated docking does not do: copy bytes (no store, no
recordings rows) and upload (no ``file.synced``; tus is not part of this bench).

**The realistic rate** (:func:`realistic_dockings_per_hour`): a shift change in which every
recorder of the fleet docks once within the hour (4,000 dockings an hour for 4,000
recorders, 1.1 a second), each with ``files`` recordings (20 by default: an officer's shift
of event-triggered clips; docs/mqtt.md sizes a docking at 2 x files + 7 events), and every
station's health report every 300 s (``[mqtt] health_interval_s``'s default). Ten times it is
the same fleet docking ten times as often: a city's shift change in six minutes, or a
station backlog drained after an outage.
"""

from __future__ import annotations

import json
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.catalog import Catalog, audit, bays, now_utc, outbox, sessions
from agent.catalog.faults import condition_gone, report_fault
from agent.catalog.station import set_station_status
from agent.checks import record_checks
from agent.checks.results import CheckReport, CheckResult, reason_of
from agent.checks.rules import check_battery, check_firmware, check_storage
from agent.config.settings import Config
from agent.offload.session import new_session_id, open_session
from agent.recorder.profiles import Profile, load_profile
from agent.recorder.status import RecorderInfo
from agent.seams.clock.simulated import SimulatedClock
from agent.station.report import station_report
from sync.wire import topics
from sync.wire.signing import sign_payload

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "firmware_profiles" / "simulated.toml"
HEALTH_INTERVAL_S = 300.0
BATTERY_FAULT = "recorder.battery"


@dataclass(frozen=True)
class Shape:
    """The fleet: ``stations`` x ``bays``, ``recorders`` spread over them, ``files`` a docking."""

    stations: int = 500
    bays: int = 8
    recorders: int = 4000
    files: int = 20
    units: int = 50
    fault_share: float = 0.05  # recorders whose battery fails at a docking (a fault opens)


def realistic_dockings_per_hour(shape: Shape) -> float:
    """Every recorder docks once in the hour of a shift change."""
    return float(shape.recorders)


@dataclass(frozen=True)
class Message:
    """One publication as it leaves a station: signed payload, QoS 1."""

    station: str
    topic: str
    payload: bytes
    retain: bool

    @property
    def is_event(self) -> bool:
        return self.topic.endswith("/event")


@dataclass(frozen=True)
class Probe:
    """A docking's ``checks`` event: its station, seq and time, and the recorder it names."""

    station: str
    seq: int
    at: str
    serial: str


@dataclass
class Recorder:
    serial: str
    officer: str
    unit: str
    bay: int
    fault_open: bool = False


@dataclass
class Docking:
    messages: list[Message]
    probe: Probe | None


@dataclass
class SimStation:
    """One station: its key, its catalog (a real station catalog) and its recorders."""

    name: str
    home: Path
    bays: int
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    recorders: list[Recorder] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "store").mkdir(exist_ok=True)
        self.catalog = Catalog(self.home / "catalog.db", station_id=self.name)
        ports = {f"port{n}": n for n in range(1, self.bays + 1)}
        self.config = Config(station_id=self.name, bays=ports)
        self.clock = SimulatedClock()

    def close(self) -> None:
        self.catalog.close()

    # -- what leaves the station ---------------------------------------------------------

    def drain(self) -> list[Message]:
        """Everything queued in the outbox, signed as the publisher signs it; the rows go, as
        on the broker's PUBACK (the bench publishes at QoS 1 and waits for it)."""
        out: list[Message] = []
        while rows := outbox.pending(self.catalog.conn, limit=500):
            for row in rows:
                signed = sign_payload(self.key, row.topic, row.payload)
                out.append(Message(self.name, row.topic, signed, row.retain))
            with self.catalog.tx() as conn:
                outbox.acknowledge(conn, [row.id for row in rows])
        return out

    def online(self) -> list[Message]:
        """The daemon's start: its audited, retained ``online``."""
        set_station_status(self.catalog, "online", {"pid": 1, "simulate": True, "bench": True})
        return self.drain()

    def health(self) -> Message:
        """The periodic health report (sync/mqtt/health.py signs it straight to the link)."""
        doc = station_report(self.catalog, self.config, self.home, self.clock)
        topic = topics.health(self.name)
        payload = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        return Message(self.name, topic, sign_payload(self.key, topic, payload), True)

    def last_will(self) -> bytes:
        from sync.wire.payloads import status_payload

        topic = topics.status(self.name)
        return sign_payload(self.key, topic, status_payload(self.name, "offline"))


def build_stations(folder: Path, shape: Shape) -> list[SimStation]:
    """The fleet's stations with their recorders (one recorder per bay while they last)."""
    stations = [
        SimStation(f"FS-{i:04d}", folder / f"FS-{i:04d}", shape.bays) for i in range(shape.stations)
    ]
    for r in range(shape.recorders):
        st = stations[r % shape.stations]
        bay = len(st.recorders) % shape.bays + 1
        rec = Recorder(f"FR{r:06d}", f"{300000 + r}", f"unit-{r % shape.units:03d}", bay)
        st.recorders.append(rec)
    return stations


# -- a docking, through the station's own write functions --------------------------------


class Dock:
    """What one docking writes at its station, in the order a bay writes it."""

    def __init__(self, shape: Shape, rng: random.Random) -> None:
        self.shape = shape
        self.rng = rng
        self.profile: Profile = load_profile(PROFILE)

    def run(self, st: SimStation, rec: Recorder, files: int | None = None) -> Docking:
        """One docking of ``rec`` with ``files`` recordings (the shape's by default); what the
        station sends is drained after each step, as a connected station sends it."""
        cat, out = st.catalog, []
        bays.set_bay_state(cat, rec.bay, "recognised", device_serial=rec.serial,
                           profile=self.profile.name)  # fmt: skip
        out += st.drain()
        started = datetime.now(UTC)
        sid = new_session_id(started)
        store_dir = f"{started:%Y/%m/%d}/{rec.serial}/{sid}"
        n = self.shape.files if files is None else files
        self._session(st, rec, sid, store_dir, started, n)
        out += st.drain()
        report = self._checks(st, rec)
        record_checks(cat, report, device_serial=rec.serial, session_id=sid, bay=rec.bay)
        self._fault(st, rec, report)
        state = "ready" if report.ready else "not_ready"
        reason = report.reasons[0] if report.reasons else None
        bays.set_bay_state(cat, rec.bay, state, device_serial=rec.serial,
                           profile=self.profile.name, reason=reason, session_id=sid)  # fmt: skip
        out += st.drain()
        bays.set_bay_state(cat, rec.bay, "idle")  # taken for the next shift
        out += st.drain()
        return Docking(out, _probe(out, rec.serial))

    def _session(
        self, st: SimStation, rec: Recorder, sid: str, store_dir: str, started: datetime, n: int
    ) -> None:
        cat = st.catalog
        row = {"id": sid, "station_id": st.name, "device_serial": rec.serial,
               "officer_id": rec.officer, "unit": rec.unit, "profile": self.profile.name,
               "source": f"/run/recdock/mnt/bay{rec.bay}", "store_dir": store_dir,
               "started_at": started.isoformat(), "device_info": "{}", "files_seen": n,
               "problems": 0}  # fmt: skip
        start = {"device_serial": rec.serial, "officer_id": rec.officer, "unit": rec.unit,
                 "profile": self.profile.name, "files_seen": n, "problems": []}  # fmt: skip
        open_session(cat, row, start)
        files = [self._file(rec, sid, store_dir, started, k) for k in range(n)]
        if files:
            with cat.tx() as conn:  # the offloader's group commit
                for path, data in files:
                    audit.append(cat, "file.stored", path, data)
                sessions.add_stored(conn, sid, n, sum(d["size"] for _, d in files))
            with cat.tx():  # each removal recorded after the commit (agent/offload/clear.py)
                for path, data in files:
                    gone = {"device_serial": rec.serial, "sha256": data["sha256"],
                            "store_path": path}  # fmt: skip
                    audit.append(cat, "file.removed_from_recorder", data["source_path"], gone)
        with cat.tx() as conn:
            sessions.end(conn, sid, "done", now_utc())
            audit.append(cat, "session.end", sid, {"state": "done", "files_stored": n,
                                                   "device_serial": rec.serial})  # fmt: skip

    def _file(self, rec: Recorder, sid: str, store_dir: str, started: datetime, k: int):
        end = started - timedelta(hours=1 + k * 0.4)
        begin = end - timedelta(minutes=self.rng.uniform(1, 20))
        source = f"DCIM/100RDSIM/RD_{begin:%Y%m%d%H%M%S}_{k:04d}.MP4"
        data = {"session_id": sid, "device_serial": rec.serial, "source_path": source,
                "sha256": secrets.token_hex(32), "sm3": None,
                "size": self.rng.randrange(20, 600) * 2**20, "late": False,
                "age_hours": round((started - end).total_seconds() / 3600, 3),
                "recorded_start": begin.isoformat(), "recorded_end": end.isoformat()}  # fmt: skip
        return f"{store_dir}/media/{source}", data

    def _checks(self, st: SimStation, rec: Recorder) -> CheckReport:
        """The station's battery, storage and firmware rules on what the recorder reports."""
        low = self.rng.random() < self.shape.fault_share
        battery = self.rng.uniform(5, 40) if low else self.rng.uniform(80, 100)
        free = self.rng.randrange(40, 120) * 2**30
        info = RecorderInfo(rec.serial, self.profile.name, officer=rec.officer, unit=rec.unit,
                            model="SIM-1", firmware="1.0.0", battery_pct=round(battery, 1),
                            charging=not low, free_bytes=free, total_bytes=128 * 2**30)  # fmt: skip
        offset = round(self.rng.uniform(-2.0, 2.0), 3)
        clock = CheckResult("clock", True, f"{offset:+.1f} s", "<= 30 s", "set to the station")
        results = [check_battery(info, self.profile, st.config),
                   check_storage(free, self.profile, st.config), clock,
                   check_firmware(info, self.profile, st.config)]  # fmt: skip
        failed = [r for r in results if r.ok is False]
        reported = {k: getattr(info, k) for k in ("officer", "unit", "model", "firmware",
                                                  "battery_pct", "charging", "free_bytes",
                                                  "total_bytes")}  # fmt: skip
        return CheckReport(results=results, ready=not failed,
                           reasons=[reason_of(r, st.config) for r in failed],
                           clock_offset_s=offset, clock_offset_after_s=0.0, clock_set=True,
                           station_clock=st.clock.describe(), device_serial=rec.serial,
                           reported=reported)  # fmt: skip

    def _fault(self, st: SimStation, rec: Recorder, report: CheckReport) -> None:
        """A battery that failed opens a fault; one that passes again resolves it."""
        battery = report.result("battery")
        if battery.ok is False:
            report_fault(st.catalog, BATTERY_FAULT, rec.serial,
                         f"battery {battery.value} at docking, not charging",
                         severity="warning", evidence={"battery": battery.value})  # fmt: skip
            rec.fault_open = True
        elif rec.fault_open:
            condition_gone(st.catalog, BATTERY_FAULT, rec.serial, hold_s=0,
                           note=f"battery {battery.value} at docking")  # fmt: skip
            rec.fault_open = False


def _probe(messages: list[Message], serial: str) -> Probe | None:
    for m in messages:
        if m.is_event:
            doc = json.loads(m.payload)
            if doc["kind"] == "checks":
                return Probe(m.station, doc["seq"], doc["at"], serial)
    return None


# -- the schedule --------------------------------------------------------------------------


@dataclass
class Slot:
    """One scheduled publication: at ``t`` seconds into the phase, ``messages`` (a docking or a
    health report); ``probe`` when its lag is measured."""

    t: float
    messages: list[Message]
    probe: Probe | None = None


def preload(stations: list[SimStation], dock: Dock) -> list[Message]:
    """Before any phase: every station online, its health report, and every recorder's
    previous docking, without its recordings (so the centre knows the whole fleet, its
    recorders' last checks and the faults they opened, as after a day of service)."""
    out: list[Message] = []
    for st in stations:
        out += st.online()
        for rec in st.recorders:
            out += dock.run(st, rec, files=0).messages
        out.append(st.health())
    return out


def schedule(
    stations: list[SimStation], dock: Dock, *, per_hour: float, seconds: float, probes: int,
    rng: random.Random,
) -> list[Slot]:  # fmt: skip
    """A phase of ``seconds``: dockings arriving at ``per_hour`` (Poisson), each recorder at
    most once, every station's health report every 300 s (staggered); ``probes`` dockings,
    spread over the phase, are marked for the lag."""
    slots = list(_health_slots(stations, seconds, rng))
    order = [(st, rec) for st in stations for rec in st.recorders]
    rng.shuffle(order)
    t, docked = rng.expovariate(per_hour / 3600), []
    while t < seconds and len(docked) < len(order):
        docked.append(t)
        t += rng.expovariate(per_hour / 3600)
    every = max(1, len(docked) // max(1, probes))
    for i, at in enumerate(docked):
        st, rec = order[i]
        d = dock.run(st, rec)
        slots.append(Slot(at, d.messages, d.probe if i % every == every // 2 else None))
    slots.sort(key=lambda s: s.t)
    return slots


def _health_slots(stations: list[SimStation], seconds: float, rng: random.Random) -> Iterator[Slot]:
    for st in stations:
        t = rng.uniform(0, HEALTH_INTERVAL_S)
        while t < seconds:
            yield Slot(t, [st.health()])
            t += HEALTH_INTERVAL_S


def counts(messages: list[Message]) -> dict[str, int]:
    """Messages by kind (the topic's third level)."""
    out: dict[str, int] = {}
    for m in messages:
        kind = m.topic.split("/")[2]
        out[kind] = out.get(kind, 0) + 1
    return out


def payload_of(m: Message) -> dict[str, Any]:
    return json.loads(m.payload)
