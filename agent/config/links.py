"""Settings of the station's way out: the MQTT link and the tus uploader.

Both sections are strict (``extra="forbid"``), every field has a description and bounds,
and both are off by default: a station works with no broker and no central store (the
outbox and the store wait). Secrets may stay out of the config file: an unset password or
token is read from ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``), see
:meth:`MqttConfig.resolved_password` and :meth:`UploadConfig.resolved_token`.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

logger = logging.getLogger(__name__)

MQTT_PASSWORD_CREDENTIAL = "mqtt-password"
UPLOAD_TOKEN_CREDENTIAL = "upload-token"
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def credential_path(name: str) -> Path | None:
    """``$CREDENTIALS_DIRECTORY/<name>`` (systemd ``LoadCredential=``), or None without it."""
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    return Path(cred_dir) / name if cred_dir else None


def read_credential(name: str) -> str | None:
    """``$CREDENTIALS_DIRECTORY/<name>`` without its trailing newline, or None when absent."""
    path = credential_path(name)
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except FileNotFoundError:
        return None


class MqttTls(_Strict):
    enabled: bool = Field(
        default=False,
        description="Use TLS even with no ca_file: the system's CA certificates then check the "
        "broker. Giving ca_file or cert_file switches TLS on as well.",
    )
    ca_file: Path | None = Field(
        default=None,
        description="CA certificate(s) (PEM) the broker's certificate is checked against "
        "(switches TLS on).",
    )
    cert_file: Path | None = Field(
        default=None, description="Client certificate (PEM), for brokers that require one."
    )
    key_file: Path | None = Field(
        default=None, description="Private key (PEM) of cert_file; required with cert_file."
    )

    @model_validator(mode="after")
    def _pair(self) -> MqttTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: give both or neither")
        return self

    @property
    def active(self) -> bool:
        return self.enabled or self.ca_file is not None or self.cert_file is not None


class MqttConfig(_Strict):
    """``[mqtt]``: the link to an MQTT 3.1.1/5 broker (docs/mqtt.md)."""

    enabled: bool = Field(
        default=False,
        description="Publish the outbox to a broker. Off: the station works alone and the "
        "outbox keeps every message until a broker is configured.",
    )
    host: str = Field(
        default="localhost", min_length=1, max_length=253, description="Broker host name or IP."
    )
    port: Annotated[int, Field(ge=1, le=65535)] = Field(
        default=1883, description="Broker port: 1883 plain, 8883 with TLS."
    )
    protocol: Literal["3.1.1", "5"] = Field(default="3.1.1", description="MQTT protocol version.")
    client_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="MQTT client id; default 'recdock-<station_id>'.",
    )
    keepalive: Annotated[int, Field(ge=5, le=3600)] = Field(
        default=30,
        description="Seconds between keep-alive pings; the broker publishes the Last Will "
        "('offline') about 1.5 x this after the station goes silent.",
    )
    tls: MqttTls = Field(default_factory=MqttTls, description="TLS files ([mqtt.tls]).")
    tls_insecure_skip_verify: bool = Field(
        default=False,
        description="INSECURE: accept any broker certificate and host name. Only for a lab; "
        "the station logs a warning at every start while it is set.",
    )
    username: str | None = Field(
        default=None, min_length=1, max_length=256, description="Broker user name."
    )
    password: str | None = Field(
        default=None,
        min_length=1,
        description="Broker password. Better: leave unset and pass it as the systemd "
        "credential 'mqtt-password' (LoadCredential=mqtt-password:FILE).",
    )
    max_inflight: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=20,
        description="QoS 1 messages sent and not yet acknowledged (PUBACK) at a time.",
    )
    max_queued: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=100,
        description="Cap on paho's in-memory queue; the durable queue is the catalog's outbox.",
    )
    publish_batch: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=200, description="Outbox rows read from the catalog at a time."
    )
    reconnect_min_s: Annotated[int, Field(ge=1, le=60)] = Field(
        default=1, description="First wait before reconnecting after the broker went away."
    )
    reconnect_max_s: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=60, description="Longest wait between reconnect attempts (doubling up to it)."
    )
    signing_key: Path | None = Field(
        default=None,
        description="Ed25519 private key (PEM, mode 0400) that signs every message; made by "
        "`recdock enrol`. Unset: the systemd credential 'signing-key' "
        "(LoadCredential=signing-key:FILE), else <home>/signing-key.",
    )
    max_message_bytes: Annotated[int, Field(ge=4096, le=16 * 1024 * 1024)] = Field(
        default=256 * 1024,
        description="Largest signed message the station publishes; one larger stays in the "
        "outbox with an error in the log (the shipped broker's message_size_limit is the same).",
    )
    insecure_lab: bool = Field(
        default=False,
        description="INSECURE: allow a user name and password without TLS (they cross the "
        "network in clear). Only for a lab; logged at every start while set.",
    )
    health_interval_s: Annotated[float, Field(ge=5, le=86_400)] = Field(
        default=300,
        description="Seconds between two of the station's health reports (retained "
        "recdock/<station>/health: store space, backlogs and their age, clock synchronised, "
        "bays); one is also published at every connect and before a clean stop.",
    )
    centre_public_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="The centre's Ed25519 public key (base64 raw, as `recdock-central` prints "
        "it): the station acts on commands from the centre (fault received, acknowledged, "
        "resolved; the register) only when this key signed them. Unset: it subscribes to none.",
    )

    @field_validator("centre_public_key")
    @classmethod
    def _centre_key(cls, v: str | None) -> str | None:
        if v is not None:
            from sync.wire.signing import parse_public_key

            parse_public_key(v)  # ValueError says what is wrong
        return v

    @model_validator(mode="after")
    def _cross(self) -> MqttConfig:
        tls = self.tls.active or self.tls_insecure_skip_verify
        if self.username is not None and not tls and not self.insecure_lab:
            raise ValueError(
                "username (and its password) without TLS would cross the network in clear: "
                "set [mqtt.tls] ca_file (or enabled = true), or insecure_lab = true for a lab"
            )
        if self.max_queued < self.max_inflight:
            raise ValueError(
                f"max_queued ({self.max_queued}) must be at least max_inflight "
                f"({self.max_inflight})"
            )
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        if self.password is not None and self.username is None:
            raise ValueError("password is set but username is not")
        return self

    def resolved_client_id(self, station_id: str) -> str:
        return self.client_id or f"recdock-{station_id}"

    def resolved_password(self) -> str | None:
        """The password from the config, else from ``$CREDENTIALS_DIRECTORY/mqtt-password``."""
        if self.password is not None:
            return self.password
        return read_credential(MQTT_PASSWORD_CREDENTIAL)


def parse_hours(text: str) -> tuple[time, time]:
    """``"22:00-06:00"`` -> (22:00, 06:00); the window may wrap midnight."""
    m = _HOURS.match(text)
    if not m:
        raise ValueError(f"{text!r}: expected HH:MM-HH:MM in 24-hour time, e.g. '22:00-06:00'")
    start = time(int(m.group(1)), int(m.group(2)))
    end = time(int(m.group(3)), int(m.group(4)))
    if start == end:
        raise ValueError(
            f"{text!r}: start and end are equal; leave allowed_hours unset for any time"
        )
    return start, end


def within_hours(window: tuple[time, time], at: time) -> bool:
    """Whether ``at`` (local time) falls in the window [start, end), wrapping midnight."""
    start, end = window
    if start < end:
        return start <= at < end
    return at >= start or at < end


_PLAIN_HTTP = (
    "the upload token would go to a plain http:// endpoint, readable on the network: use an "
    "https:// endpoint, or set [upload] insecure_lab = true for a lab"
)


class UploadConfig(_Strict):
    """``[upload]``: recordings to the central store over tus 1.0 (docs/configuration.md)."""

    enabled: bool = Field(
        default=False,
        description="Upload recordings to the central store. Off: recordings stay only in "
        "the station store.",
    )
    endpoint: str | None = Field(
        default=None,
        description="URL of the tus creation endpoint, e.g. https://central.example/files/",
    )
    token: str | None = Field(
        default=None,
        min_length=16,
        description="This station's bearer token. Better: leave unset and pass it as the "
        "systemd credential 'upload-token' (LoadCredential=upload-token:FILE).",
    )
    chunk_bytes: Annotated[int, Field(ge=64 * 1024, le=1024 * 1024 * 1024)] = Field(
        default=64 * 1024 * 1024,
        description="Bytes per PATCH request (the server fsyncs each before acknowledging it); "
        "after a cut at most one chunk is sent again.",
    )
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=30.0, description="Connect and read timeout of every HTTP request."
    )
    bandwidth_bytes_per_s: int | None = Field(
        default=None,
        ge=1024,
        description="Upload rate limit in bytes per second (at least 1024); unset: unlimited.",
    )
    allowed_hours: str | None = Field(
        default=None,
        description="Local time window for uploads, 'HH:MM-HH:MM' (may wrap midnight, e.g. "
        "'22:00-06:00'), so shift changes do not flood the network; unset: any time.",
    )
    retries: Annotated[int, Field(ge=0, le=100)] = Field(
        default=5, description="Retries (with exponential backoff) of a failed request."
    )
    ca_file: Path | None = Field(
        default=None,
        description="CA certificate(s) (PEM) for the endpoint's HTTPS; unset: the system CAs.",
    )
    probe_every_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = Field(
        default=5.0,
        description="With nothing to send (or outside allowed_hours), ask the endpoint "
        "(OPTIONS, no token) this often, so the station knows whether the centre answers "
        "('station.centre' fault, `recdock status`).",
    )
    insecure_lab: bool = Field(
        default=False,
        description="INSECURE: let the upload token go to a plain http:// endpoint. Only for a "
        "lab; without it the station refuses to start with a token and an http:// endpoint, "
        "with it the station logs a warning at every start.",
    )

    @field_validator("allowed_hours")
    @classmethod
    def _hours(cls, v: str | None) -> str | None:
        if v is not None:
            parse_hours(v)
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must be an http:// or https:// URL")
        return v

    @model_validator(mode="after")
    def _cross(self) -> UploadConfig:
        if self.enabled and self.endpoint is None:
            raise ValueError("upload.enabled needs upload.endpoint")
        if self.token is not None and self.plain_http and not self.insecure_lab:
            raise ValueError(_PLAIN_HTTP)
        return self

    @property
    def plain_http(self) -> bool:
        """The endpoint is ``http://``: whatever goes there, the network sees."""
        return self.endpoint is not None and self.endpoint.lower().startswith("http://")

    def token_over_plain_http(self, token: str | None) -> bool:
        """True when ``token`` goes to an ``http://`` endpoint under ``insecure_lab`` (the
        caller warns); raises ValueError when it would go there without it."""
        if token is None or not self.plain_http:
            return False
        if not self.insecure_lab:
            raise ValueError(_PLAIN_HTTP)
        return True

    def window(self) -> tuple[time, time] | None:
        return parse_hours(self.allowed_hours) if self.allowed_hours else None

    def resolved_token(self) -> str | None:
        """The token from the config, else from ``$CREDENTIALS_DIRECTORY/upload-token``."""
        if self.token is not None:
            return self.token
        return read_credential(UPLOAD_TOKEN_CREDENTIAL)
