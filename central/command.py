"""``recdock-central`` (the server): its options, and the app built and served only when it runs.

Loading this module (``recdock-central --help``) imports no FastAPI, uvicorn, paho, pydantic,
Jinja2 or argon2: :mod:`central.app` (the app), the MQTT consumer and the server are imported
inside :func:`main` (tests/test_central_cli.py checks it; bench/bench_cli.py times it).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from central.limits import DEFAULT_EXPIRY, DEFAULT_MAX_SIZE, UploadLimits
from central.options import (
    DashboardChoices,
    WorkerChoices,
    centre_options,
    dashboard_options,
    database_option,
    serve_limit_options,
    upload_limit_options,
    worker_options,
)
from central.serve import ServeLimits
from central.settings import CentreSettings


def _credential_file(name: str) -> Path | None:
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    path = Path(cred_dir) / name if cred_dir else None
    return path if path is not None and path.is_file() else None


def _consumer_settings(
    host: str | None,
    port: int,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    username: str | None,
    worker: WorkerChoices,
):  # -> central.consumer.ConsumerSettings | None
    """The MQTT consumer's settings from the command line and the systemd credentials;
    ``worker`` gives the client id and the worker group (none: alone, MQTT 3.1.1 as before)."""
    if not host:
        return None
    from central.auth import read_credential
    from central.consumer import ConsumerSettings

    return ConsumerSettings(
        host=host,
        port=port,
        ca_file=ca,
        cert_file=cert,
        key_file=key or _credential_file("central-mqtt-key") if cert else None,
        username=username,
        password=read_credential("central-mqtt-password") if username else None,
        client_id=worker.client_id,
        shared_group=worker.group,
        protocol="5" if worker.group else "3.1.1",
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Data folder: partial uploads, read-only objects and the receipts database.",
)
@click.option(
    "--tokens",
    "tokens_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Station tokens file ([stations] id = token, TOML or JSON). "
    "Default: $CREDENTIALS_DIRECTORY/central-tokens (systemd LoadCredential=).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="TCP port to listen on.")
@click.option(
    "--max-size",
    default=DEFAULT_MAX_SIZE,
    show_default=True,
    type=click.IntRange(min=0),
    help="Largest accepted upload in bytes (Tus-Max-Size).",
)
@click.option(
    "--expire-after",
    default=DEFAULT_EXPIRY,
    show_default=True,
    type=click.FloatRange(min=60),
    help="Seconds after which an untouched unfinished upload is deleted.",
)
@click.option(
    "--api-tokens",
    "api_tokens_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Reader tokens of the JSON API ([readers] name = token, TOML). "
    "Default: $CREDENTIALS_DIRECTORY/central-api-tokens when present; none: /api answers 503.",
)
@click.option(
    "--mqtt-host",
    default=None,
    help="MQTT broker to consume station telemetry from; unset: no MQTT consumer.",
)
@click.option("--mqtt-port", default=1883, show_default=True, type=int, help="MQTT broker port.")
@click.option(
    "--mqtt-ca",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="CA certificate (PEM) of the broker; switches TLS on.",
)
@click.option(
    "--mqtt-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Client certificate (PEM) for the broker; the shipped broker configuration wants one "
    "whose common name is recdock-central (docs/deployment.md).",
)
@click.option(
    "--mqtt-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Private key (PEM) of --mqtt-cert. Default: $CREDENTIALS_DIRECTORY/central-mqtt-key.",
)
@click.option(
    "--mqtt-username",
    default=None,
    help="MQTT user name; the password comes from $CREDENTIALS_DIRECTORY/central-mqtt-password.",
)
@click.option(
    "--api-docs",
    is_flag=True,
    help="Serve the OpenAPI document (/openapi.json) and its pages (/docs, /redoc); off by "
    "default: they describe every route to anyone who asks.",
)
@upload_limit_options
@serve_limit_options
@centre_options
@click.option(
    "--station-keys",
    "station_keys_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Enrolment register: each station's Ed25519 public key ([stations] id = key, TOML; "
    "`recdock-central enrol` writes it). Read again when it changes. Default: "
    "$CREDENTIALS_DIRECTORY/central-station-keys. Needed with --mqtt-host.",
)
@dashboard_options
@worker_options
@click.option(
    "--signing-key",
    "signing_key_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The centre's Ed25519 signing key (PEM; `recdock-central keygen` makes it): signs "
    "the commands sent to stations. Default: $CREDENTIALS_DIRECTORY/central-signing-key when "
    "present; none: commands wait in the catalog, unsent.",
)
@database_option
@click.option("--log-level", default="info", show_default=True, help="Log level.")
def main(
    data_dir,
    database,
    tokens_file,
    host,
    port,
    max_size,
    expire_after,
    api_tokens_file,
    mqtt_host,
    mqtt_port,
    mqtt_ca,
    mqtt_cert,
    mqtt_key,
    mqtt_username,
    station_keys_file,
    signing_key_file,
    log_level,
    api_docs: bool,
    limits: UploadLimits,
    serve_limits: ServeLimits,
    max_requests: int,
    dashboard: DashboardChoices,
    centre: CentreSettings,
    worker: WorkerChoices,
) -> None:
    """Run the recdock reference central store (tus uploads with verified receipts).

    Exit codes: 0 clean stop, 2 usage error, 3 bad credentials. Administration:
    `recdock-central enrol --help`, and rebaseline, keygen, register, user (dashboard users)."""
    from central.app import create_app
    from central.auth import CredentialsError

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        mqtt = _consumer_settings(
            mqtt_host, mqtt_port, mqtt_ca, mqtt_cert, mqtt_key, mqtt_username, worker
        )
        app = create_app(
            data_dir,
            tokens_file,
            max_size=max_size,
            upload_expiry=expire_after,
            mqtt=mqtt,
            api_tokens=api_tokens_file,
            limits=limits,
            max_requests=max_requests,
            api_docs=api_docs,
            station_keys=station_keys_file,
            dashboard=dashboard.options(),
            signing_key=signing_key_file,
            centre=centre,
            database=database,
        )
    except CredentialsError as exc:
        click.echo(f"recdock-central: {exc}", err=True)
        sys.exit(3)
    app.state.uploads.lease_s = worker.upload_lease
    _serve(app, serve_limits, host, port, log_level)


def _serve(app, limits: ServeLimits, host: str, port: int, log_level: str) -> None:  # noqa: ANN001
    import uvicorn

    from central.serve import uvicorn_config

    config = uvicorn_config(
        app, limits=limits, host=host, port=port, log_level=log_level.lower(), access_log=False
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
