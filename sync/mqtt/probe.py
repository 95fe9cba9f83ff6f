"""Can the station reach its broker with the credentials it was given? (`recdock doctor`)

One connection with the station's settings (host, port, protocol, TLS, username, password),
under a client id of its own (``<client id>-doctor``, so a running station's session is not
taken over), with no Last Will, publishing nothing; it ends when the broker has answered.
"""

from __future__ import annotations

import ssl
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import Config

DEFAULT_TIMEOUT_S = 5.0


def _client(config: Config) -> mqtt.Client:
    m = config.mqtt
    protocol = mqtt.MQTTv5 if m.protocol == "5" else mqtt.MQTTv311
    kwargs: dict[str, Any] = {"clean_session": True} if protocol == mqtt.MQTTv311 else {}
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{m.resolved_client_id(config.station_id)}-doctor",
        protocol=protocol,
        **kwargs,
    )
    if m.tls.active or m.tls_insecure_skip_verify:
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(m.tls, name)
            if path is not None and not Path(path).is_file():
                raise OSError(f"mqtt.tls.{name}: {path} is not a readable file")
        client.tls_set(
            ca_certs=str(m.tls.ca_file) if m.tls.ca_file else None,
            certfile=str(m.tls.cert_file) if m.tls.cert_file else None,
            keyfile=str(m.tls.key_file) if m.tls.key_file else None,
            cert_reqs=ssl.CERT_NONE if m.tls_insecure_skip_verify else ssl.CERT_REQUIRED,
        )
        if m.tls_insecure_skip_verify:
            client.tls_insecure_set(True)
    if m.username is not None:
        client.username_pw_set(m.username, m.resolved_password())
    return client


def probe_broker(config: Config, timeout: float = DEFAULT_TIMEOUT_S) -> tuple[bool, str]:
    """(True, what the broker said) when it accepted the connection, else (False, why not)."""
    answer: list[str] = []
    accepted = threading.Event()
    answered = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        answer.append(str(reason_code))
        if not reason_code.is_failure:
            accepted.set()
        answered.set()

    def on_disconnect(client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if not answered.is_set():  # closed before any CONNACK: TLS refused us, or the broker
            answer.append(f"it closed the connection before answering ({reason_code})")
            answered.set()

    try:
        client = _client(config)
        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.connect(config.mqtt.host, config.mqtt.port, config.mqtt.keepalive)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return False, f"cannot connect: {type(exc).__name__}: {exc}"
    client.loop_start()
    try:
        if not answered.wait(timeout):
            return False, f"connected, but the broker did not answer within {timeout:g} s"
    finally:
        client.disconnect()
        client.loop_stop()
    user = _identity(config)
    if accepted.is_set():
        return True, f"the broker accepted the connection{user}"
    return False, f"the broker refused the connection{user}: {answer[0]}"


def _identity(config: Config) -> str:
    """How the station said who it is: its user name, else its client certificate."""
    m = config.mqtt
    if m.username:
        return f" as {m.username}"
    if m.tls.cert_file is not None:
        return f" with the client certificate {m.tls.cert_file}"
    return " (anonymous)"
