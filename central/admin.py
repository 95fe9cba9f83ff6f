"""``recdock-central enrol`` and ``recdock-central rebaseline``: the operator's two actions.

``enrol`` registers a station's signing key in the enrolment register (central/enrolment.py)
and, given the tokens file, gives the station an upload token when it has none. Re-keying is
enrolling again: the new key replaces the old one, and what the station signed with the old
key no longer verifies.

``rebaseline`` accepts a broken chain anew: the station's events from then on form a new chain
epoch starting at the given seq and hash (by default seq 0 and the genesis hash: a station
whose catalog was replaced starts again at 1). It is audited (``operator_actions``: who, when,
why, and the chain's state before) and shown by ``GET /api/stations/{id}/chain``. Both are
run on the central store's host, by its administrator (docs/central.md, docs/security.md).
"""

from __future__ import annotations

import re
import secrets
import sys
from pathlib import Path

import click

from central.auth import CredentialsError, load_tokens
from central.enrolment import enrol as enrol_key
from sync.wire.chain import GENESIS

_HASH = re.compile(r"^[0-9a-f]{64}$")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def admin() -> None:
    """Administration of the central store: enrol a station, re-baseline a station's chain."""


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
    station: str, data_dir: Path, operator: str, reason: str, from_seq: int, from_hash: str
) -> None:
    """Accept STATION's chain anew after it was found broken; audited."""
    from central.catalog import CentralCatalog

    if not _HASH.match(from_hash) or (from_seq == 0) != (from_hash == GENESIS):
        raise click.BadParameter(
            "64 lowercase hex digits; the genesis hash exactly when --from-seq is 0",
            param_hint="--from-hash",
        )
    catalog = CentralCatalog(data_dir / "central-catalog.db")
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
