"""The station's audit chain against the head the central store holds.

``recdock verify`` proves the local chain is consistent with itself; a root user who deletes
an entry and re-hashes the rest makes a chain that is. What the centre received cannot be
rewritten from the station: each published event was signed and anchored there. So the station
asks the centre for the head of its chain (``GET /api/stations/<id>/chain`` with its upload
token) and compares:

* the centre's complete head (seq, hash) must be the local entry at that seq, hash for hash;
  the hash commits to every entry before it, so one comparison covers the whole published past;
* the centre must not hold more than the local log has (a removed tail);
* the centre's chain must not be broken.

``recdock verify --against-central`` runs :func:`check_against_central` on demand; the daemon
runs it every ``anchor.check_every_hours`` (sync/services.py) and opens a critical fault
(``chain.central``) on disagreement. The centre being unreachable is not a disagreement:
:class:`AnchorUnavailable` says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.catalog import audit
from agent.errors import EXIT_UNAVAILABLE, ConfigError, RecdockError

if TYPE_CHECKING:
    from agent.catalog import Catalog
    from agent.config import Config

logger = logging.getLogger(__name__)


class AnchorUnavailable(RecdockError):
    """The central store could not be asked (unreachable, refused the token, an odd answer)."""

    exit_code = EXIT_UNAVAILABLE


@dataclass
class AnchorReport:
    """The local head, the centre's chain as it answered, and every disagreement."""

    local_seq: int
    local_hash: str
    central: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def compare(catalog: Catalog, central: dict[str, Any] | None) -> AnchorReport:
    """Compare the local chain with the centre's answer (None: the centre holds nothing)."""
    local_seq, local_hash = audit.head(catalog)
    report = AnchorReport(local_seq, local_hash, central)
    if central is None:
        return report
    head_seq, head_hash = int(central["head_seq"]), str(central["head_hash"])
    max_seq = int(central.get("max_seq", head_seq))
    if head_seq > local_seq:
        report.problems.append(
            f"the centre holds this station's chain complete up to entry {head_seq}, but the "
            f"local audit log ends at entry {local_seq}: published entries were removed"
        )
    elif head_seq > 0 and audit.hash_at(catalog, head_seq) != head_hash:
        report.problems.append(
            f"entry {head_seq}: the centre holds hash {head_hash[:16]}..., the local audit log "
            f"has {str(audit.hash_at(catalog, head_seq))[:16]}...: the local log was rewritten "
            "after it was published"
        )
    if max_seq > max(head_seq, local_seq):
        report.problems.append(
            f"the centre received entries up to {max_seq}; the local audit log ends at "
            f"{local_seq}: published entries were removed"
        )
    if central.get("state") == "broken" or central.get("ok") is False:
        report.problems.append(
            f"the centre marks this station's chain broken: {central.get('problem')}"
        )
    return report


def central_chain(config: Config) -> dict[str, Any] | None:
    """What the centre holds of this station's chain; None when it holds nothing yet."""
    import requests

    base = config.anchor.base_url(config.upload.endpoint)
    token = config.upload.resolved_token()
    if base is None or token is None:
        raise ConfigError(
            "comparing with the centre needs its URL ([anchor] url or [upload] endpoint) and "
            "the station's upload token ([upload] token or the credential 'upload-token')"
        )
    url = f"{base}/api/stations/{config.station_id}/chain"
    try:
        response = requests.get(
            url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=config.upload.timeout_s,
            verify=str(config.upload.ca_file) if config.upload.ca_file else True,
        )
    except requests.RequestException as exc:
        raise AnchorUnavailable(f"{url}: the central store did not answer: {exc}") from exc
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise AnchorUnavailable(
            f"{url}: the central store answered {response.status_code}: {response.text[:200]}"
        )
    try:
        body = response.json()
        int(body["head_seq"]), str(body["head_hash"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AnchorUnavailable(f"{url}: not a chain head: {exc}") from exc
    return body


def check_against_central(config: Config, catalog: Catalog) -> AnchorReport:
    """Ask the centre and compare; raises :class:`AnchorUnavailable` when it cannot be asked."""
    report = compare(catalog, central_chain(config))
    for problem in report.problems:
        logger.error("audit chain against the centre: %s", problem)
    return report
