"""`recdock enrol`: this station's signing key, made once, and what the central store enrols."""

from __future__ import annotations

import click

from agent.cli.common import Ctx


@click.command("enrol")
@click.option(
    "--rekey",
    is_flag=True,
    help="Replace the existing key with a new one. Stop the station first and enrol the new "
    "public key at the central store before starting it again: what it signs with the new "
    "key is a security alert there until then.",
)
@click.pass_obj
def enrol(c: Ctx, rekey: bool) -> None:
    """Make this station's signing key (once) and print the public key the centre enrols."""
    from agent.config.keys import create_signing_key, load_signing_key, signing_key_path
    from sync.wire.signing import public_key_text

    path = signing_key_path(c.config.mqtt, c.home)
    if path.exists() and not rekey:
        key, made = load_signing_key(path), "kept"
    else:
        key, made = create_signing_key(path, replace=rekey), "made now, mode 0400"
    public = public_key_text(key)
    click.echo(f"station {c.config.station_id}: signing key {path} ({made})")
    click.echo(f"public key: {public}")
    click.echo("enrol it on the central store's host (docs/deployment.md, enrolment):")
    click.echo(
        f"  recdock-central enrol {c.config.station_id} --public-key {public} "
        "--keys /etc/recdock/central-station-keys.toml --tokens /etc/recdock/central-tokens.toml"
    )
