"""The dashboard over HTTP, against a real recdock-central: login (argon2 users, roles,
rate limit), session cookies, CSRF on every form, the supervisor role for fault actions, the
pages' data and health words, both languages, and ``recdock-central user``.

What a person sees in a browser (live updates, a killed station, accessibility, screenshots)
is tests/test_dashboard_browser.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from central.catalog import CentralCatalog
from central.consumer import ConsumerSettings, MqttConsumer
from central.enrolment import StationKeys
from central.web import i18n
from central.web.cli import user as user_command
from central.web.session import COOKIE, LoginLimiter
from central.web.users import UserFile, UsersError, read_users
from tests.central_server import serve_app
from tests.dashboard_tools import (
    SERIAL,
    STATION,
    csrf_of,
    dashboard_app,
    dock,
    login,
    pending,
    raise_fault,
    station_catalog,
    status,
)
from tests.signing_keys import new_key, register

KEY = new_key()


@pytest.fixture
def centre(tmp_path: Path, central_db: str):
    """A served dashboard (its URL) whose catalog holds what station ST-A signed: a recorder
    docked three times and an open fault on it."""
    app = dashboard_app(tmp_path, database=central_db)
    catalog: CentralCatalog = app.state.catalog
    consumer = MqttConsumer(
        catalog, ConsumerSettings(port=1), keys=StationKeys(register({STATION: KEY}))
    )
    station = station_catalog(tmp_path / "station")
    for days, pct in ((2, 96.0), (1, 81.0), (0, 40.0)):
        dock(station, SERIAL, battery=pct, offset=1.5 * days, days_ago=days)
    fault_id = raise_fault(station)
    for topic, payload, _retain in [status(KEY, "online"), *pending(station, KEY)]:
        consumer.handle(topic, payload, retained=False)
    with serve_app(app) as url:
        yield url, fault_id
    station.close()


def test_every_page_needs_a_login(centre) -> None:
    url, fault_id = centre
    for path in (
        "/",
        "/stations",
        "/recorders",
        f"/recorders/{SERIAL}",
        f"/faults/{STATION}/{fault_id}",
    ):
        r = requests.get(url + path, timeout=10)
        assert r.url.startswith(f"{url}/login?next="), path
        assert r.status_code == 200 and 'name="password"' in r.text
    assert requests.get(f"{url}/?format=json", timeout=10, allow_redirects=False).status_code == 401


def test_a_wrong_password_is_refused_and_logins_are_rate_limited(centre) -> None:
    url, _ = centre
    s = requests.Session()
    csrf = csrf_of(s.get(f"{url}/login", timeout=10).text)
    codes = [
        s.post(
            f"{url}/login",
            data={"user": "sup", "password": "wrong-password", "csrf": csrf},
            timeout=10,
        ).status_code
        for _ in range(LoginLimiter().failures + 1)
    ]
    assert codes == [401] * LoginLimiter().failures + [429]
    # even the right password waits now: the limit is per name and per address
    r = s.post(
        f"{url}/login",
        data={"user": "sup", "password": "supervisor-pass-1", "csrf": csrf},
        timeout=10,
    )
    assert r.status_code == 429 and COOKIE not in r.cookies


def test_the_session_cookie_is_http_only_strict_and_signed(centre, tmp_path: Path) -> None:
    url, _ = centre
    s = login(url, "view")
    cookie = next(c for c in s.cookies if c.name == COOKIE)
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite").lower() == "strict"
    assert cookie.expires is not None, "the session expires"
    forged = requests.Session()
    forged.cookies.set(
        COOKIE, cookie.value[:-2] + ("AA" if not cookie.value.endswith("AA") else "BB")
    )
    assert forged.get(f"{url}/", timeout=10).url.startswith(f"{url}/login")


def test_secure_cookies_unless_the_lab_option_says_plain_http(tmp_path: Path) -> None:
    from central.app import create_app
    from tests.central_server import TOKENS

    app = create_app(tmp_path / "data", TOKENS, api_tokens={})
    with serve_app(app) as url:
        r = requests.get(f"{url}/login", timeout=10)
    assert "secure" in r.headers["set-cookie"].lower()


def test_a_post_without_the_forms_csrf_token_is_refused(centre) -> None:
    url, fault_id = centre
    s = login(url, "sup")
    action = f"{url}/faults/{STATION}/{fault_id}/acknowledge"
    assert s.post(action, data={}, timeout=10).status_code == 403
    assert s.post(action, data={"csrf": "x" * 43}, timeout=10).status_code == 403
    other = login(url, "sup")  # another session's token is no good either
    token = csrf_of(other.get(f"{url}/faults/{STATION}/{fault_id}", timeout=10).text)
    assert s.post(action, data={"csrf": token}, timeout=10).status_code == 403
    assert s.post(f"{url}/logout", data={}, timeout=10).status_code == 403


def test_a_viewer_has_no_fault_buttons_and_a_forged_post_is_refused(centre) -> None:
    url, fault_id = centre
    s = login(url, "view")
    page = s.get(f"{url}/faults/{STATION}/{fault_id}", timeout=10).text
    assert 'id="acknowledge"' not in page and 'id="resolve"' not in page
    for action in ("acknowledge", "resolve"):
        r = s.post(
            f"{url}/faults/{STATION}/{fault_id}/{action}",
            data={"csrf": csrf_of(page), "note": "forged"},
            timeout=10,
        )
        assert r.status_code == 403, action
    sup = login(url, "sup").get(f"{url}/faults/{STATION}/{fault_id}", timeout=10).text
    assert 'id="acknowledge"' in sup and 'id="resolve"' in sup


def test_the_overview_puts_the_fault_and_the_recorder_with_their_health_words(centre) -> None:
    url, fault_id = centre
    s = login(url, "view")
    data = s.get(f"{url}/?format=json", timeout=10).json()
    assert [f["id"] for f in data["faults"]] == [fault_id]
    assert data["faults"][0]["level"] == "open"
    # the centre's words (central/health.py): an open fault of severity error makes its station
    # unhealthy; a recorder whose last check said not ready is unhealthy
    stations = s.get(f"{url}/stations?format=json", timeout=10).json()["stations"]
    words = [(x["word"], x["reasons"]) for x in stations]
    assert words == [("unhealthy", ["severe_fault", "fault"])]
    assert data["words"]["stations"]["unhealthy"] == 1
    recorders = s.get(f"{url}/recorders?format=json", timeout=10).json()["recorders"]
    [r] = recorders
    assert (r["serial"], r["battery_pct"], r["ready"], r["word"]) == (
        SERIAL,
        40.0,
        False,
        "unhealthy",
    )
    assert "not_ready" in r["word_reasons"]
    html = s.get(f"{url}/", timeout=10).text
    assert 'data-word="unhealthy"' in html and 'aria-hidden="true">✖</span>' in html


def test_the_recorders_filter_by_unit_and_station(centre) -> None:
    url, _ = centre
    s = login(url, "view")
    found = s.get(f"{url}/recorders?format=json&unit=一中队&station={STATION}", timeout=10).json()
    assert [r["serial"] for r in found["recorders"]] == [SERIAL]
    assert s.get(f"{url}/recorders?format=json&unit=二中队", timeout=10).json()["recorders"] == []
    assert s.get(f"{url}/recorders?format=json&station=ST-Z", timeout=10).json()["recorders"] == []


def test_a_recorders_page_draws_its_battery_and_clock_history(centre) -> None:
    url, _ = centre
    s = login(url, "view")
    data = s.get(f"{url}/recorders/{SERIAL}?format=json", timeout=10).json()
    assert [h["battery_pct"] for h in data["history"]] == [96.0, 81.0, 40.0]
    assert [h["clock_offset_s"] for h in data["history"]] == [3.0, 1.5, 0.0]
    html = s.get(f"{url}/recorders/{SERIAL}", timeout=10).text
    assert html.count("<svg") == 2 and 'aria-label="96, 81, 40"' in html


def test_a_recorders_page_and_a_faults_page_find_their_own_among_others(
    tmp_path: Path, central_db: str
) -> None:
    """/recorders/<serial> and /faults/<station>/<id> ask the catalog for that one recorder
    and that one fault (not the whole list, then filtered): each page shows its own row and
    only the faults about it, with others beside it in the catalog."""
    app = dashboard_app(tmp_path, database=central_db)
    consumer = MqttConsumer(
        app.state.catalog, ConsumerSettings(port=1), keys=StationKeys(register({STATION: KEY}))
    )
    station = station_catalog(tmp_path / "station")
    other = "SIM0043"
    dock(station, SERIAL, battery=40.0, offset=0.0)
    dock(station, other, battery=90.0, offset=0.0)
    mine = raise_fault(station)
    theirs = raise_fault(station, subject=other)
    raise_fault(station, subject="SIM0044")  # a recorder never checked, only its fault known
    for topic, payload, _retain in [status(KEY, "online"), *pending(station, KEY)]:
        consumer.handle(topic, payload, retained=False)
    station.close()
    with serve_app(app) as url:
        s = login(url, "view")
        for serial, fault_id, battery in ((SERIAL, mine, 40.0), (other, theirs, 90.0)):
            data = s.get(f"{url}/recorders/{serial}?format=json", timeout=10).json()
            assert data["recorder"]["serial"] == serial
            assert data["recorder"]["battery_pct"] == battery
            assert [(f["id"], f["subject"]) for f in data["faults"]] == [(fault_id, serial)]
            fault = s.get(f"{url}/faults/{STATION}/{fault_id}?format=json", timeout=10).json()
            assert (fault["id"], fault["subject"], fault["station"]) == (fault_id, serial, STATION)
        unknown = s.get(f"{url}/recorders/SIM9999?format=json", timeout=10)
        assert unknown.status_code == 404 and unknown.json()["recorder"] is None
        gone = s.get(f"{url}/faults/{STATION}/no-such-fault?format=json", timeout=10)
        assert gone.status_code == 404 and gone.json() is None
        named = s.get(f"{url}/recorders/SIM0044?format=json", timeout=10)
        assert named.status_code == 200 and named.json()["recorder"] is None
        assert [f["subject"] for f in named.json()["faults"]] == ["SIM0044"]
        for page in ("/recorders/SIM9999", f"/faults/{STATION}/no-such-fault"):
            answer = s.get(f"{url}{page}", timeout=10)  # the page says so, in the layout
            assert answer.status_code == 404 and "<h1>" in answer.text, page


def test_chinese_by_default_english_by_the_switch_kept_in_a_cookie(centre) -> None:
    url, _ = centre
    s = login(url, "view")
    assert '<html lang="zh-CN">' in s.get(f"{url}/", timeout=10).text
    assert '<html lang="en">' in s.get(f"{url}/?lang=en", timeout=10).text
    assert '<html lang="en">' in s.get(f"{url}/stations", timeout=10).text, "the cookie keeps it"


def test_both_languages_have_every_message() -> None:
    assert set(i18n.ZH) == set(i18n.EN)
    for key, text in i18n.EN.items():
        assert set(_fields(text)) == set(_fields(i18n.ZH[key])), key


def _fields(text: str) -> list[str]:
    import string

    return [f for _, f, _, _ in string.Formatter().parse(text) if f]


def test_user_add_passwd_remove_keep_argon2_hashes(tmp_path: Path) -> None:
    users = tmp_path / "users.toml"
    run = CliRunner().invoke
    r = run(
        user_command,
        ["add", "alice", "--role", "supervisor", "--users", str(users), "--password-stdin"],
        input="alice-password-1\n",
    )
    assert r.exit_code == 0, r.output
    [alice] = read_users(users).values()
    assert alice.role == "supervisor" and alice.hash.startswith("$argon2id$")
    assert users.stat().st_mode & 0o777 == 0o600
    assert UserFile(users).verify("alice", "alice-password-1") is not None
    r = run(
        user_command,
        ["passwd", "alice", "--role", "viewer", "--users", str(users), "--password-stdin"],
        input="another-password\n",
    )
    assert r.exit_code == 0, r.output
    assert UserFile(users).verify("alice", "alice-password-1") is None
    assert UserFile(users).verify("alice", "another-password").role == "viewer"
    r = run(
        user_command,
        ["add", "bob", "--role", "viewer", "--users", str(users), "--password-stdin"],
        input="short\n",
    )
    assert r.exit_code == 1 and "shorter than" in r.output
    assert run(user_command, ["remove", "alice", "--users", str(users)]).exit_code == 0
    assert read_users(users) == {}


def test_a_malformed_users_file_names_the_file(tmp_path: Path) -> None:
    users = tmp_path / "users.toml"
    users.write_text('[users.eve]\nrole = "root"\nhash = "plain"\n')
    with pytest.raises(UsersError, match=str(users)):
        read_users(users)


def test_a_new_password_ends_the_users_sessions(centre, tmp_path: Path) -> None:
    url, _ = centre
    s = login(url, "view")
    UserFile(tmp_path / "users.toml").set_password("view", "a-new-password-1")
    assert s.get(f"{url}/", timeout=10).url.startswith(f"{url}/login")


def test_the_dashboards_commands_and_options_have_help() -> None:
    from central.command import main as serve
    from tests.test_cli import missing_help

    assert missing_help(user_command) == []
    assert missing_help(serve) == []
    names = {p.opts[0] for p in serve.params}
    assert {"--users", "--dashboard-plain-http", "--amber-hours", "--poll-seconds"} <= names


def test_an_administrator_sets_a_recorders_register_entry_on_the_page(centre) -> None:
    url, _ = centre
    s = login(url, "admin")
    page = s.get(f"{url}/register", timeout=10).text
    assert 'id="save-register"' in page
    form = {"serial": SERIAL, "lifecycle": "lost", "officer": "Li Wei", "unit": "Unit 7"}
    r = s.post(f"{url}/register", data={"csrf": csrf_of(page), **form}, timeout=10)
    assert r.status_code == 200 and r.url.endswith(f"/register?done={SERIAL}"), r.url
    assert f'data-serial="{SERIAL}"' in r.text and 'data-lifecycle="lost"' in r.text
    [entry] = s.get(f"{url}/register?format=json", timeout=10).json()["entries"]
    assert (entry["serial"], entry["lifecycle"], entry["unit"]) == (SERIAL, "lost", "Unit 7")
    assert entry["updated_by"] == "admin"
    bad = {"csrf": csrf_of(page), "serial": SERIAL, "lifecycle": "stolen"}
    assert s.post(f"{url}/register", data=bad, timeout=10).status_code == 400


def test_only_an_administrator_changes_the_register(centre) -> None:
    url, _ = centre
    form = {"serial": SERIAL, "lifecycle": "retired"}
    for who in ("sup", "view"):
        s = login(url, who)
        page = s.get(f"{url}/register", timeout=10).text
        assert 'id="save-register"' not in page, who
        r = s.post(f"{url}/register", data={"csrf": csrf_of(page), **form}, timeout=10)
        assert r.status_code == 403, who
    admin = login(url, "admin")
    assert admin.post(f"{url}/register", data=form, timeout=10).status_code == 403  # no CSRF
    assert admin.get(f"{url}/register?format=json", timeout=10).json()["entries"] == []


def test_the_stations_page_shows_store_space_backlog_clock_and_bays_with_words_and_shapes(
    tmp_path: Path, central_db: str
) -> None:
    from datetime import UTC, datetime

    from sync.wire import topics
    from sync.wire.chain import canonical
    from sync.wire.signing import sign_payload

    app = dashboard_app(tmp_path, database=central_db)
    keys = StationKeys(register({STATION: KEY}))
    consumer = MqttConsumer(app.state.catalog, ConsumerSettings(port=1), keys=keys)
    gib = 1024**3
    report = {
        "station": STATION,
        "at": datetime.now(UTC).isoformat(),
        "version": "0.1.0",
        "store": {"free_bytes": 3 * gib, "total_bytes": 64 * gib},  # 4.7 %: low
        "events": {"count": 7, "oldest_age_s": 2 * 3600.0},  # older than an hour: old
        # 9.6 min when sent: "10 min" on the page for the next 55 s
        "uploads": {"enabled": True, "count": 5, "bytes": 2 * gib, "oldest_age_s": 575.0},
        "clock": {"synchronised": False},
        "bays": {"total": 4, "in_use": 1},
    }
    topic = topics.health(STATION)
    for t, payload, _ in [status(KEY, "online")]:
        consumer.handle(t, payload)
    assert consumer.handle(topic, sign_payload(KEY, topic, canonical(report).encode())) == (
        "stored"
    )
    with serve_app(app) as url:
        s = login(url, "view")
        [row] = s.get(f"{url}/stations?format=json", timeout=10).json()["stations"]
        assert row["word"] == "degraded"
        assert row["reasons"] == ["store_low", "backlog_old", "clock_unsynchronised"]
        html = s.get(f"{url}/stations?lang=en", timeout=10).text
        for text in (
            "3.0 GiB free of 64.0 GiB (4.7 %)",
            "events waiting: 7, oldest 2.0 h",
            "uploads waiting: 5 (2.0 GiB), oldest 10 min",
            "1 in use of 4",
            "version 0.1.0",
        ):
            assert text in html, text
        for flag in ("store_low", "events_old", "clock_unsynchronised"):  # a shape beside the word
            assert f'data-flag="{flag}"><span class="shape" aria-hidden="true">▲</span>' in html
        assert 'data-flag="uploads_old"' not in html
        zh = s.get(f"{url}/stations?lang=zh-CN", timeout=10).text
        for text in ("空间不足", "积压过久", "未同步", "1 / 4 使用中"):
            assert text in zh, text
        overview = s.get(f"{url}/?lang=en", timeout=10).text
        assert 'id="attention"' in overview and "store space low" in overview
        assert "sync backlog old" in overview and "clock not synchronised" in overview
