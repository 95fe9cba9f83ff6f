"""The centre the fleet talks to, and what the bench reads of it while the fleet publishes.

This module keeps the running recdock-central (a process: tests/central_server.py's
``live_central``, with the MQTT consumer on the bench's broker, the fleet's enrolled keys, a
reader token for the JSON API and the dashboard's users), or several of them as one worker
group on one data folder (each its own port and MQTT client id: docs/central.md, "Several
workers"), and the three observers of a phase, which take the workers in turn:

* the **sampler** reads the catalog's counts (``GET /api/health``: its ``events``) once a
  second: events ingested a second;
* the **prober** follows each probe (a docking's ``checks`` event, bench/fleet.py): from the
  moment its docking was handed to the station's client until the centre holds it, in the
  JSON API (``GET /api/stations/<id>/chain``: the complete head has reached its seq) and on
  the dashboard (``/recorders/<serial>``, the HTML page, shows the event's time);
* the **page timer** fetches the dashboard's overview, recorders, stations and a fault's page,
  each as HTML and as its JSON (``?format=json``, the same read functions without the
  template: the baseline in the same run), alternating which goes first, a round every
  ``page_every`` seconds (a few people watching, not a load test of the pages).
"""

from __future__ import annotations

import contextlib
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests
from fleet import Probe, SimStation

from agent.catalog import audit
from sync.wire.signing import public_key_text
from tests.central_server import live_central, wait_for
from tests.dashboard_tools import login, make_users
from tests.mosquitto import CENTRAL

CENTRAL_BIN = Path(sys.executable).with_name("recdock-central")


def centre_options() -> str:
    """``recdock-central --help`` as it stands (what options it accepts)."""
    done = subprocess.run([str(CENTRAL_BIN), "--help"], capture_output=True, text=True, check=True)
    return done.stdout


def check_database(database: str | None) -> None:
    """A clear stop, before anything is built, when recdock-central does not take
    ``--database`` (the PostgreSQL catalog lands in its own branch)."""
    if database is not None and "--database" not in centre_options():
        raise SystemExit("recdock-central does not accept --database yet (see "
                         "`recdock-central --help`); this bench passes --database "
                         f"{database} to it once it does")  # fmt: skip


@contextlib.contextmanager
def catalog_database(database: str | None) -> Iterator[list[str]]:
    """recdock-central's ``--database``: none (SQLite in the data folder), a URL passed on
    as it is, or ``postgresql``: a throwaway cluster started as the tests start theirs
    (tests/postgres.py: initdb and pg_ctl, a Unix socket only, as the postgres user when run
    as root), but durable (fsync and synchronous commit on, as the SQLite catalog's
    ``synchronous=FULL``), removed at the end."""
    if database != "postgresql":
        yield [] if database is None else ["--database", database]
        return
    from tests.postgres import remove, start_cluster

    cluster = start_cluster(durable=True)
    try:
        yield ["--database", cluster.fresh_database()]
    finally:
        remove(cluster)


GROUP = "bench"  # the workers' --worker-group when there are several


@dataclass
class Worker:
    url: str
    session: requests.Session  # the dashboard's, logged in at this worker


@dataclass
class Centre:
    """One recdock-central, or a worker group sharing one data folder and catalog: any
    worker answers for all of it; ``via`` picks one to spread the observers' requests."""

    workers: list[Worker]
    token: str

    @property
    def url(self) -> str:
        return self.workers[0].url

    def via(self, n: int) -> Worker:
        return self.workers[n % len(self.workers)]

    def api(self, path: str, via: int = 0) -> dict:
        r = requests.get(self.via(via).url + path, timeout=60,
                         headers={"Authorization": f"Bearer {self.token}"})  # fmt: skip
        r.raise_for_status()
        return r.json()

    def total(self, path: str) -> int:
        """A paged list's ``X-Total-Count``."""
        r = requests.get(self.url + path + "?limit=1", timeout=60,
                         headers={"Authorization": f"Bearer {self.token}"})  # fmt: skip
        r.raise_for_status()
        return int(r.headers["X-Total-Count"])

    def events(self) -> int:
        return int(requests.get(self.url + "/api/health", timeout=60).json()["catalog"]["events"])

    def consumers(self) -> list[dict]:
        """Each worker's own consumer counts (``/api/health``'s ``mqtt``): how the group
        shared the messages."""
        return [requests.get(w.url + "/api/health", timeout=60).json().get("mqtt", {})
                for w in self.workers]  # fmt: skip


def _subscribed(url: str) -> bool:
    return bool(requests.get(url + "/api/health", timeout=10).json()["mqtt"]["subscribed"])


@contextlib.contextmanager
def centre(folder: Path, broker, stations: list[SimStation], extra: list[str],  # noqa: ANN001
           workers: int = 1) -> Iterator[Centre]:  # fmt: skip
    """recdock-central with its consumer on ``broker``, every station enrolled; with
    ``workers`` above 1, that many in one worker group (docs/central.md, "Several workers"):
    each its own port and MQTT client id (so MQTT 5, the shared subscription), one data
    folder, the same keys, tokens and users."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = folder / "station-keys.toml"
    keys.write_text("[stations]\n" + "".join(f'"{s.name}" = "{public_key_text(s.key)}"\n'
                                             for s in stations))  # fmt: skip
    token = secrets.token_urlsafe(32)
    (folder / "api-tokens.toml").write_text(f'[readers]\nbench = "{token}"\n')
    tls = broker.tls(CENTRAL)
    args = ["--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port),
            "--mqtt-ca", str(tls.ca_file), "--mqtt-cert", str(tls.cert_file),
            "--mqtt-key", str(tls.key_file), "--station-keys", str(keys),
            "--api-tokens", str(folder / "api-tokens.toml"),
            "--users", str(make_users(folder / "users.toml")), "--dashboard-plain-http",
            *extra]  # fmt: skip
    with contextlib.ExitStack() as stack:
        urls = []
        for n in range(workers):
            own = ["--worker-group", GROUP, "--mqtt-client-id", f"recdock-central-{n}"]
            log = f"worker-{n}.log"
            if workers == 1:  # the single centre, as before the workers: MQTT 3.1.1
                own, log = [], "recdock-central.log"
            urls.append(stack.enter_context(live_central(folder / "data", *args, *own,
                                                         timeout=60, log_name=log)))  # fmt: skip
        for url in urls:
            wait_for(lambda url=url: _subscribed(url), 60, interval=0.1)
        yield Centre([Worker(url, login(url, "view")) for url in urls], token)


def wait_events(c: Centre, total: int, timeout: float) -> float:
    """Seconds until the centre holds ``total`` events (its catalog's count)."""
    t0 = time.monotonic()
    while (n := c.events()) < total:
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"the centre holds {n} of {total} events after {timeout:.0f} s")
        time.sleep(0.1)
    return time.monotonic() - t0


def verify(c: Centre, stations: list[SimStation]) -> dict:
    """What the centre stored against what the fleet sent: every station's chain complete to
    its catalog's head (same seq, same hash, state ok), one report per recorder, the faults
    still open at the stations open at the centre, nothing rejected, no alert. Problems are
    listed (the bench prints them; the smoke test fails on them)."""
    problems: list[str] = []
    for st in stations:
        seq, digest = audit.head(st.catalog)
        chain = c.api(f"/api/stations/{st.name}/chain")
        if (chain["head_seq"], chain["head_hash"], chain["state"]) != (seq, digest, "ok"):
            problems.append(f"{st.name}: the centre's chain {chain} is not the station's {seq}")
    recorders = sum(len(st.recorders) for st in stations)
    faults = sum(r.fault_open for st in stations for r in st.recorders)
    held = {"recorders": c.total("/api/recorders"), "open faults": c.total("/api/faults")}
    for name, want in (("recorders", recorders), ("open faults", faults)):
        if held[name] != want:
            problems.append(f"the centre holds {held[name]} {name}, the fleet has {want}")
    counts = c.api("/api/health")["catalog"]
    for name in ("rejected", "security_alerts", "broken_chains"):
        if counts[name]:
            problems.append(f"the centre counts {counts[name]} {name}")
    return {"counts": counts, **held, "problems": problems}


# -- the observers of a phase ----------------------------------------------------------------


@dataclass
class Observed:
    samples: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, events)
    lag_api: list[float] = field(default_factory=list)
    lag_html: list[float] = field(default_factory=list)
    unseen: int = 0
    pages: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    page_errors: list[str] = field(default_factory=list)  # answers other than 2xx, not timed


@dataclass(eq=False)
class Pending:
    """A probe not yet on the dashboard, followed through worker ``via`` (the catalog is
    shared: whichever worker stored the event, every worker shows it)."""

    probe: Probe
    handed: float
    via: int
    api_at: float | None = None


class Observers:
    """The sampler, the prober and the page timer, each a thread, until :meth:`stop`. Probes
    and page rounds take the workers in turn."""

    def __init__(self, c: Centre, pages: dict[str, str], page_every: float = 2.0) -> None:
        self.c = c
        self.page_every = page_every
        self.page_paths = pages
        self.seen = Observed()
        self._probes: list[Pending] = []
        self._count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=f, daemon=True)
                         for f in (self._sample, self._probe, self._pages)]  # fmt: skip

    def start(self) -> Observers:
        for t in self._threads:
            t.start()
        return self

    def probe(self, probe: Probe, handed_at: float) -> None:
        with self._lock:
            self._probes.append(Pending(probe, handed_at, self._count))
            self._count += 1

    def settle(self, timeout: float) -> None:
        """Wait until every probe is seen on the dashboard (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._probes:
                    return
            time.sleep(0.05)

    def stop(self) -> Observed:
        self._stop.set()
        for t in self._threads:
            t.join(120)
        self.seen.unseen = len(self._probes)
        return self.seen

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.seen.samples.append((time.monotonic(), self.c.events()))
            self._stop.wait(1.0)

    def _probe(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                pending = list(self._probes)
            for item in pending:
                self._check(item)
            self._stop.wait(0.05)

    def _check(self, item: Pending) -> None:
        probe, worker = item.probe, self.c.via(item.via)
        if item.api_at is None:
            chain = self.c.api(f"/api/stations/{probe.station}/chain", via=item.via)
            if (chain.get("head_seq") or 0) < probe.seq:
                return
            item.api_at = time.monotonic()
            self.seen.lag_api.append(item.api_at - item.handed)
        html = worker.session.get(f"{worker.url}/recorders/{probe.serial}", timeout=60).text
        if f'datetime="{probe.at}"' in html:
            self.seen.lag_html.append(time.monotonic() - item.handed)
            with self._lock:
                self._probes.remove(item)

    def _pages(self) -> None:
        rep = 0
        while not self._stop.is_set():
            worker = self.c.via(rep // 2)  # each worker twice: HTML first, then JSON first
            for name, path in self.page_paths.items():
                order = ("html", "json") if rep % 2 == 0 else ("json", "html")
                for kind in order:
                    joiner = "&" if "?" in path else "?"
                    url = worker.url + path + (f"{joiner}format=json" if kind == "json" else "")
                    t0 = time.perf_counter()
                    answer = worker.session.get(url, timeout=120)
                    took = time.perf_counter() - t0
                    if not answer.ok:  # timed only when it is the page asked for
                        self.seen.page_errors.append(f"{path} ({kind}): {answer.status_code}")
                        continue
                    self.seen.pages.setdefault((name, kind), []).append(took)
            rep += 1
            self._stop.wait(self.page_every)  # a round every few seconds, as people look


def quantiles(xs: list[float]) -> tuple[float, float, float]:
    """Median, 95th percentile and maximum (nan when empty)."""
    if not xs:
        return (float("nan"),) * 3
    xs = sorted(xs)
    return statistics.median(xs), xs[min(len(xs) - 1, int(0.95 * len(xs)))], xs[-1]
