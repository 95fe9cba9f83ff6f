"""A station's run of chained events proven by its newest signature (central/chain_proof.py).

The consumer stores a batch with :meth:`central.messages.MessageHandler.handle_batch`, which
checks one Ed25519 signature for a run of a station's events that link by ``prev_hash``
(each hash recomputed from its content) instead of one per event. Each test here puts the
same messages through both ways, one by one (:meth:`~central.messages.MessageHandler.handle`,
every signature checked) and as one batch, each into its own catalog, and requires the same
outcomes, events, chain state and security alerts (rule 9, docs/architecture.md): a forged
event among genuine ones is alerted, wherever it sits, exactly as before. It also counts the
signatures checked, so that a batch that proves nothing (and so compares trivially) fails.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from pathlib import Path

import pytest

from agent.catalog import Catalog
from central.catalog import CentralCatalog
from central.enrolment import SodiumKey, StationKeys
from central.messages import MessageHandler
from sync.wire import topics
from sync.wire.chain import canonical
from tests.signing_keys import new_key, queued, register
from tests.test_central_trust import forged_event as forged
from tests.test_mqtt import add_events

STATION = "ST-A"
OTHER = "ST-B"
KEY, OTHER_KEY = new_key(), new_key()
FORGER = new_key()  # anyone else's key: an attacker with the broker's ear
TOPIC = topics.event(STATION)

Messages = list[tuple[str, bytes]]


@pytest.fixture
def chain8(tmp_path: Path) -> Messages:
    """Events 1..8 of STATION, signed as they leave the station."""
    station = Catalog(tmp_path / "station" / "catalog.db", station_id=STATION)
    add_events(station, 8)
    msgs = queued(station, KEY)
    station.close()
    return msgs


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many signatures the centre checked (libsodium, each a real verification)."""
    calls: Counter[str] = Counter()
    real = SodiumKey.verify

    def counting(self: SodiumKey, signature: bytes, data: bytes) -> None:
        calls["verify"] += 1
        real(self, signature, data)

    monkeypatch.setattr(SodiumKey, "verify", counting)
    return calls


def with_sig_of(real: bytes, other: bytes) -> bytes:
    """``real`` carrying ``other``'s signature: well formed, but not over this event."""
    doc = json.loads(real)
    doc["sig"] = json.loads(other)["sig"]
    return canonical(doc).encode()


def snapshot(catalog: CentralCatalog) -> dict:
    """What the centre keeps of the stations, without the times of receipt."""

    def strip(row: dict, *times: str) -> dict:
        return {k: v for k, v in row.items() if k not in {"received_at", "id", *times}}

    return {
        "events": [strip(e) for e in catalog.events(limit=None)],
        "alerts": [strip(a, "at") for a in catalog.alerts(limit=None)],
        "stations": [
            {**strip(s, "last_seen"), "chain": strip(s["chain"], "problem_at")}
            for s in catalog.stations()
        ],
    }


def both_ways(
    tmp_path: Path, before: Messages, msgs: Messages, verified: Counter[str]
) -> tuple[list[str], int]:
    """``msgs`` one by one and as one batch, each into a catalog holding ``before`` (stored
    one by one). Asserts both keep the same; returns the outcomes and how many signatures the
    batch checked."""
    keys = StationKeys(register({STATION: KEY, OTHER: OTHER_KEY}))
    results = {}
    for way in ("one", "batch"):
        catalog = CentralCatalog(tmp_path / f"central-{way}.db")
        handler = MessageHandler(catalog, keys, Counter())
        for topic, payload in before:
            handler.handle(topic, payload)
        verified.clear()
        if way == "one":
            outcomes = [handler.handle(t, p) for t, p in msgs]
        else:
            outcomes = handler.handle_batch([(t, p, False) for t, p in msgs])
        results[way] = (outcomes, snapshot(catalog), dict(handler.stats), verified["verify"])
        catalog.close()
    one, batch = results["one"], results["batch"]
    assert batch[0] == one[0], "the same outcome for every message"
    assert batch[1] == one[1], "the same events, alerts and chain state"
    assert batch[2] == one[2], "the same counts"
    return one[0], batch[3]


def test_a_run_of_genuine_events_costs_one_signature(
    tmp_path: Path, chain8: Messages, verified: Counter[str]
) -> None:
    outcomes, checked = both_ways(tmp_path, chain8[:2], chain8[2:], verified)
    assert outcomes == ["stored"] * 6
    assert checked == 1, "events 3..8 are proven by the signature of event 8"


def test_two_stations_interleaved_cost_one_signature_each(
    tmp_path: Path, chain8: Messages, verified: Counter[str]
) -> None:
    station = Catalog(tmp_path / "other" / "catalog.db", station_id=OTHER)
    add_events(station, 4)
    other = queued(station, OTHER_KEY)
    station.close()
    mixed = [m for pair in zip(chain8[:4], other, strict=True) for m in pair] + chain8[4:]
    outcomes, checked = both_ways(tmp_path, [], mixed, verified)
    assert outcomes == ["stored"] * 12
    assert checked == 2


def test_a_forged_event_in_the_middle_is_an_alert(
    tmp_path: Path, chain8: Messages, verified: Counter[str]
) -> None:
    """A forged event 5 that links to event 4 (its hash recomputed), then the real 5..8: the
    run 3, 4, 5' ends in a signature that fails, so each is checked on its own; the run
    5..8 is proven by 8."""
    fake = forged(chain8[4][1], FORGER, data={"i": "forged"})
    msgs = [*chain8[2:4], (TOPIC, fake), *chain8[4:]]
    outcomes, checked = both_ways(tmp_path, chain8[:2], msgs, verified)
    assert outcomes == ["stored", "stored", "alert", "stored", "stored", "stored", "stored"]
    assert checked == 1 + 3 + 1


@pytest.mark.parametrize(
    ("signer", "signatures"),
    [(None, 2), (FORGER, 5)],
    ids=["unsigned", "another key"],
)
def test_a_forged_event_in_the_middle_instead_of_the_real_one_is_an_alert(
    tmp_path: Path, chain8: Messages, verified: Counter[str], signer, signatures: int
) -> None:
    """Event 5 forged (linking to event 4) and the real one withheld: 6..8 follow it by seq
    but not by hash. Unsigned, it joins no run (3, 4 proven by 4; 6..8 by 8); signed with
    another key, it ends the run 3, 4, 5', whose events are then checked one by one."""
    fake = forged(chain8[4][1], signer, data={"i": "forged"})
    msgs = [*chain8[2:4], (TOPIC, fake), *chain8[5:]]
    outcomes, checked = both_ways(tmp_path, chain8[:2], msgs, verified)
    assert outcomes == ["stored", "stored", "alert", "stored", "stored", "stored"]
    assert checked == signatures


def test_a_forged_event_at_the_end_is_an_alert(
    tmp_path: Path, chain8: Messages, verified: Counter[str]
) -> None:
    fake = forged(chain8[7][1], FORGER, data={"i": "forged"})
    msgs = [*chain8[2:7], (TOPIC, fake)]
    outcomes, checked = both_ways(tmp_path, chain8[:2], msgs, verified)
    assert outcomes == ["stored"] * 5 + ["alert"]
    assert checked == 1 + len(msgs), "the run's signature fails: each checked on its own"


def test_a_forged_event_at_the_start_is_an_alert(
    tmp_path: Path, chain8: Messages, verified: Counter[str]
) -> None:
    fake = forged(chain8[2][1], FORGER, data={"i": "forged"})
    msgs = [(TOPIC, fake), *chain8[2:]]
    outcomes, checked = both_ways(tmp_path, chain8[:2], msgs, verified)
    assert outcomes == ["alert"] + ["stored"] * 6
    assert checked == 2, "the forgery on its own; 3..8 proven by 8"


def test_a_forged_run_is_an_alert_event_by_event(
    tmp_path: Path, chain8: Messages, verified: Counter[str]
) -> None:
    """A forger's own chain 3', 4', 5' from the held head, each linking to the one before and
    the last signed with its key: nothing of it is proven."""
    msgs, prev = [], json.loads(chain8[1][1])["hash"]
    for real in chain8[2:5]:
        fake = forged(real[1], FORGER, prev_hash=prev, data={"i": "forged"})
        msgs.append((TOPIC, fake))
        prev = json.loads(fake)["hash"]
    outcomes, _ = both_ways(tmp_path, chain8[:2], [*msgs, *chain8[2:]], verified)
    assert outcomes == ["alert"] * 3 + ["stored"] * 6


def test_an_event_without_its_signature_in_a_run_is_an_alert(
    tmp_path: Path, chain8: Messages, verified: Counter[str]
) -> None:
    """Event 5 as the station made it but with its ``sig`` removed: an unsigned message is an
    alert, even when event 8 would prove its content."""
    doc = json.loads(chain8[4][1])
    del doc["sig"]
    msgs = [*chain8[2:4], (TOPIC, canonical(doc).encode()), *chain8[5:]]
    outcomes, _ = both_ways(tmp_path, chain8[:2], msgs, verified)
    assert outcomes == ["stored", "stored", "alert", "stored", "stored", "stored"]


def test_an_event_altered_without_its_hash_is_an_alert(
    tmp_path: Path, chain8: Messages, verified: Counter[str]
) -> None:
    """Content changed, hash and signature kept: it is no member of any run."""
    doc = json.loads(chain8[4][1])
    doc["data"]["i"] = 999
    msgs = [*chain8[2:4], (TOPIC, canonical(doc).encode()), *chain8[5:]]
    outcomes, _ = both_ways(tmp_path, chain8[:2], msgs, verified)
    assert outcomes == ["stored", "stored", "alert", "stored", "stored", "stored"]


def test_an_event_of_another_station_in_the_run_is_an_alert(
    tmp_path: Path, chain8: Messages, verified: Counter[str]
) -> None:
    """ST-B's genuine event 5 on ST-A's topic: it does not link, its signature is ST-B's."""
    station = Catalog(tmp_path / "other" / "catalog.db", station_id=OTHER)
    add_events(station, 5)
    theirs = queued(station, OTHER_KEY)[4][1]
    station.close()
    msgs = [*chain8[2:4], (TOPIC, theirs), *chain8[4:]]
    outcomes, _ = both_ways(tmp_path, chain8[:2], msgs, verified)
    assert outcomes == ["stored", "stored", "alert", "stored", "stored", "stored", "stored"]


def test_a_validly_signed_event_with_a_wrong_link_breaks_the_chain_as_before(
    tmp_path: Path, chain8: Messages, verified: Counter[str]
) -> None:
    """The station itself signs an event 6 that does not follow its event 5 (its log was
    rewritten): stored, and the chain broken, both ways."""
    six = forged(chain8[5][1], KEY, prev_hash="f" * 64)
    msgs = [*chain8[2:5], (TOPIC, six)]
    outcomes, _ = both_ways(tmp_path, chain8[:2], msgs, verified)
    assert outcomes == ["stored"] * 4


def test_a_second_validly_signed_event_at_a_seq_is_a_conflict_as_before(
    tmp_path: Path, chain8: Messages, verified: Counter[str]
) -> None:
    five = forged(chain8[4][1], KEY, data={"i": "rewritten"})
    msgs = [*chain8[2:], (TOPIC, five)]
    outcomes, _ = both_ways(tmp_path, chain8[:2], msgs, verified)
    assert outcomes == ["stored"] * 6 + ["conflict"]


def test_a_replay_is_a_duplicate_and_a_replay_under_another_id_too(
    tmp_path: Path, chain8: Messages, verified: Counter[str]
) -> None:
    doc = json.loads(chain8[3][1])
    doc["event_id"] = f"{STATION}:elsewhere:{doc['seq']}"  # the id is not signed
    msgs = [*chain8[:6], (TOPIC, canonical(doc).encode()), *chain8[2:5], *chain8[6:]]
    outcomes, checked = both_ways(tmp_path, chain8[:4], msgs, verified)
    assert outcomes == ["duplicate"] * 4 + ["stored"] * 2 + ["duplicate"] * 4 + ["stored"] * 2
    assert checked < len(msgs)


def test_events_out_of_order_and_with_a_gap_are_stored_as_before(
    tmp_path: Path, chain8: Messages, verified: Counter[str]
) -> None:
    msgs = [chain8[4], chain8[3], chain8[2], chain8[6], chain8[7]]
    outcomes, _ = both_ways(tmp_path, chain8[:2], msgs, verified)
    assert outcomes == ["stored"] * 5


def test_an_unenrolled_station_and_other_topics_are_handled_as_before(
    tmp_path: Path, chain8: Messages, verified: Counter[str]
) -> None:
    stranger = [(topics.event("ST-X"), forged(m[1], FORGER, topic=topics.event("ST-X"),
                                                station="ST-X")) for m in chain8[:3]]  # fmt: skip
    msgs = [*chain8[:3], *stranger, (topics.event(STATION), b""), (TOPIC, b"not json")]
    outcomes, _ = both_ways(tmp_path, [], msgs, verified)
    assert outcomes == ["stored"] * 3 + ["alert"] * 3 + ["rejected", "alert"]


def test_an_event_whose_own_signature_is_wrong_is_kept_when_a_later_one_proves_it(
    tmp_path: Path, chain8: Messages
) -> None:
    """The one difference, on purpose (docs/security.md): event 5 carries a well-formed
    signature that is not its own, and event 8, signed by the station, proves its content.
    One by one it is an alert; in a run it is stored, because the station did sign it."""
    five = with_sig_of(chain8[4][1], chain8[3][1])
    msgs = [*chain8[2:4], (TOPIC, five), *chain8[5:]]
    keys = StationKeys(register({STATION: KEY}))
    catalog = CentralCatalog(tmp_path / "central.db")
    handler = MessageHandler(catalog, keys, Counter())
    assert handler.handle(TOPIC, five) == "alert"
    assert handler.handle_batch([(t, p, False) for t, p in msgs]) == ["stored"] * 6
    stored = {e["seq"]: e for e in catalog.events(STATION)}
    assert stored[5]["hash"] == json.loads(chain8[4][1])["hash"]
    catalog.close()


def test_a_batch_checks_every_signature_before_its_transaction_takes_any_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's checks (signatures, schemas) run before its transaction begins, so the
    station rows it holds, which another worker's batch waits for, are held while it writes
    alone (central/messages.py): two stations' events interleaved, and a forged copy of
    one of them (checked on its own): every verification is done before the BEGIN."""
    msgs: Messages = []
    for name, key in ((STATION, KEY), (OTHER, OTHER_KEY)):
        station = Catalog(tmp_path / name / "catalog.db", station_id=name)
        add_events(station, 3)
        msgs.append([m for m in queued(station, key) if m[0].endswith("/event")])
        station.close()
    batch = [m for pair in zip(*msgs, strict=True) for m in pair]
    batch.append((batch[4][0], forged(batch[4][1], FORGER, topic=batch[4][0], subject="x")))
    order: list[str] = []
    real_verify = SodiumKey.verify

    def verify(self: SodiumKey, signature: bytes, data: bytes) -> None:
        order.append("verify")
        real_verify(self, signature, data)

    monkeypatch.setattr(SodiumKey, "verify", verify)
    catalog = CentralCatalog(tmp_path / "central.db")
    real_tx = catalog.tx

    @contextlib.contextmanager
    def tx():  # noqa: ANN202
        if not catalog.conn.in_transaction:  # a nested call joins the open transaction
            order.append("begin")
        with real_tx() as conn:
            yield conn

    monkeypatch.setattr(catalog, "tx", tx)
    handler = MessageHandler(catalog, StationKeys(register({STATION: KEY, OTHER: OTHER_KEY})),
                             Counter())  # fmt: skip
    outcomes = handler.handle_batch([(t, p, False) for t, p in batch])
    assert outcomes == ["stored"] * 6 + ["alert"]
    # the two stations' runs by their newest signatures, the forgery by its own; then BEGIN
    assert order == ["verify"] * 3 + ["begin"], order
    catalog.close()
