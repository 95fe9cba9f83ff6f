"""What a check tells: its result (value, threshold, reason in words), and the whole report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from agent.config import Config

GiB = 1024**3
ORDER = ("battery", "storage", "clock", "firmware", "offload", "late")
LATE_LISTED = 5  # late recordings named in the detail; the full list is in CheckReport.late


@dataclass
class CheckResult:
    name: str  # battery | storage | clock | firmware | offload | late
    ok: bool | None  # None: could not be measured (the model offers no way): "unknown"
    value: str
    threshold: str
    detail: str = ""

    @property
    def state(self) -> str:
        return "pass" if self.ok else ("unknown" if self.ok is None else "FAIL")


@dataclass
class CheckReport:
    results: list[CheckResult]
    ready: bool
    reasons: list[str]
    clock_offset_s: float | None
    clock_offset_after_s: float | None
    clock_set: bool
    late: list[dict[str, Any]] = field(default_factory=list)
    station_clock: str = ""  # StationClock.describe() at the time of the check
    device_serial: str | None = None  # as read from the recorder (or given by the caller)
    #: what the recorder reported, as numbers and names (battery_pct, free_bytes, officer...):
    #: the health message carries them for the centre's trends (sync/wire/schemas/recorder.json)
    reported: dict[str, Any] = field(default_factory=dict)

    def result(self, name: str) -> CheckResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "reasons": list(self.reasons),
            "results": [{**asdict(r), "state": r.state} for r in self.results],
            "clock_offset_s": self.clock_offset_s,
            "clock_offset_after_s": self.clock_offset_after_s,
            "clock_set": self.clock_set,
            "late": [dict(x) for x in self.late],
            "station_clock": self.station_clock,
            "device_serial": self.device_serial,
        }


# -- formatting -------------------------------------------------------------------------


def fmt_size(n: float) -> str:
    if n >= GiB:
        return f"{n / GiB:.1f} GiB"
    return f"{n / 1024**2:.1f} MiB"


def fmt_pct(p: float) -> str:
    return f"{p:.0f} %"


def fmt_offset(s: float) -> str:
    return f"{s:+.1f} s"


def fmt_span(seconds: float) -> str:
    """A clock offset in words: '1 h 0 min ahead', '26.0 years behind'."""
    a = abs(seconds)
    side = "ahead" if seconds > 0 else "behind"
    if a >= 2 * 86400 * 365:
        return f"{a / (86400 * 365.25):.1f} years {side}"
    if a >= 2 * 86400:
        return f"{a / 86400:.1f} days {side}"
    if a >= 3600:
        return f"{int(a // 3600)} h {int(a % 3600 // 60)} min {side}"
    if a >= 60:
        return f"{int(a // 60)} min {int(a % 60)} s {side}"
    return f"{a:.1f} s {side}"


def reason_of(r: CheckResult, config: Config) -> str:
    if r.name == "battery":
        if r.value in ("not reported", "unknown"):
            return "battery level not reported"
        base = f"battery {r.value} < {fmt_pct(config.checks.min_battery_pct)}"
        return f"{base}, {r.detail}" if r.detail.startswith("charging") else base
    if r.name == "storage":
        return f"storage {r.value} < {r.threshold.removeprefix('>= ')}"
    if r.name == "clock":
        if "not NTP-synchronised" in r.detail:
            return f"clock {r.value} off; station clock not synchronised"
        if "re-dock" in r.detail:
            return "clock set; re-dock to confirm"
        return f"clock {r.value} off"
    if r.name == "firmware":
        return f"firmware {r.value} not approved"
    if r.name == "offload":
        return f"offload: only {r.value}"
    if r.name == "register":
        return f"register: {r.value.replace('_', ' ')} at the centre"
    return f"{r.name}: {r.detail or r.value}"
