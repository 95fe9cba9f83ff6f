"""Every list of the JSON API answers a page, filtered and paged in SQL (central/api.py).

A catalog with 5 stations, 7 recorders in two units, 4 open faults, 5 events and 3 register
entries, served by a real uvicorn; each list read whole in pages of 2 gives what one large
page gives (no row twice, none skipped), the headers say the total and where the next page
is, a filter narrows in the query, and an offset past the end is an empty page.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from central.actions import CentralContext, set_register_entry
from central.app import create_app
from central.catalog import faults
from sync.wire.chain import GENESIS, canonical, entry_hash
from tests.central_server import TOKENS, serve_app
from tests.conftest import BACKENDS

READER = "reader-token-0123456789abcdef"
NOW = datetime.now(UTC)
STATIONS = [f"ST-{i}" for i in range(5)]


def _fill(catalog) -> None:  # noqa: ANN001
    at = NOW.isoformat()
    for name in STATIONS:
        catalog.record_status(name, {"station": name, "state": "online"}, live=True, received_at=at)
    for r in range(7):
        doc = {"station": STATIONS[r % 3], "device_serial": f"R-{r}", "at": at, "ready": True,
               "unit": f"U{r % 2}", "battery_pct": 80.0, "reasons": []}  # fmt: skip
        catalog.record_recorder(doc["station"], doc, received_at=at)
    with catalog.tx() as conn:
        for f in range(4):
            data = {"kind": "store.smart", "subject": f"disk{f}", "severity": "warning",
                    "detail": "x", "opened_at": (NOW - timedelta(hours=f)).isoformat()}  # fmt: skip
            faults.open_fault(conn, STATIONS[f % 2], f"f-{f}", data, at)
    prev = GENESIS
    for seq in range(1, 9):
        kind = "checks" if seq % 2 else "session.start"
        data: dict = {}
        if seq > 5:  # three holds, placed by the station
            kind = "hold.placed"
            data = {"id": f"H-{seq}", "scope": "device", "device_serial": "R-0",
                    "reason": "complaint", "origin": "station", "placed_at": at}  # fmt: skip
        digest = entry_hash(prev, seq, at, kind, "R-0", canonical(data))
        doc = {"event_id": f"ST-0:c:{seq}", "station": "ST-0", "seq": seq, "at": at,
               "kind": kind, "subject": "R-0", "data": data, "prev_hash": prev,
               "hash": digest}  # fmt: skip
        assert catalog.record_event(doc, received_at=at) == "stored"
        prev = digest
    for r in (1, 7, 8):
        set_register_entry(CentralContext(catalog), f"R-{r}", lifecycle="in_service", by="t",
                           unit="U1")  # fmt: skip


@pytest.fixture(scope="module", params=BACKENDS)
def api(request: pytest.FixtureRequest, tmp_path_factory):  # noqa: ANN001, ANN201
    """The served API, on each backend (as ``central_db``, for the whole module)."""
    postgres = request.param == "postgresql"
    database = request.getfixturevalue("postgres_cluster").fresh_database() if postgres else None
    data = Path(tmp_path_factory.mktemp("paging")) / "data"
    app = create_app(data, TOKENS, api_tokens={READER: "supervisor"}, database=database)
    _fill(app.state.catalog)
    with serve_app(app) as url:
        yield url


def get(url: str, path: str, **params) -> requests.Response:
    answer = requests.get(
        f"{url}/api{path}", params=params, headers={"Authorization": f"Bearer {READER}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return answer


def _next(answer: requests.Response) -> str | None:
    found = re.search(r'<([^>]+)>; rel="next"', answer.headers.get("Link", ""))
    return found.group(1) if found else None


def walk(url: str, path: str, **params) -> tuple[list, list[requests.Response]]:
    """Every page of a list, 2 items at a time, following the Link headers."""
    first = get(url, path, limit=2, **params)
    answers, items = [first], list(first.json())
    nxt = _next(first)
    while nxt:
        page = requests.get(nxt, headers={"Authorization": f"Bearer {READER}"}, timeout=10)
        answers.append(page)
        items += page.json()
        nxt = _next(page)
        assert len(answers) < 20
    return items, answers


KEYS = {
    "/stations": "station",
    "/fleet/stations": "station",
    "/recorders": "serial",
    "/fleet/recorders": "serial",
    "/faults": "id",
    "/register": "serial",
    "/events": "seq",
    "/security-alerts": "id",
    "/holds": "hold_id",
}


@pytest.mark.parametrize("path", sorted(KEYS))
def test_pages_of_two_add_up_to_the_whole_list(api: str, path: str) -> None:
    whole = get(api, path, limit=1000).json()
    items, answers = walk(api, path)
    assert items == whole
    if path not in ("/events", "/security-alerts"):
        assert {a.headers["X-Total-Count"] for a in answers} == {str(len(whole))}
    assert 'rel="prev"' not in answers[0].headers.get("Link", "")
    if len(answers) > 1:
        assert 'rel="prev"' in answers[-1].headers["Link"]


def test_the_page_boundary_and_an_offset_past_the_end(api: str) -> None:
    first = get(api, "/stations", limit=2)
    assert [s["station"] for s in first.json()] == ["ST-0", "ST-1"]
    assert first.headers["X-Total-Count"] == "5"
    assert "offset=2" in _next(first)
    last = get(api, "/stations", limit=2, offset=4)
    assert [s["station"] for s in last.json()] == ["ST-4"]
    assert _next(last) is None
    past = get(api, "/stations", limit=2, offset=50)
    assert past.json() == [] and past.headers["X-Total-Count"] == "5" and _next(past) is None
    assert get(api, "/events", offset=8).json() == []


def test_filters_narrow_the_list_and_its_total(api: str) -> None:
    u1, answers = walk(api, "/fleet/recorders", unit="U1")
    # reported U1; only registered in U1; R-1 registered there too
    assert [r["serial"] for r in u1] == ["R-1", "R-3", "R-5", "R-7", "R-8"]
    assert answers[0].headers["X-Total-Count"] == "5"
    at_st1 = get(api, "/fleet/recorders", station="ST-1").json()
    assert [r["serial"] for r in at_st1] == ["R-1", "R-4"]
    recorders = get(api, "/recorders", station="ST-2", limit=1)
    assert [r["serial"] for r in recorders.json()] == ["R-2"]
    assert recorders.headers["X-Total-Count"] == "2"
    st1_faults = get(api, "/faults", station="ST-1")
    assert [f["id"] for f in st1_faults.json()] == ["f-3", "f-1"]  # oldest first
    assert st1_faults.headers["X-Total-Count"] == "2"
    checks = get(api, "/events", kind="checks").json()
    assert [e["seq"] for e in checks] == [5, 3, 1]
    assert [e["serial"] for e in get(api, "/register", unit="U1", offset=1).json()] == [
        "R-7",
        "R-8",
    ]


def test_a_page_out_of_bounds_is_refused(api: str) -> None:
    auth = {"Authorization": f"Bearer {READER}"}
    for params in ({"limit": 0}, {"limit": 1001}, {"offset": -1}):
        answer = requests.get(f"{api}/api/stations", params=params, headers=auth, timeout=10)
        assert answer.status_code == 422, (params, answer.status_code)


def test_holds_are_paged_like_every_list(api: str) -> None:
    items, answers = walk(api, "/holds", station="ST-0")
    assert sorted(h["hold_id"] for h in items) == ["H-6", "H-7", "H-8"]
    assert len(answers) == 2 and answers[0].headers["X-Total-Count"] == "3"
