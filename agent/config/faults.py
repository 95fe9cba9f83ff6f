"""``[faults]``: the thresholds of the fault rules a station applies to its recorders and to
itself, and the lifecycle's times (docs/faults.md names each rule, its setting and evidence)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class FaultsConfig(BaseModel):
    """``[faults]``: when a rule opens a fault, and when a fault counts as unreported."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unreported_after_hours: Annotated[float, Field(gt=0, le=24)] = Field(
        default=1.0,
        description="A fault the centre has not confirmed receiving this long after it opened "
        "is shown at the station indicator and in `recdock status`.",
    )
    clear_after_minutes: Annotated[float, Field(ge=0, le=7 * 24 * 60)] = Field(
        default=60.0,
        description="A station condition (disk, temperature, clock, link) must stay gone this "
        "long before the station resolves its fault by itself.",
    )
    repeated_check_failures: Annotated[int, Field(ge=2, le=100)] = Field(
        default=2,
        description="Dockings in a row at which a recorder fails its pre-shift check for the "
        "same reason before a 'recorder.check' fault opens.",
    )
    clock_reset_before_year: Annotated[int, Field(ge=1980, le=2100)] = Field(
        default=2020,
        description="A recorder clock found before this year was reset (firmware default "
        "years are 1970, 2000, 2010...): a 'recorder.clock' fault opens.",
    )
    clock_drift_s_per_day: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=3.0,
        description="Largest recorder clock drift per day between two dockings (GA/T 947: "
        "<= 3 s/day); more opens a 'recorder.clock' fault.",
    )
    clock_drift_min_hours: Annotated[float, Field(gt=0, le=720)] = Field(
        default=6.0,
        description="Shortest time between two dockings over which drift is measured (a "
        "shorter one says too little).",
    )
    battery_charge_min_pct: Annotated[float, Field(ge=0, le=100)] = Field(
        default=90.0,
        description="Charge a recorder must reach once it has been docked "
        "battery_full_dock_hours; still less then opens a 'battery.charge' fault.",
    )
    battery_reread_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = Field(
        default=15.0,
        description="While a recorder stays docked after its verdict, its battery is read "
        "again (through its profile, read-only) this often and kept in its history.",
    )
    battery_full_dock_hours: Annotated[float, Field(gt=0, le=48)] = Field(
        default=4.0,
        description="A docking at least this long counts as a full dock (time to charge).",
    )
    battery_drain_factor: Annotated[float, Field(gt=1, le=100)] = Field(
        default=2.0,
        description="A recorder whose charge fell this many times faster (%/h, undock to "
        "dock) than its own median opens a 'recorder.battery' fault.",
    )
    battery_history_min: Annotated[int, Field(ge=2, le=1000)] = Field(
        default=3,
        description="Shifts of a recorder's own history needed before its drain is judged.",
    )
    capacity_tolerance_percent: Annotated[float, Field(ge=0, le=50)] = Field(
        default=10.0,
        description="A recorder's file system may be this much smaller than its profile's "
        "storage.capacity_bytes (file systems report less than the label) before a "
        "'storage.capacity' fault opens.",
    )
    mount_failures_in_a_row: Annotated[int, Field(ge=1, le=100)] = Field(
        default=2,
        description="Dockings in a row at which a recorder (by its USB serial, else its USB "
        "port) fails to mount before a 'recorder.mount' fault opens.",
    )
    overdue_after_hours: Annotated[float, Field(gt=0, le=24 * 30)] = Field(
        default=24.0,
        description="A registered recorder not docked again this long after its last "
        "undocking opens a 'recorder.overdue' fault.",
    )
    station_temperature_max_c: Annotated[float, Field(ge=40, le=110)] = Field(
        default=80.0,
        description="Station CPU temperature (thermal zone) above which a 'station.temperature' "
        "fault opens (the Pi throttles from 80-85 C).",
    )
    store_low_percent: Annotated[float, Field(ge=0, le=100)] = Field(
        default=10.0,
        description="Free space of the store's disk, in percent, below which a 'station.disk' "
        "fault opens (before the store's reserve stops offloads).",
    )
    ntp_unsynchronised_minutes: Annotated[float, Field(ge=0, le=7 * 24 * 60)] = Field(
        default=30.0,
        description="Minutes the station clock may stay unsynchronised (NTP) before a "
        "'station.clock' fault opens (recorder clocks are never set from it meanwhile).",
    )
    broker_unreachable_minutes: Annotated[float, Field(gt=0, le=7 * 24 * 60)] = Field(
        default=60.0,
        description="With [mqtt] enabled: the MQTT link disconnected (or never connected) "
        "this long opens a 'station.broker' fault (the broker or the network is down).",
    )
    centre_unreachable_hours: Annotated[float, Field(gt=0, le=7 * 24)] = Field(
        default=1.0,
        description="With [upload] enabled: the central store not answering (connection "
        "refused, name not found, TLS failure, timeout) this long opens a 'station.centre' "
        "fault (the same hour as broker_unreachable_minutes: one network, one outage).",
    )
    outbox_max_age_minutes: Annotated[float, Field(gt=0, le=7 * 24 * 60)] = Field(
        default=60.0,
        description="With [mqtt] enabled: the oldest message waiting in the outbox for the "
        "broker's acknowledgement this long opens a 'station.outbox' fault.",
    )
    backlog_max_age_hours: Annotated[float, Field(gt=0, le=24 * 30)] = Field(
        default=24.0,
        description="With [upload] enabled: a recording waiting for upload this long opens a "
        "'station.backlog' fault (footage must reach the centre within 24 h).",
    )
