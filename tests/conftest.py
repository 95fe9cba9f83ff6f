from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.recorders import HAVE_FUSEFAT

# In CI (CI=true) a missing fusefat is a failure, not a skip: .ci/run installs it.
needs_fusefat = pytest.mark.skipif(
    not HAVE_FUSEFAT and not os.environ.get("CI"), reason="fusefat or /dev/fuse not available"
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


# -- the centre's catalog on both databases (tests/postgres.py) --------------------------------

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_cluster():
    """One throwaway PostgreSQL cluster for the test session; started on first use. A cluster
    that cannot start fails the tests that need it (nothing skips)."""
    from tests import postgres

    cluster = postgres.start_cluster()
    yield cluster
    postgres.remove(cluster)


@pytest.fixture(params=BACKENDS)
def central_db(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    """Where a test's central catalog lives, on each backend in turn: a SQLite file under
    ``tmp_path``, or a fresh PostgreSQL database (a copy of the migrated template), dropped
    at the test's end."""
    if request.param == "sqlite":
        yield str(tmp_path / "central.db")
        return
    cluster = request.getfixturevalue("postgres_cluster")
    url = cluster.fresh_database()
    yield url
    cluster.drop_database(url)
