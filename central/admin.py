"""``recdock-central enrol``, ``rebaseline`` and ``keygen``: the operator's actions on the host.

``enrol`` registers a station's signing key in the enrolment register (central/enrolment.py)
and, given the tokens file, gives the station an upload token when it has none. Re-keying is
enrolling again: the new key replaces the old one, and what the station signed with the old
key no longer verifies.

``rebaseline`` accepts a broken chain anew: the station's events from then on form a new chain
epoch starting at the given seq and hash (by default seq 0 and the genesis hash: a station
whose catalog was replaced starts again at 1). It is audited (``operator_actions``: who, when,
why, and the chain's state before) and shown by ``GET /api/stations/{id}/chain``. Both are
run on the central store's host, by its administrator (docs/central.md, docs/security.md).

``keygen`` makes the centre's own signing key (central/signing_key.py), which signs every
command sent to stations, and prints its public key for each station's ``[mqtt]
centre_public_key``; ``--show`` prints the public key of the key there.

``register set`` and ``register list`` keep the recorder register at the centre
(central/actions.py): each change is audited and queued as a signed ``register``/``set``
command for every station, which the running server publishes.
"""

from __future__ import annotations

import re
import secrets
import sys
from pathlib import Path

import click

from central.auth import CredentialsError, load_tokens
from central.enrolment import enrol as enrol_key
from central.options import database_option
from sync.wire.chain import GENESIS

_HASH = re.compile(r"^[0-9a-f]{64}$")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def admin() -> None:
    """Administration of the central store: enrol a station, re-baseline a station's chain,
    make the centre's signing key, keep the recorder register."""


@admin.command("keygen")
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where the centre's signing key is made (mode 0600; the server's --signing-key, or "
    "the credential central-signing-key). An existing key is never replaced.",
)
@click.option(
    "--show", is_flag=True, help="Print the public key of the existing key; make nothing."
)
def keygen(key_file: Path, show: bool) -> None:
    """Make the centre's command-signing key and print its public key for the stations."""
    from central.signing_key import create_centre_key, load_centre_key
    from sync.wire.signing import public_key_text

    try:
        key = load_centre_key(key_file) if show else create_centre_key(key_file)
    except CredentialsError as exc:
        click.echo(f"recdock-central: {exc}", err=True)
        sys.exit(3)
    if not show:
        click.echo(f"made the centre's signing key {key_file}", err=True)
    click.echo(f'centre_public_key = "{public_key_text(key)}"')


@admin.command("enrol")
@click.argument("station")
@click.option(
    "--public-key",
    required=True,
    help="The station's Ed25519 public key, as `recdock enrol` on the station prints it.",
)
@click.option(
    "--keys",
    "keys_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The enrolment register the server reads (--station-keys); made if missing.",
)
@click.option(
    "--tokens",
    "tokens_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The server's station tokens file (TOML): when the station has no token there, one "
    "is made, added and printed (once: pass it to the station as its upload token).",
)
def enrol(station: str, public_key: str, keys_file: Path, tokens_file: Path | None) -> None:
    """Enrol STATION's signing key (or re-key it), and its upload token when asked."""
    try:
        old = enrol_key(keys_file, station, public_key)
        token = _ensure_token(tokens_file, station) if tokens_file else None
    except (CredentialsError, ValueError) as exc:
        click.echo(f"recdock-central: {exc}", err=True)
        sys.exit(3)
    if old is None:
        click.echo(f"enrolled {station} in {keys_file}")
    elif old != public_key.strip():
        click.echo(f"re-keyed {station} in {keys_file} (the old key no longer verifies)")
    else:
        click.echo(f"{station} was enrolled with this key already")
    if token:
        click.echo(f"upload token of {station} (added to {tokens_file}; shown once): {token}")


def _ensure_token(path: Path, station: str) -> str | None:
    """A new token for ``station`` appended to the TOML tokens file; None when it has one."""
    tokens = load_tokens(path)
    if station in tokens.values():
        return None
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        raise CredentialsError(f"{path}: a JSON tokens file; add the station's token by hand")
    token = secrets.token_urlsafe(32)
    with path.open("a", encoding="utf-8") as f:
        f.write(("" if text.endswith("\n") or not text else "\n") + f'"{station}" = "{token}"\n')
    load_tokens(path)  # still a file the server reads
    return token


@admin.command("rebaseline")
@click.argument("station")
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The server's data folder (its central-catalog.db is changed).",
)
@database_option
@click.option("--operator", required=True, help="Who re-baselines (kept in the audit).")
@click.option("--reason", required=True, help="Why (kept in the audit): what was checked.")
@click.option(
    "--from-seq",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="The seq the new chain continues from (0: it starts again at seq 1).",
)
@click.option(
    "--from-hash",
    default=GENESIS,
    help="The hash of the station's entry at --from-seq (`recdock verify --against-central "
    "--json` on the station prints its head as local_head); the genesis hash for 0.",
)
def rebaseline(
    station: str,
    data_dir: Path,
    database: str | None,
    operator: str,
    reason: str,
    from_seq: int,
    from_hash: str,
) -> None:
    """Accept STATION's chain anew after it was found broken; audited."""
    from central.catalog import CentralCatalog

    if not _HASH.match(from_hash) or (from_seq == 0) != (from_hash == GENESIS):
        raise click.BadParameter(
            "64 lowercase hex digits; the genesis hash exactly when --from-seq is 0",
            param_hint="--from-hash",
        )
    catalog = CentralCatalog(database or data_dir / "central-catalog.db")
    try:
        epoch = catalog.rebaseline(
            station, operator_name=operator, reason=reason, base=(from_seq, from_hash)
        )
    except KeyError:
        click.echo(f"recdock-central: no station {station!r} in {data_dir}", err=True)
        sys.exit(1)
    finally:
        catalog.close()
    click.echo(f"{station}: chain re-baselined (epoch {epoch}, from seq {from_seq})")


_DATA = click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The server's data folder (its central-catalog.db).",
)


@admin.group("register")
def register_group() -> None:
    """The recorder register: each recorder's lifecycle, officer and unit, sent to every
    station."""


@register_group.command("set")
@click.argument("serial")
@_DATA
@database_option
@click.option(
    "--lifecycle",
    required=True,
    type=click.Choice(["in_service", "in_maintenance", "lost", "retired"]),
    help="The recorder's lifecycle.",
)
@click.option("--officer", default=None, help="The officer it is issued to.")
@click.option("--unit", default=None, help="The unit (department) it belongs to.")
@click.option("--note", default=None, help="Why (kept with the entry).")
@click.option("--by", "by", required=True, help="Who changes the register (audited).")
def register_set(serial, data_dir, database, lifecycle, officer, unit, note, by) -> None:  # noqa: ANN001
    """Set SERIAL's register entry; every station gets it as a signed command."""
    from central.actions import ActionError, CentralContext, set_register_entry
    from central.catalog import CentralCatalog

    catalog = CentralCatalog(database or data_dir / "central-catalog.db")
    try:
        entry = set_register_entry(
            CentralContext(catalog), serial, lifecycle=lifecycle, by=by, officer=officer,
            unit=unit, note=note,
        )  # fmt: skip
    except ActionError as exc:
        click.echo(f"recdock-central: {exc}", err=True)
        sys.exit(2)
    finally:
        catalog.close()
    click.echo(f"{entry['serial']}: {entry['lifecycle']} ({entry['officer'] or '-'}, "
               f"{entry['unit'] or '-'}); sent to the stations by the running server")  # fmt: skip


@register_group.command("list")
@_DATA
@database_option
@click.option("--unit", default=None, help="Only this unit's recorders.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
def register_list(data_dir: Path, database: str | None, unit: str | None, as_json: bool) -> None:
    """The register's entries by serial."""
    import json

    from central.catalog import CentralCatalog, register

    catalog = CentralCatalog(database or data_dir / "central-catalog.db")
    try:
        entries = register.listing(catalog.conn, unit)
    finally:
        catalog.close()
    if as_json:
        click.echo(json.dumps(entries, ensure_ascii=False))
        return
    for e in entries:
        click.echo(f"{e['serial']}\t{e['lifecycle']}\t{e['officer'] or '-'}\t{e['unit'] or '-'}")
