"""The station clock's contract: one suite, run against the real clock and the simulated one.

Every test here is written once against :class:`agent.seams.clock.StationClock` and runs against

* ``real``: :class:`~agent.seams.clock.system.SystemClock` as this machine has it (adjtimex(2));
* ``real-adjtimex-refused``: the same clock where the kernel refuses even the read-only
  adjtimex call (a sandbox, ``ProtectClock=yes``), so it asks ``timedatectl``, as installed here;
* ``fake``, ``fake-not-synchronised``: :class:`~agent.seams.clock.simulated.SimulatedClock` with
  offset 0, told it is synchronised, or not.

All are built by :func:`~agent.seams.clock.make_clock`, as the station builds them. The
contract: ``now()`` is timezone-aware UTC and (offset 0) the real time; ``synchronised()``
answers a bool and never raises; ``describe()`` is one line naming the clock, and a simulated
clock says SIMULATED (rule 7: a fake is never silent). ``make_clock`` has no default kind and
no fallback: an unknown kind, or an option a clock would ignore, is refused.

Which clock is synchronised, and how adjtimex or timedatectl decide it, is the real clock's own
business: tests/test_clock.py shows it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

import agent.seams.clock.system as clockmod
from agent.seams.clock import StationClock, make_clock
from agent.seams.clock.system import AdjtimexUnavailable

#: how far now() may be from the real time: the calls around it, on a loaded machine
SLACK = timedelta(seconds=2)


def refuse_adjtimex() -> tuple[int, int]:
    raise AdjtimexUnavailable(1, "adjtimex refused: EPERM")


@pytest.fixture(params=["real", "real-adjtimex-refused", "fake", "fake-not-synchronised"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def clock(kind: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[StationClock]:
    if kind.startswith("fake"):
        yield make_clock("simulated", synchronised=kind == "fake")
        return
    if kind == "real-adjtimex-refused":
        monkeypatch.setattr(clockmod, "read_adjtimex", refuse_adjtimex)
    yield make_clock("system")


def test_now_is_timezone_aware_utc(clock: StationClock) -> None:
    now = clock.now()
    assert now.tzinfo is not None, "a naive datetime is no station time"
    assert now.utcoffset() == timedelta(0)


def test_now_is_the_real_time(clock: StationClock) -> None:
    before = datetime.now(UTC)
    now = clock.now()
    after = datetime.now(UTC)
    assert before - SLACK <= now <= after + SLACK


def test_synchronised_answers_a_bool_every_time_it_is_asked(clock: StationClock) -> None:
    answers = [clock.synchronised() for _ in range(3)]
    assert all(type(answer) is bool for answer in answers), answers


def test_describe_is_one_line_naming_the_clock_before_and_after_asking(
    clock: StationClock, kind: str
) -> None:
    lines = [clock.describe()]
    clock.synchronised()
    lines.append(clock.describe())
    for line in lines:
        assert line.strip() and "\n" not in line, repr(line)
        if kind.startswith("fake"):
            assert "SIMULATED" in line, f"a simulated clock must say so: {line!r}"
        else:
            assert line.startswith("system clock"), line
            assert "simulated" not in line.lower(), f"the real clock must not look fake: {line!r}"


def test_describe_after_asking_says_how_synchronisation_was_decided(
    clock: StationClock, kind: str
) -> None:
    answer = clock.synchronised()
    line = clock.describe()
    if kind.startswith("fake"):
        assert ("not synchronised" in line) is (not answer), line  # as it was told
    elif kind == "real-adjtimex-refused":
        assert "adjtimex refused" in line and "timedatectl" in line, line
    else:
        assert "adjtimex" in line or "timedatectl" in line, line  # a sandbox may refuse it


# -- make_clock: no default, no fallback -------------------------------------------------------


def test_make_clock_has_no_default_kind() -> None:
    with pytest.raises(TypeError):
        make_clock()  # type: ignore[call-arg]


@pytest.mark.parametrize("kind", ["", "ntp", "System", "SIMULATED", "sim", None])
def test_an_unknown_clock_kind_is_refused_not_replaced_by_another_clock(kind: object) -> None:
    with pytest.raises(ValueError, match="unknown station clock kind"):
        make_clock(kind)  # type: ignore[arg-type]


def test_the_system_clock_refuses_options_rather_than_ignoring_them() -> None:
    with pytest.raises(TypeError, match="takes no options"):
        make_clock("system", synchronised=True)


def test_make_clock_builds_the_clock_of_the_kind_asked_for() -> None:
    assert "SIMULATED" in make_clock("simulated").describe()
    assert "SIMULATED" not in make_clock("system").describe()
    told = make_clock("simulated", synchronised=False)
    assert told.synchronised() is False
