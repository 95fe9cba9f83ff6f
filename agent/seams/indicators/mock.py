"""gpiozero's mock pins, observable: the fake of the GPIO seam, for `recdock run --simulate` only.

Chosen explicitly, never as a fallback (rule 7, docs/architecture.md). Tests use gpiozero's
``MockFactory`` directly and assert pin states over time.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any


def recording_pin_factory(path: Path) -> Any:
    """gpiozero's MockFactory whose pins also append every change to ``path`` (JSON lines).

    Only for ``recdock run --simulate``: a test or a curious user can watch the simulated
    LEDs and buzzer of a running station: ``{"t": <unix time>, "pin": 17, "state": 1}``
    (``pin`` is the BCM number).
    """
    from gpiozero.pins.mock import MockFactory, MockPin

    path.parent.mkdir(parents=True, exist_ok=True)
    sink = path.open("a", buffering=1, encoding="utf-8")
    lock = threading.Lock()

    class RecordingPin(MockPin):  # type: ignore[misc]
        def _change_state(self, value: Any) -> bool:
            changed = bool(super()._change_state(value))
            if changed:
                name = str(self.info.name)
                pin = int(name[4:]) if name.startswith("GPIO") and name[4:].isdigit() else name
                line = json.dumps({"t": time.time(), "pin": pin, "state": int(value)})
                with lock:
                    sink.write(line + "\n")
            return changed

    return MockFactory(pin_class=RecordingPin)
