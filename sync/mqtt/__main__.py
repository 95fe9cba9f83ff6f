"""A station's publisher as a process: ``python -m sync.mqtt --home DIR --config FILE``."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

from agent.config.keys import load_signing_key, signing_key_path
from agent.config.links import MqttConfig
from agent.errors import ConfigError, RecdockError
from agent.seams.signals import SignalRelay
from sync.mqtt.link import MqttLink
from sync.mqtt.publisher import OutboxPublisher

logger = logging.getLogger(__name__)


def run_publisher(home: Path, station_id: str, config: MqttConfig, *, stop: threading.Event) -> int:
    """Run link + publisher until ``stop`` is set; then stop cleanly ("stopped" status)."""
    key = load_signing_key(signing_key_path(config, home))
    link = MqttLink(config, station_id, signing_key=key)
    publisher = OutboxPublisher(
        home / "catalog.db",
        station_id,
        link,
        signing_key=key,
        max_message_bytes=config.max_message_bytes,
        max_inflight=config.max_inflight,
        batch=config.publish_batch,
    )
    publisher.start()
    link.start()
    try:
        while not stop.wait(0.5):
            if not publisher.is_alive():
                logger.error("outbox publisher ended: %s", publisher.error)
                return 1
    finally:
        publisher.stop()
        link.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m sync.mqtt --home DIR [--config FILE]``: publish a station's outbox."""
    import argparse

    from agent.config import load_config, resolve_home

    parser = argparse.ArgumentParser(
        prog="python -m sync.mqtt",
        description="Publish the station's outbox to the MQTT broker of its [mqtt] config "
        "until SIGTERM/SIGINT, then publish the retained 'stopped' status.",
    )
    parser.add_argument("--home", type=Path, default=None, help="Station data folder.")
    parser.add_argument("--config", type=Path, default=None, help="Station TOML config.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"recdock: {exc}", file=sys.stderr)
        return exc.exit_code
    mqtt_config: MqttConfig = config.mqtt  # type: ignore[attr-defined]
    if not mqtt_config.enabled:
        print("recdock: mqtt.enabled is false: nothing to publish to", file=sys.stderr)
        return 78
    stop = threading.Event()
    home = resolve_home(args.home)
    # SIGTERM/SIGINT set stop from a relay thread: run_publisher waits in stop.wait() on this
    # thread, and a handler setting it there could deadlock (agent/seams/signals.py)
    with SignalRelay(stop.set):
        try:
            return run_publisher(home, config.station_id, mqtt_config, stop=stop)
        except RecdockError as exc:
            print(f"recdock: {exc}", file=sys.stderr)
            return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
