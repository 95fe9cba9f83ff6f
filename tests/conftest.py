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
