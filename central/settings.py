"""The centre's thresholds for health words and its own fault rules, in one frozen object.

Each field is a ``recdock-central`` option (central/options.py: ``--station-silent-hours``
and the rest) with the default here; docs/faults.md lists them with the rules that use them.
"""

from __future__ import annotations

from dataclasses import dataclass

#: how often an open dashboard page updates itself (``--poll-seconds``)
DEFAULT_POLL_SECONDS = 5.0


@dataclass(frozen=True)
class CentreSettings:
    """Thresholds of the health words (central/health.py) and the centre's fault rules
    (central/rules.py)."""

    #: a station with no message for this long is ``unknown`` and gets a ``station.silent`` fault
    station_silent_hours: float = 24.0
    #: a station whose status is ``offline`` (its Last Will) this long gets ``station.offline``
    station_offline_minutes: float = 15.0
    #: a recorder with no report for this long is ``unknown``
    recorder_unknown_hours: float = 72.0
    #: a recorder in service docked nowhere for this long gets ``recorder.overdue``
    overdue_hours: float = 24.0
    #: a fault this old is amber on the dashboard (red past the 24-hour limit)
    amber_hours: float = 12.0
    #: clock drift between two dockings above this (seconds a day) gets ``recorder.clock_drift``
    clock_drift_s_per_day: float = 3.0
    #: battery at docking below this percentage ...
    battery_low_pct: float = 20.0
    #: ... at this many dockings in a row, at any stations, gets ``recorder.battery``
    battery_low_dockings: int = 3
    #: late recordings of a unit are counted over this window ...
    late_window_hours: float = 168.0
    #: ... and more than this many open a ``unit.late_footage`` fault
    late_max: int = 0
    #: a station's store with less free than this (percent of its size) is low: ``degraded``
    store_low_percent: float = 10.0
    #: events waiting at a station for the broker longer than this (minutes): ``degraded``
    event_backlog_minutes: float = 60.0
    #: a recording waiting at a station for its upload longer than this (hours): ``degraded``
    upload_backlog_hours: float = 12.0
    #: how often recdock-central evaluates its rules (seconds)
    rules_interval_s: float = 60.0
    #: the longest an approved access request lasts (days; docs/access.md)
    access_max_days: float = 30.0
