"""What a station's health report says now: the facts the dashboard shows and the health
words read (central/health.py), from the report the station signed
(``recdock/<station>/health``, docs/mqtt.md) and the centre's thresholds. No SQL.

A report's ages are durations the station measured when it made the report; the time since
the centre received it is added (the centre's own clock), so they go on growing while a station
is silent, and a station clock that is off changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from central.settings import CentreSettings


def _seconds_since(at: str | None, now: datetime) -> float:
    if not at:
        return 0.0
    then = datetime.fromisoformat(at)
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return max(0.0, (now - then).total_seconds())


def _age(measured: Any, since_received: float) -> float | None:
    if not isinstance(measured, int | float) or isinstance(measured, bool):
        return None
    return round(float(measured) + since_received, 1)


def facts(
    report: dict[str, Any] | None, settings: CentreSettings, now: datetime
) -> dict[str, Any] | None:
    """The report's facts now, with the three conditions the health words read: ``store_low``,
    ``backlog_old`` (events or uploads), ``clock_unsynchronised``; None without a report."""
    if not report:
        return None
    since = _seconds_since(report.get("received_at"), now)
    store, events = report.get("store") or {}, report.get("events") or {}
    uploads, clock, bays = (
        report.get("uploads") or {},
        report.get("clock") or {},
        report.get("bays") or {},
    )
    free, total = store.get("free_bytes"), store.get("total_bytes")
    percent = round(100.0 * free / total, 1) if isinstance(free, int) and total else None
    event_age = _age(events.get("oldest_age_s"), since) if events.get("count") else None
    upload_age = _age(uploads.get("oldest_age_s"), since) if uploads.get("count") else None
    events_old = event_age is not None and event_age > settings.event_backlog_minutes * 60
    uploads_old = (
        bool(uploads.get("enabled"))
        and upload_age is not None
        and upload_age > settings.upload_backlog_hours * 3600
    )
    return {
        "at": report.get("at"),
        "received_at": report.get("received_at"),
        "report_age_s": round(since, 1),
        "version": report.get("version"),
        "store_free_bytes": free,
        "store_total_bytes": total,
        "store_free_percent": percent,
        "store_low": percent is not None and percent < settings.store_low_percent,
        "events_waiting": events.get("count"),
        "events_oldest_age_s": event_age,
        "events_old": events_old,
        "uploads_enabled": uploads.get("enabled"),
        "uploads_waiting": uploads.get("count"),
        "uploads_bytes": uploads.get("bytes"),
        "uploads_oldest_age_s": upload_age,
        "uploads_old": uploads_old,
        "backlog_old": events_old or uploads_old,
        "clock_synchronised": clock.get("synchronised"),
        "clock_unsynchronised": clock.get("synchronised") is False,
        "bays_total": bays.get("total"),
        "bays_in_use": bays.get("in_use"),
    }
