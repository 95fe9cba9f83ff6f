"""`recdock-central --help` loads only what it shows: no web server, no MQTT, no station.

The centre's command line (central/cli.py, central/command.py) imports the app, the MQTT
consumer and the server only when the server runs; `--help` reads click and the options'
defaults. bench/bench_cli.py times it against the bare interpreter.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = {"fastapi", "uvicorn", "starlette", "paho", "pydantic", "requests", "jinja2", "argon2"}
HEAVY |= {"jsonschema", "fastjsonschema", "sqlite_utils"}


def _loaded(args: list[str]) -> set[str]:
    """The top-level packages a fresh interpreter holds after ``recdock-central ARGS``."""
    probe = (
        "import sys\n"
        "from central.cli import main\n"
        f"try:\n    main({args!r})\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "print(' '.join(sorted(m for m in sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--data" in done.stdout  # the probe did print the server's help
    return set(done.stderr.split())


@pytest.mark.parametrize("args", [["--help"], ["-h"]], ids=" ".join)
def test_central_help_imports_no_server_no_mqtt_and_nothing_of_the_station(args) -> None:
    loaded = _loaded(args)
    top = {m.split(".")[0] for m in loaded}
    assert top & HEAVY == set(), sorted(top & HEAVY)
    assert "agent" not in top  # the centre imports nothing of the station
    assert not {m for m in loaded if m.startswith(("sync.upload", "sync.mqtt"))}
    assert "central.app" not in loaded and "central.web" not in loaded
    assert "click" in top
