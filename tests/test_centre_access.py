"""Approved access at the centre (rule clauses 12, 13, 34, 35; docs/access.md, docs/export.md):
a request on the dashboard, a decision by a supervisor who did not ask, downloads only within
the approval and only to its requester or approver, and ``recdock-central export``'s two
labelled bags from the centre's objects.

Everything real: the station's own offload makes the recordings and its signed events (fed to
the centre's consumer as they leave, no broker), the station's tus client uploads them to a
served recdock-central, people log in over HTTP. The clock the app uses for approvals is
``app.state.clock``, moved by the tests (never a sleep).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bagit
import pytest
import requests

from agent.catalog import Catalog, holds, open_catalog, recordings
from agent.config import SHIPPED_PROFILES, Config
from agent.offload import Offloader
from agent.recorder.profiles import ProfileSet
from central.access_export import ExportRefused, Order
from central.access_export import export as run_export
from central.catalog import access_log
from central.consumer import ConsumerSettings, MqttConsumer
from central.enrolment import StationKeys
from sync.upload.tus import TusUploader
from tests.central_server import TOKEN_A, serve_app
from tests.dashboard_tools import csrf_of, dashboard_app, login
from tests.recorders import make_folder_recorder
from tests.signing_keys import home_key, new_key, queued, register

STATION = "ST-A"
SERIAL = "SIM0042"
CASE = "CD-2026-017"
READER = "reader-token-0123456789abcdef"


@dataclass
class Centre:
    url: str
    app: object
    rows: list[dict]
    store: Path
    clock: list[datetime]
    hold_id: str
    upload_urls: list[str]

    def move(self, **delta: float) -> None:
        self.clock[0] += timedelta(**delta)


def offload(home: Path, catalog: Catalog) -> list[dict]:
    """A folder recorder offloaded by the station's own code (the source kept)."""
    config = Config.model_validate({"station_id": STATION})
    profile = ProfileSet.load([SHIPPED_PROFILES]).get("simulated")
    rec = make_folder_recorder(home.parent / "rec", SERIAL, files=2, size=70_000)
    report = Offloader(config, home, catalog, keep_source=True).run(rec, profile)
    assert report.ok, report.failures
    return recordings.listing(catalog)


@pytest.fixture
def centre(tmp_path: Path, home: Path, central_db: str) -> Iterator[Centre]:
    catalog = open_catalog(home, STATION)
    key = home_key(home)
    rows = offload(home, catalog)
    hold_id = holds.place(
        catalog,
        {
            "scope": "session",
            "session_id": rows[0]["session_id"],
            "reason": "complaint",
            "case_name": "张某投诉",
            "case_number": CASE,
            "placed_by": "officer 0107",
        },
    )
    app = dashboard_app(tmp_path, api_tokens={READER: "auditor"}, database=central_db)
    clock = [datetime.now(UTC)]
    app.state.clock = lambda: clock[0]
    keys = StationKeys(register({STATION: key}))
    consumer = MqttConsumer(
        app.state.catalog, ConsumerSettings(port=1), keys=keys, signing_key=new_key()
    )
    for topic, payload in queued(catalog, key):
        assert consumer.handle(topic, payload, retained=False) in ("stored", "cleared", "ignored")
    with serve_app(app) as url:
        uploader = TusUploader(f"{url}/files/", TOKEN_A)
        urls = []
        for r in rows:
            receipt = uploader.upload(home / "store" / r["store_path"], sha256=r["sha256"])
            assert receipt.verified
            urls.append(receipt.upload_url)
        yield Centre(url, app, rows, home / "store", clock, hold_id, urls)
    catalog.close()


def ask(s: requests.Session, url: str, **form: str) -> requests.Response:
    page = s.get(f"{url}/access", timeout=10)
    assert page.status_code == 200
    return s.post(f"{url}/access", data={"csrf": csrf_of(page.text), **form}, timeout=10)


def ask_by_hold(c: Centre, s: requests.Session) -> str:
    r = ask(s, c.url, basis="hold", hold_id=c.hold_id, purpose="complaint of 3 May reviewed")
    assert r.status_code == 200, r.text[:300]
    return r.url.rsplit("/", 1)[1].split("?")[0]


def decide(
    s: requests.Session, url: str, request_id: str, decision: str, **form: str
) -> requests.Response:
    page = s.get(f"{url}/access", timeout=10)  # the session's CSRF token, on any page
    assert page.status_code == 200
    return s.post(
        f"{url}/access/{request_id}/{decision}",
        data={"csrf": csrf_of(page.text), **form},
        allow_redirects=False,
        timeout=10,
    )


def logged(c: Centre, request_id: str) -> list[tuple[str, str]]:
    rows = access_log.listing(c.app.state.catalog.conn, request_id=request_id)
    return [(r["action"], r["by"]) for r in reversed(rows)]


def test_a_request_approved_by_another_supervisor_downloads_only_within_it(centre) -> None:  # noqa: ANN001
    c = centre
    sup, admin, view = login(c.url, "sup"), login(c.url, "admin"), login(c.url, "view")
    request_id = ask_by_hold(c, sup)
    assert request_id.startswith("AC-")
    page = sup.get(f"{c.url}/access/{request_id}?format=json", timeout=10).json()
    assert [o["recording"] for o in page["objects"]] == [r["store_path"] for r in c.rows]
    assert page["request"]["case_number"] == CASE
    assert page["may_download"] is False

    # before a decision: refused, saying what is missing
    r = sup.get(f"{c.url}/access/{request_id}/objects/1", timeout=10)
    assert r.status_code == 403 and "has not been approved" in r.json()["detail"]

    # a viewer cannot decide: a forged POST with the viewer's own CSRF token is refused
    r = decide(view, c.url, request_id, "approve", days="7")
    assert r.status_code == 403
    # nobody approves their own request
    r = decide(sup, c.url, request_id, "approve", days="7")
    assert r.status_code == 403 and "nobody decides their own request" in r.json()["detail"]
    # longer than the centre allows
    r = decide(admin, c.url, request_id, "approve", days="31")
    assert r.status_code == 400
    r = decide(admin, c.url, request_id, "approve", days="7", note="complaint file 17")
    assert r.status_code == 303

    for n, row in enumerate(c.rows, start=1):
        got = sup.get(f"{c.url}/access/{request_id}/objects/{n}", timeout=10)
        assert got.status_code == 200, got.text[:300]
        assert got.content == (c.store / row["store_path"]).read_bytes()
        assert got.headers["x-recdock-sha256"] == hashlib.sha256(got.content).hexdigest()
        assert got.headers["x-recdock-sha256"] == row["sha256"]
    assert admin.get(f"{c.url}/access/{request_id}/objects/1", timeout=10).status_code == 200

    # someone else: refused, logged
    r = view.get(f"{c.url}/access/{request_id}/objects/1", timeout=10)
    assert r.status_code == 403 and "neither the requester (sup) nor the approver" in r.text
    # an object the request does not have
    r = sup.get(f"{c.url}/access/{request_id}/objects/9", timeout=10)
    assert r.status_code == 403 and "has no object 9" in r.json()["detail"]

    c.move(days=7, seconds=1)
    r = sup.get(f"{c.url}/access/{request_id}/objects/1", timeout=10)
    assert r.status_code == 403 and "ran out" in r.json()["detail"]

    assert logged(c, request_id) == [
        ("request", "sup"),
        ("download.refused", "sup"),
        ("approve.refused", "view"),
        ("approve.refused", "sup"),
        ("approve", "admin"),
        ("download", "sup"),
        ("download", "sup"),
        ("download", "admin"),
        ("download.refused", "view"),
        ("download.refused", "sup"),
        ("download.refused", "sup"),
    ]
    log_page = sup.get(f"{c.url}/access/log?request={request_id}", timeout=10)
    assert log_page.status_code == 200 and "download.refused" in log_page.text
    assert view.get(f"{c.url}/access/log", timeout=10).status_code == 403


def test_a_refused_request_never_downloads_and_the_api_lists_it(centre) -> None:  # noqa: ANN001
    c = centre
    view, sup = login(c.url, "view"), login(c.url, "sup")
    listed = " ".join([STATION, c.rows[1]["store_path"]])
    r = ask(view, c.url, basis="list", recordings=listed, purpose="party asks to copy",
            party="张某", case_name="张某投诉", case_number=CASE)  # fmt: skip
    assert r.status_code == 200
    request_id = r.url.rsplit("/", 1)[1].split("?")[0]
    assert decide(sup, c.url, request_id, "refuse", note="no case file").status_code == 303
    r = view.get(f"{c.url}/access/{request_id}/objects/1", timeout=10)
    assert r.status_code == 403 and "was refused by sup" in r.json()["detail"]
    # a viewer sees only their own requests; a supervisor every one
    api = {"Authorization": f"Bearer {READER}"}
    page = requests.get(f"{c.url}/api/access/requests?limit=1&offset=0", headers=api, timeout=10)
    assert page.status_code == 200
    assert [x["request_id"] for x in page.json()] == [request_id]
    assert page.json()[0]["state"] == "refused" and page.json()[0]["party"] == "张某"
    one = requests.get(f"{c.url}/api/access/requests/{request_id}", headers=api, timeout=10)
    assert [o["recording"] for o in one.json()["recordings"]] == [c.rows[1]["store_path"]]
    log = requests.get(f"{c.url}/api/access/log?request_id={request_id}", headers=api, timeout=10)
    assert [x["action"] for x in log.json()] == ["download.refused", "refuse", "request"]


def test_no_tus_route_serves_an_objects_bytes(centre) -> None:  # noqa: ANN001
    """The uploading station itself, with its token, reads no bytes back from the tus
    endpoint: no GET of an upload (405), HEAD answers headers only, the receipt is metadata."""
    c = centre
    data = (c.store / c.rows[0]["store_path"]).read_bytes()
    auth = {"Authorization": f"Bearer {TOKEN_A}", "Tus-Resumable": "1.0.0"}
    upload = c.upload_urls[0]
    assert requests.get(upload, headers=auth, timeout=10).status_code == 405
    head = requests.head(upload, headers=auth, timeout=10)
    assert head.status_code == 200 and not head.content
    receipt = requests.get(f"{upload}/receipt", headers=auth, timeout=10)
    assert receipt.status_code == 200 and receipt.json()["sha256"] == c.rows[0]["sha256"]
    assert data not in receipt.content
    sha = c.rows[0]["sha256"]
    for path in (f"/files/{sha}", f"/objects/sha256/{sha[:2]}/{sha[2:4]}/{sha}", "/objects/"):
        r = requests.get(c.url + path, headers=auth, timeout=10)
        assert r.status_code in (401, 404, 405), (path, r.status_code)
        assert data not in r.content


def export(c: Centre, request_id: str, *dests: Path) -> subprocess.CompletedProcess:
    data = c.app.state.uploads.data_dir
    database = c.app.state.catalog.database  # the server's: a file or a PostgreSQL URL
    return subprocess.run(
        [sys.executable, "-m", "central.cli", "export", "--data", str(data),
         "--database", str(database.path or database.url), "--access", request_id,
         *map(str, dests)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_centre_exports_two_labelled_bags_of_purged_recordings(centre, tmp_path) -> None:  # noqa: ANN001
    c = centre
    sup, admin = login(c.url, "sup"), login(c.url, "admin")
    request_id = ask_by_hold(c, sup)
    d1, d2 = tmp_path / "disc1", tmp_path / "disc2"
    d1.mkdir(), d2.mkdir()

    refused = export(c, request_id, d1, d2)
    assert refused.returncode == 77, refused.stderr
    assert "has not been approved" in refused.stderr
    assert not list(d1.iterdir()) and not list(d2.iterdir())

    assert decide(admin, c.url, request_id, "approve", days="2").status_code == 303
    # the station's copies are gone (purged): the centre's objects are what is exported
    shutil.move(c.store, tmp_path / "gone")
    done = export(c, request_id, d1, d2)
    assert done.returncode == 0, done.stderr
    bags = [Path(line) for line in done.stdout.split()]
    assert [b.parent for b in bags] == [d1, d2]
    for copy, b in enumerate(bags, start=1):
        bag = bagit.Bag(str(b))
        bag.validate()
        assert bag.version_info == (1, 0)
        assert bag.info["Recdock-Access-Request"] == request_id
        assert bag.info["Recdock-Approved-By"] == "admin"
        assert bag.info["Recdock-Case-Number"] == CASE
        assert bag.info["Recdock-Copy"] == f"{copy} of 2"
        label = (b / "LABEL.txt").read_text(encoding="utf-8")
        assert (
            f"案件编号 (case number): {CASE}" in label and "案件名称 (case name): 张某投诉" in label
        )
        assert f"第 {copy} 份，共 2 份" in label
        check = subprocess.run(
            ["sha256sum", "-c", "manifest-sha256.txt"], cwd=b, capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.count(": OK") == len(c.rows)
    payload = sorted(p.name for p in (bags[0] / "data").rglob("*") if p.is_file())
    assert payload == sorted(Path(r["source_path"]).name for r in c.rows)
    assert [a for a, _ in logged(c, request_id)] == [
        "request",
        "export.refused",
        "approve",
        "export",
    ]

    # past the approval (the export's own time, moved as the app's clock is)
    c.move(days=2, seconds=1)
    (d1 / "again").mkdir(), (d2 / "again").mkdir()
    order = Order(request_id, (d1 / "again", d2 / "again"), "sup", c.clock[0])
    with pytest.raises(ExportRefused, match="ran out"):
        run_export(c.app.state.catalog, c.app.state.uploads.data_dir, order)
    assert not list((d1 / "again").iterdir())
    assert logged(c, request_id)[-1] == ("export.refused", "sup")
