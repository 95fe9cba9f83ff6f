"""The centre's compliance report (rule clause 15; docs/report.md): figures counted from the
stations' signed events, checked against a fixture built by hand (every expected number
written out here), and the same figures on the dashboard's page, as JSON (/api/report), as
CSV, and in the PDF the page prints to.

The events are fed to the centre's catalog as stations send them: chained (sync/wire/chain.py)
and stored by the catalog's own ``record_event``, which is what the consumer calls once a
message's signature checks (tests/test_centre_holds.py drives that path end to end).
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import socket
import time
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import requests

from central.catalog import CentralCatalog, access, access_log, faults
from central.catalog import report as R
from sync.wire.chain import GENESIS, canonical, entry_hash
from tests.central_server import serve_app
from tests.dashboard_tools import PASSWORDS, dashboard_app, login
from tests.test_centre_holds import centre, feed, offload, station  # noqa: F401 (fixtures)

SINCE, UNTIL = "2026-03-01 00:00:00", "2026-04-01 00:00:00"


class Station:
    """One station's audit chain, fed event by event to the centre's catalog."""

    def __init__(self, catalog: CentralCatalog, name: str) -> None:
        self.catalog, self.name, self.seq, self.head = catalog, name, 0, GENESIS

    def send(
        self, at: str, kind: str, subject: str, data: dict[str, Any], received: str | None = None
    ) -> None:
        self.seq += 1
        digest = entry_hash(self.head, self.seq, at, kind, subject, canonical(data))
        doc = {
            "event_id": f"{self.name}:cat:{self.seq}",
            "station": self.name,
            "seq": self.seq,
            "at": at,
            "kind": kind,
            "subject": subject,
            "data": data,
            "prev_hash": self.head,
            "hash": digest,
        }
        assert self.catalog.record_event(doc, received_at=received or at) == "stored"
        self.head = digest

    def session(self, at: str, sid: str, serial: str, unit: str, officer: str) -> None:
        data = {"device_serial": serial, "unit": unit, "officer_id": officer, "files_seen": 1}
        self.send(at, "session.start", sid, data)

    def stored(self, at: str, sid: str, serial: str, name: str, **times: Any) -> None:
        data = {"session_id": sid, "device_serial": serial, "sha256": "0" * 64, "size": 1}
        data["late"] = times.pop("late", False)
        self.send(at, "file.stored", f"2026/{sid}/media/{name}", {**data, **times})

    def check(self, at: str, sid: str, serial: str, failing: tuple[str, ...]) -> None:
        names = ("battery", "storage", "clock", "firmware", "offload", "late")
        results = [{"name": n, "state": "FAIL" if n in failing else "PASS"} for n in names]
        data = {"ready": not failing, "results": results, "session_id": sid, "check_id": 1}
        self.send(at, "checks", serial, data)

    def fault(self, at: str, fid: str, kind: str, subject: str, received: str, **ev: Any) -> None:
        data = {"kind": kind, "subject": subject, "severity": "error", "detail": kind}
        self.send(at, "fault.open", fid, {**data, "evidence": ev}, received)


def t(day: int, hour: float = 0, month: int = 3) -> str:
    minutes = round(hour * 60)
    return f"2026-{month:02d}-{day:02d}T{minutes // 60:02d}:{minutes % 60:02d}:00+00:00"


def times(age: float | None, start: str | None, end: str | None, late: bool = False) -> dict:
    return {"age_hours": age, "recorded_start": start, "recorded_end": end, "late": late}


def build(catalog: CentralCatalog) -> None:
    """Two stations' events in March 2026 (and a few outside it), written out by hand."""
    a, b = Station(catalog, "ST-A"), Station(catalog, "ST-B")
    # before the period: counted nowhere
    a.session(t(20, 8, month=2), "S0", "R1", "U1", "O1")
    a.stored(t(20, 8, month=2), "S0", "R1", "f", **times(1.0, t(20, 6, 2), t(20, 7, 2)))
    a.send(
        t(1, month=2), "hold.placed", "H-OLD", {"id": "H-OLD", "scope": "device",
        "device_serial": "R1", "reason": "other", "reason_text": "x"},
    )  # fmt: skip
    # U1 / O1 / R1 at ST-A: three recordings, one late, one without a known age
    a.session(t(2, 8), "S1", "R1", "U1", "O1")
    a.stored(t(2, 8), "S1", "R1", "a", **times(2.0, t(2, 6), t(2, 7)))  # 1 h
    a.stored(t(2, 8), "S1", "R1", "b", **times(30.0, t(28, 22, 2), t(28, 22.5, 2), True))
    a.stored(t(2, 8), "S1", "R1", "c", **times(None, None, None))
    a.check(t(2, 8.1), "S1", "R1", ("battery", "late"))
    a.check(t(3, 8), "S1", "R1", ())
    # U2 / O2 / R2 at ST-A: one recording, one from a station older than the age field
    a.session(t(5, 10), "S2", "R2", "U2", "O2")
    a.stored(t(5, 10), "S2", "R2", "d", **times(1.0, t(5, 9), t(5, 9.25)))  # 0.25 h
    a.stored(t(5, 10), "S2", "R2", "e")  # no age, no times: not known at the centre
    a.check(t(5, 10.1), "S2", "R2", ("battery",))
    # faults: reported after 1 h, repaired after 48 h; reported after 30 h, repaired after
    # 20 h; reported after 10 min and still open at the period's end (48 h)
    a.fault(t(4, 8), "F1", "recorder.overdue", "R1", t(4, 9), last_session_id="S1")
    a.send(t(6, 8), "fault.resolved", "F1", {"kind": "recorder.overdue", "subject": "R1"})
    a.fault(t(10, 0), "F2", "recorder.battery", "R2", t(11, 6))
    a.send(t(10, 20), "fault.resolved", "F2", {"kind": "recorder.battery", "subject": "R2"})
    a.fault(t(30, 0), "F3", "station.disk", "ST-A", t(30, 1 / 6))
    # holds, access requests, exports
    a.send(t(7), "hold.placed", "H1", {"id": "H1", "scope": "session", "session_id": "S1",
           "reason": "complaint", "case_number": "2026-017"})  # fmt: skip
    a.send(t(8), "hold.released", "H-OLD", {"id": "H-OLD", "release_reason": "closed"})
    a.send(t(8), "access.requested", "REQ1", {"id": "REQ1", "case_number": "2026-017"})
    a.send(t(9), "access.approved", "REQ1", {"id": "REQ1", "decided_by": "chief"})
    a.send(t(9, 1), "access.requested", "REQ2", {"id": "REQ2"})
    a.send(t(9, 2), "export.written", "REQ1", {"by": "clerk", "outcome": "done"})
    a.send(t(9, 3), "export.refused", "-", {"by": "clerk", "outcome": "refused"})
    # U1 / O3 / R3 at ST-B: one recording of 2 h
    b.session(t(15, 9), "T1", "R3", "U1", "O3")
    b.stored(t(15, 9), "T1", "R3", "g", **times(5.0, t(15, 2), t(15, 4)))
    # the centre's own approved access: two requests in March (one approved, one awaiting a
    # decision), one in April; its log: a decision, two downloads, one refused, an export
    with catalog.tx() as conn:
        for rid, at, station in (("AC-1", t(12), "ST-A"), ("AC-2", t(13), "ST-B"),
                                 ("AC-3", t(2, month=4), "ST-A")):  # fmt: skip
            obj = {"station": station, "recording": f"{station}/x", "sha256": "0" * 64, "size": 1}
            access.create(conn, {"request_id": rid, "requested_by": "clerk", "requested_at": at,
                                 "purpose": "p", "basis": "list"}, [obj])  # fmt: skip
        access.decide(conn, "AC-1", state="approved", by="chief", at=t(12, 1),
                      valid_until=t(19), note=None)  # fmt: skip
        for action, at, station in (("request", t(12), None), ("approve", t(12, 1), None),
                                    ("download", t(12, 2), "ST-A"),
                                    ("download", t(12, 3), "ST-A"),
                                    ("download.refused", t(20), "ST-A"),
                                    ("export", t(14), "ST-A"),
                                    ("download", t(2, 1, month=4), "ST-A")):  # fmt: skip
            access_log.record(conn, action, at=at, by="clerk", request_id="AC-1", station=station)
    # the centre's own fault is not a station's: not counted
    with catalog.tx() as conn:
        faults.open_centre_fault(
            conn,
            {"station": "ST-A", "id": "centre:x:1", "rule": "x", "kind": "recorder.overdue",
             "subject": "R1", "severity": "warning", "detail": "x", "evidence": {}},
            t(12),
        )  # fmt: skip


@pytest.fixture
def catalog(central_db: str):  # noqa: ANN201
    c = CentralCatalog(central_db)
    build(c)
    yield c
    c.close()


def group(rows: list[dict], key: str | None) -> dict:
    found = [r for r in rows if r["key"] == key]
    assert len(found) == 1, rows
    return found[0]


def test_the_figures_match_the_hand_built_fixture(catalog: CentralCatalog) -> None:
    f = R.figures(catalog.conn, SINCE, UNTIL)
    assert f["totals"] == {
        "key": "all", "recordings": 6, "hours": 3.75, "hours_not_known": 1, "with_age": 4,
        "within_24h": 3, "late": 1, "share_within_24h": 0.75,
    }  # fmt: skip
    u1, u2 = group(f["by_unit"], "U1"), group(f["by_unit"], "U2")
    assert [r["key"] for r in f["by_unit"]] == ["U1", "U2"]
    assert u1 == {
        "key": "U1", "recordings": 4, "hours": 3.5, "hours_not_known": 0, "with_age": 3,
        "within_24h": 2, "late": 1, "share_within_24h": 0.6667, "checks": 2,
        "checks_failed": 1, "check_failures": {"battery": 1, "late": 1}, "dockings_late": 1,
    }  # fmt: skip
    assert u2 == {
        "key": "U2", "recordings": 2, "hours": 0.25, "hours_not_known": 1, "with_age": 1,
        "within_24h": 1, "late": 0, "share_within_24h": 1.0, "checks": 1,
        "checks_failed": 1, "check_failures": {"battery": 1}, "dockings_late": 0,
    }  # fmt: skip
    assert [r["key"] for r in f["by_officer"]] == ["O1", "O2", "O3"]
    assert group(f["by_officer"], "O3")["hours"] == 2.0
    r1 = group(f["by_recorder"], "R1")
    assert (r1["recordings"], r1["hours"], r1["checks"], r1["dockings_late"]) == (3, 1.5, 2, 1)
    assert f["faults"]["totals"] == {
        "key": "all", "opened": 3, "reported": 3, "reported_within_24h": 2, "repaired": 2,
        "repaired_within_24h": 1, "open_past_24h": 1, "mean_hours_to_report": 10.39,
        "mean_hours_to_repair": 34.0,
    }  # fmt: skip
    assert [r["key"] for r in f["faults"]["by_kind"]] == [
        "recorder.battery", "recorder.overdue", "station.disk",
    ]  # fmt: skip
    assert [r["key"] for r in f["faults"]["by_recorder"]] == ["R1", "R2", "station"]
    assert f["holds"] == {"placed": 1, "by_reason": {"complaint": 1}, "released": 1}
    assert f["exports"] == {"export": 1, "export.refused": 1}
    assert f["access_requests"] == {"approved": 1, "pending": 1}
    assert f["incomplete"] == []
    assert f["centre_access"] == {
        "requests": {"approved": 1, "requested": 1},
        "log": {"approve": 1, "download": 2, "download.refused": 1, "export": 1},
    }
    assert f["not_known"] == {}
    at_b = R.figures(catalog.conn, SINCE, UNTIL, station="ST-B")["centre_access"]
    assert at_b == {"requests": {"requested": 1}, "log": {}}


def test_a_group_whose_times_never_reached_the_centre_has_no_hours_never_zero(
    catalog: CentralCatalog,
) -> None:
    c = Station(catalog, "ST-C")
    c.session(t(20), "X1", "R9", "U9", "O9")
    c.stored(t(20), "X1", "R9", "old")  # a station older than the age and times fields
    f = R.figures(catalog.conn, SINCE, UNTIL, unit="U9")
    assert f["totals"]["recordings"] == 1
    assert f["totals"]["hours"] is None
    assert f["totals"]["share_within_24h"] is None


def test_the_station_and_unit_filters(catalog: CentralCatalog) -> None:
    b = R.figures(catalog.conn, SINCE, UNTIL, station="ST-B")
    assert (b["totals"]["recordings"], b["totals"]["hours"]) == (1, 2.0)
    assert b["faults"]["totals"]["opened"] == 0
    assert b["holds"] == {"placed": 0, "by_reason": {}, "released": 0}
    u2 = R.figures(catalog.conn, SINCE, UNTIL, unit="U2")
    assert [r["key"] for r in u2["by_unit"]] == ["U2"]
    assert u2["totals"]["recordings"] == 2
    february = R.figures(catalog.conn, "2026-02-01 00:00:00", SINCE)
    assert february["totals"]["recordings"] == 1
    assert february["holds"]["placed"] == 1


def test_a_station_with_events_missing_is_shown_incomplete(catalog: CentralCatalog) -> None:
    # a gap: seq 41 arrives before the events between
    catalog.record_event(
        {"event_id": "ST-A:cat:41", "station": "ST-A", "seq": 41, "at": t(31), "kind": "x",
         "subject": "-", "data": {}, "prev_hash": "1" * 64, "hash": "2" * 64},
        received_at=t(31),
    )  # fmt: skip
    found = R.figures(catalog.conn, SINCE, UNTIL)["incomplete"]
    assert [(s["station"], s["chain_max_seq"]) for s in found] == [("ST-A", 41)]


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


# -- served: the page, the JSON, the CSV -----------------------------------------------------

READER = "reader-token-0123456789abcdef"
MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


@pytest.fixture
def served(tmp_path: Path, central_db: str):  # noqa: ANN201
    """A served recdock-central (dashboard and API) whose catalog holds the fixture; the
    period's days are the centre's local days, so the test runs it in UTC."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", "UTC")
        time.tzset()
        app = dashboard_app(tmp_path, api_tokens={READER: "supervisor"}, database=central_db)
        build(app.state.catalog)
        with serve_app(app) as url:
            yield url
    time.tzset()


def test_the_page_needs_a_login_and_any_user_may_read_it(served: str) -> None:
    r = requests.get(f"{served}/report", params=MARCH, timeout=10)
    assert r.url.startswith(f"{served}/login?next=")
    r = requests.get(f"{served}/report.csv", params=MARCH, timeout=10)
    assert r.url.startswith(f"{served}/login?next=")
    page = login(served, "view").get(f"{served}/report", params=MARCH, timeout=10)
    assert page.status_code == 200


def cells(html: str, table_id: str) -> list[str]:
    """The text of every cell of the table with ``table_id`` (tags stripped)."""
    table = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    found = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", table, re.S)
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", c)).strip() for c in found]


def test_the_page_shows_the_figures_in_chinese_by_default_and_english_on_request(
    served: str,
) -> None:
    s = login(served, "view")
    zh = s.get(f"{served}/report", params=MARCH, timeout=10).text
    assert "执法记录仪使用情况统计报告" in zh and "2026-03-01 — 2026-03-31" in zh
    assert cells(zh, "totals")[4:] == ["6", "3.75 (其中 1 条中心无时间信息)", "75.0 % (3/4)", "1"]
    en = s.get(f"{served}/report", params={**MARCH, "lang": "en"}, timeout=10).text
    assert "Compliance report" in en
    units = en.split("By unit</h2>", 1)[1].split("</table>", 1)[0]
    rows = [cells(f'id="x">{row}</table>', "x") for row in units.split("<tr>")[2:]]
    assert rows[0] == ["U1", "4", "3.50", "66.7 % (2/3)", "1", "2", "1", "battery 1; late 1", "1"]
    assert rows[1] == ["U2", "2", "0.25 (1 without times at the centre)", "100.0 % (1/1)", "0",
                       "1", "1", "battery 1", "0"]  # fmt: skip
    # the fault still open past the limit says so in words, not by colour alone
    assert "Open past 24 h" in en and "over the limit" in en
    holds = cells(en, "holds")
    assert holds[3:] == ["1", "all", "1", "Released", "1"]
    assert cells(en, "exports")[2:] == ["written", "1", "refused", "1"]
    assert cells(en, "requests")[2:] == ["approved", "1", "pending", "1"]
    assert cells(en, "centre-access")[2:] == [
        "requests: approved", "1", "requests: awaiting a decision", "1",
        "approved", "1", "downloads", "2", "downloads refused", "1", "exports written", "1",
    ]  # fmt: skip
    assert "do not yet sign their recorded times and age: 1" in en


def test_the_report_does_not_fetch_itself_again_as_live_pages_do(served: str) -> None:
    """A year's figures are counted per request: the page is not polled (live.js), while the
    overview still is."""
    s = login(served, "view")
    page = s.get(f"{served}/report", params={**MARCH, "lang": "en"}, timeout=10).text
    assert '<main id="main" data-poll="0">' in page
    assert "Updates every" not in page and 'class="note"' not in page
    assert '<main id="main" data-poll="5.0">' in s.get(f"{served}/", timeout=10).text


def test_a_period_that_ends_before_it_starts_is_explained(served: str) -> None:
    s = login(served, "view")
    page = s.get(f"{served}/report", params={"from": "2026-03-31", "to": "2026-03-01"}, timeout=10)
    assert page.status_code == 200 and 'role="alert"' in page.text
    assert "2026-03-01" in page.text and "before it starts" in page.text
    r = s.get(f"{served}/report.csv", params={"from": "2026-13-01"}, timeout=10)
    assert r.status_code == 400 and "from '2026-13-01' is not a date" in r.text


def test_the_json_api_gives_the_same_figures_to_reader_tokens(served: str) -> None:
    url = f"{served}/api/report"
    assert requests.get(url, params=MARCH, timeout=10).status_code == 401
    auth = {"Authorization": f"Bearer {READER}"}
    found = requests.get(url, params=MARCH, headers=auth, timeout=10).json()
    assert found["period"] == {"from": "2026-03-01", "to": "2026-03-31"}
    assert (found["totals"]["recordings"], found["totals"]["hours"]) == (6, 3.75)
    assert found["faults"]["totals"]["open_past_24h"] == 1
    assert found["access_requests"] == {"approved": 1, "pending": 1}
    only_b = requests.get(url, params={**MARCH, "station": "ST-B"}, headers=auth, timeout=10)
    assert only_b.json()["totals"]["recordings"] == 1
    bad = requests.get(url, params={"from": "2026-03-31", "to": "2026-03-01"}, headers=auth,
                       timeout=10)  # fmt: skip
    assert bad.status_code == 400 and "before it starts" in bad.json()["detail"]


def test_the_csv_download_has_every_figure(served: str) -> None:
    r = login(served, "view").get(f"{served}/report.csv", params=MARCH, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="recdock-report-2026-03-01-2026-03-31.csv"' in r.headers["content-disposition"]
    rows = csv_rows(r.text)
    assert rows[0] == ["section", "group", "figure", "value"]
    assert ["period", "all", "from", "2026-03-01"] in rows
    assert ["totals", "all", "recordings", "6"] in rows
    assert ["totals", "all", "hours", "3.75"] in rows
    assert ["by_unit", "U1", "check_failures.battery", "1"] in rows
    assert ["by_unit", "U2", "share_within_24h", "1.0"] in rows
    assert ["faults", "all", "mean_hours_to_report", "10.39"] in rows
    assert ["holds", "by_reason", "complaint", "1"] in rows
    assert ["exports", "all", "export", "1"] in rows
    assert ["access_requests", "all", "pending", "1"] in rows
    assert ["centre_access.requests", "all", "approved", "1"] in rows
    assert ["centre_access.log", "all", "download", "2"] in rows
    assert not any(r[0] == "not_known" for r in rows)


# -- printed: Debian's chromium prints the page to PDF --------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (scripts/setup installs it)",
)
@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_the_page_printed_to_pdf_is_the_inspections_document(
    served: str, tmp_path: Path, lang: str
) -> None:
    from playwright.sync_api import sync_playwright
    from pypdf import PdfReader

    with sync_playwright() as p:
        # headless chromium (page.pdf() needs it); root (CI) cannot use chromium's sandbox
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_context().new_page()
            page.goto(f"{served}/login")
            page.fill("#user", "view")
            page.fill("#password", PASSWORDS["view"])
            page.click("form.login button[type=submit]")
            page.wait_for_url(f"{served}/")
            page.goto(f"{served}/report?from=2026-03-01&to=2026-03-31&lang={lang}")
            page.pdf(path=tmp_path / "report.pdf", format="A4")
        finally:
            browser.close()
    text = "\n".join(p.extract_text() for p in PdfReader(tmp_path / "report.pdf").pages)
    # the font's CJK glyphs may map to Kangxi radicals (使⽤ for 使用): NFKC folds them back
    flat = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text))
    # the head: the period, the centre that made it and when
    assert "2026-03-01 — 2026-03-31" in flat
    assert socket.gethostname() in flat
    assert re.search(r"20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC", flat)
    # the figures
    assert "3.75" in flat and "75.0 % (3/4)" in flat
    assert "66.7 % (2/3)" in flat and "battery 1; late 1" in flat
    assert "10.39" in flat and "34.0" in flat
    words = {
        "zh-CN": ("执法记录仪使用情况统计报告", "超出时限", "中心的调阅审批"),
        "en": ("Compliance report", "over the limit", "Approved access at the centre"),
    }[lang]
    for word in words:
        assert word in flat, word
    # no navigation, filters or download link on paper
    nav = {"zh-CN": ("下载 CSV", "查询"), "en": ("Download CSV", "Overview", "Log out")}[lang]
    for word in nav:
        assert word not in flat, word


# -- the station's report and the centre's agree for that station ---------------------------


def test_the_centre_counts_a_stations_offloads_as_its_own_report_does(
    home: Path,
    station,  # noqa: F811 (the fixture from tests/test_centre_holds.py)
    centre,  # noqa: F811
) -> None:  # noqa: ANN001
    """Recordings offloaded by the station's own code, their signed events fed to the centre:
    the station's ``recdock report`` figures and the centre's are the same."""
    from agent.catalog import report as station_report

    catalog, _ = station
    offload(home, catalog, "SIM0042", files=3)
    offload(home, catalog, "SIM0043", files=2)
    feed(station, centre, set())
    since, until = "2000-01-01 00:00:00", "2100-01-01 00:00:00"
    mine = station_report.figures(catalog, since, until)
    theirs = R.figures(centre.catalog.conn, since, until, station="ST-A")
    same = ("recordings", "hours", "with_age", "within_24h", "share_within_24h", "late")
    assert mine["totals"]["recordings"] == 5
    assert {k: theirs["totals"][k] for k in same} == {k: mine["totals"][k] for k in same}
    assert theirs["totals"]["hours_not_known"] == 0
    for group in ("by_unit", "by_officer", "by_recorder"):
        assert [{k: g[k] for k in ("key", *same)} for g in theirs[group]] == [
            {k: g[k] for k in ("key", *same)} for g in mine[group]
        ], group
