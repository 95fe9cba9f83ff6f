"""The dashboard's lists come a page at a time (central/web/pages.py, board.PAGE_SIZE rows),
filtered and paged in SQL, with links to the pages before and after that keep the filters.

250 recorders over 3 stations and two units, reported straight into the catalog (what the
consumer stores, without signing: the pages are under test, not the consumer).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from central.web import board
from tests.central_server import serve_app
from tests.conftest import BACKENDS
from tests.dashboard_tools import dashboard_app, login

COUNT = 250
NOW = datetime.now(UTC)


@pytest.fixture(scope="module", params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory):  # noqa: ANN001, ANN201
    """The served dashboard, on each backend (as ``central_db``, for the whole module)."""
    postgres = request.param == "postgresql"
    database = request.getfixturevalue("postgres_cluster").fresh_database() if postgres else None
    app = dashboard_app(Path(tmp_path_factory.mktemp("dash-paging")), database=database)
    catalog = app.state.catalog
    for r in range(COUNT):
        station = f"ST-{r % 3}"
        at = (NOW - timedelta(minutes=r)).isoformat()
        doc = {"station": station, "device_serial": f"R-{r:04d}", "at": at, "ready": True,
               "unit": f"U{r % 2}", "battery_pct": 90.0, "reasons": []}  # fmt: skip
        catalog.record_recorder(station, doc, received_at=at)
    # R-0000 docked since at ST-2: its newest report is the one the list shows
    later = {"station": "ST-2", "device_serial": "R-0000", "at": (NOW + timedelta(minutes=1))
             .isoformat(), "ready": True, "unit": "U0", "reasons": []}  # fmt: skip
    catalog.record_recorder("ST-2", later, received_at=NOW.isoformat())
    with serve_app(app) as served:
        yield served


def test_the_recorders_come_a_page_at_a_time_with_links(url: str) -> None:
    s = login(url, "view")
    first = s.get(f"{url}/recorders?format=json", timeout=30).json()
    assert board.PAGE_SIZE == 100
    serials = [r["serial"] for r in first["recorders"]]
    assert serials == [f"R-{r:04d}" for r in range(100)]
    assert first["paging"] | {"query": None} == {
        "page": 1, "pages": 3, "total": COUNT, "prev": None, "next": 2, "query": None
    }  # fmt: skip
    last = s.get(f"{url}/recorders?format=json&page=3", timeout=30).json()
    assert [r["serial"] for r in last["recorders"]] == [f"R-{r:04d}" for r in range(200, COUNT)]
    assert (last["paging"]["prev"], last["paging"]["next"]) == (2, None)
    past = s.get(f"{url}/recorders?format=json&page=9", timeout=30).json()
    assert past["recorders"] == [] and past["paging"]["total"] == COUNT
    html = s.get(f"{url}/recorders?page=2", timeout=30).text
    assert html.count('class="recorder"') == 100
    assert 'href="?page=1" rel="prev"' in html and 'href="?page=3" rel="next"' in html
    assert s.get(f"{url}/recorders?page=0", timeout=30).status_code == 422


def test_the_filters_are_in_the_query_and_the_links_keep_them(url: str) -> None:
    s = login(url, "view")
    found = s.get(f"{url}/recorders?format=json&station=ST-1&unit=U1", timeout=30).json()
    expected = [f"R-{r:04d}" for r in range(COUNT) if r % 3 == 1 and r % 2 == 1]
    assert [r["serial"] for r in found["recorders"]] == expected
    assert found["paging"]["total"] == len(expected) and found["paging"]["pages"] == 1
    assert found["stations"] == ["ST-0", "ST-1", "ST-2"] and found["units"] == ["U0", "U1"]
    # the newest report decides where a recorder is: R-0000 is at ST-2 now, not ST-0
    at_st0 = s.get(f"{url}/recorders?format=json&station=ST-0", timeout=30).json()
    assert "R-0000" not in [r["serial"] for r in at_st0["recorders"]]
    assert at_st0["paging"]["total"] == len(range(0, COUNT, 3)) - 1
    html = s.get(f"{url}/recorders?unit=U0", timeout=30).text
    assert 'href="?unit=U0&amp;page=2" rel="next"' in html


def test_the_stations_and_the_register_pages_carry_their_paging(url: str) -> None:
    s = login(url, "view")
    stations = s.get(f"{url}/stations?format=json", timeout=30).json()
    assert [x["station"] for x in stations["stations"]] == ["ST-0", "ST-1", "ST-2"]
    assert stations["paging"]["total"] == 3 and stations["paging"]["next"] is None
    register = s.get(f"{url}/register?format=json&page=2", timeout=30).json()
    assert register["entries"] == [] and register["paging"]["prev"] == 1
