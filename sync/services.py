"""The station's background services: the MQTT outbox publisher and health report, the
uploader, the anchor.

All are off unless configured (``[mqtt] enabled``, ``[upload] enabled``): a station
works with no broker and no central store, its outbox and store simply wait. The
daemon starts them once the dock listens and stops them after its last events were
queued, so the clean "stopped" status and the final events still go out. The anchor
check (with ``[upload]``, unless ``[anchor] enabled = false``) compares the local audit
chain with the centre's once a day (sync/anchor.py).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from agent.config import Config
from agent.seams.clock import StationClock
from agent.station.daemon import Service

log = logging.getLogger(__name__)


class MqttService:
    """The MQTT link (Last Will "offline", retained status), the outbox publisher and the
    station's health report (sync/mqtt/health.py, measured with ``clock``: the station's
    clock seam; None is the system clock)."""

    def __init__(self, config: Config, home: Path, clock: StationClock | None = None) -> None:
        from agent.config.keys import load_signing_key, signing_key_path
        from agent.seams.clock import make_clock
        from sync.mqtt.health import HealthReporter
        from sync.mqtt.link import MqttLink
        from sync.mqtt.publisher import OutboxPublisher

        self.config = config
        key = load_signing_key(signing_key_path(config.mqtt, home))
        self.link = MqttLink(config.mqtt, config.station_id, signing_key=key)
        self.publisher = OutboxPublisher(
            home / "catalog.db",
            config.station_id,
            self.link,
            signing_key=key,
            max_message_bytes=config.mqtt.max_message_bytes,
            max_inflight=config.mqtt.max_inflight,
            batch=config.mqtt.publish_batch,
        )
        self.health = HealthReporter(
            self.link, config, home, clock or make_clock("system"), signing_key=key
        )

        self.commands = self._commands(config, home)
        self.state = self._link_state(home)

    def _link_state(self, home: Path):  # -> LinkStateFile
        """The link's state for the station's ``station.broker`` rule (sync/mqtt/linkstate.py)."""
        from sync.mqtt.linkstate import LinkStateFile

        m = self.config.mqtt
        state = LinkStateFile(home, f"{m.host}:{m.port}", lambda: self.link.last_error)
        self.link.add_listener(state)
        return state

    def _commands(self, config: Config, home: Path):  # -> CommandReceiver | None
        """The centre's commands, when its key is configured (sync/mqtt/commands.py)."""
        if config.mqtt.centre_public_key is None:
            log.info("MQTT: no [mqtt] centre_public_key: the centre's commands are not received")
            return None
        from sync.mqtt.commands import CommandReceiver, subscription
        from sync.wire.signing import parse_public_key

        key = parse_public_key(config.mqtt.centre_public_key)
        receiver = CommandReceiver(home, config.station_id, key)
        self.link.subscribe(subscription(config.station_id), receiver.deliver)
        return receiver

    def describe(self) -> str:
        m = self.config.mqtt
        text = f"MQTT: publishing the outbox to {m.host}:{m.port} (MQTT {m.protocol})"
        return text + (", receiving the centre's signed commands" if self.commands else "")

    def start(self) -> None:
        if self.commands is not None:
            self.commands.start()
        self.publisher.start()
        self.state.started()
        self.health.start()
        self.link.start()

    def wake(self) -> None:
        """Nothing to do: the publisher picks up new outbox rows within half a second."""

    def stop(self) -> None:
        # give the last queued events (bay states, "stopped") a moment to go out
        if not self.publisher.flush(timeout=5.0):
            log.warning("MQTT: stopping with messages still in the outbox; they are sent later")
        self.publisher.stop()
        self.health.stop()  # the last report, ahead of the link's "stopped"
        self.link.stop()
        if self.commands is not None:
            self.commands.stop()


class UploadService:
    """The tus uploader, one pass after another, in its own thread."""

    def __init__(self, config: Config, home: Path) -> None:
        from sync.upload.worker import UploadWorker

        self.config = config
        self.stop_event = threading.Event()
        self.worker = UploadWorker(config, home, stop=self.stop_event)
        self.thread = threading.Thread(target=self._run, name="uploader", daemon=True)

    def describe(self) -> str:
        return f"uploads: to {self.config.upload.endpoint}"

    def _run(self) -> None:
        try:
            self.worker.run_forever()
        except Exception:
            log.exception("the uploader stopped; recordings wait in the store until restart")
        finally:
            self.worker.close()

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        self.worker.wake()

    def stop(self) -> None:
        self.stop_event.set()
        self.worker.wake()
        self.thread.join(timeout=60)


class AnchorService:
    """Once every ``anchor.check_every_hours``: the local chain against the centre's head.

    A disagreement opens a critical ``chain.central`` fault (audited, published, shown by
    ``recdock status``); a later check that agrees resolves it. A centre that cannot be asked
    is logged and tried again at the next check.
    """

    FAULT_KIND = "chain.central"
    FAULT_SUBJECT = "audit log"

    def __init__(self, config: Config, home: Path, *, first_after_s: float = 60.0) -> None:
        self.config = config
        self.home = home
        self.first_after_s = first_after_s
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="anchor", daemon=True)
        self.checks = 0

    def describe(self) -> str:
        every = self.config.anchor.check_every_hours
        return f"anchor: the audit chain compared with the centre's every {every:g} h"

    def _run(self) -> None:
        delay = self.first_after_s
        while not self.stop_event.wait(delay):
            delay = self.config.anchor.check_every_hours * 3600
            try:
                self.check_once()
            except Exception:
                log.exception("anchor: the check failed; it runs again in %.0f s", delay)

    def check_once(self):  # -> sync.anchor.AnchorReport | None
        """One comparison; the report, or None when the centre could not be asked."""
        from agent.catalog import Catalog
        from agent.catalog.faults import report_fault, resolve_fault
        from sync.anchor import AnchorUnavailable, check_against_central

        catalog = Catalog(self.home / "catalog.db", station_id=self.config.station_id, create=False)
        try:
            try:
                report = check_against_central(self.config, catalog)
            except AnchorUnavailable as exc:
                log.warning("anchor: %s; the chain is compared at the next check", exc)
                return None
            self.checks += 1
            if report.ok:
                resolve_fault(catalog, self.FAULT_KIND, self.FAULT_SUBJECT, "agrees again")
            else:
                detail = "; ".join(report.problems)
                report_fault(
                    catalog, self.FAULT_KIND, self.FAULT_SUBJECT, detail, severity="critical"
                )
            return report
        finally:
            catalog.close()

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        """Nothing to do: the check runs on its own schedule."""

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=30)


def configured_services(
    config: Config, home: Path, clock: StationClock | None = None
) -> list[Service]:
    """The services ``config`` turns on; ``clock`` is the station's clock seam (the health
    report says whether it is synchronised)."""
    services: list[Service] = []
    if config.mqtt.enabled:
        services.append(MqttService(config, home, clock))
    else:
        log.info("MQTT: off ([mqtt] enabled = false): events wait in the outbox")
    if config.upload.enabled:
        services.append(UploadService(config, home))
        if config.anchor.enabled:
            services.append(AnchorService(config, home))
    else:
        log.info("uploads: off ([upload] enabled = false): recordings wait in the store")
    return services
