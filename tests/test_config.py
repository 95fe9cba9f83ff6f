"""The station configuration: strict, one clear line per problem, documented key by key."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from agent.config import SHIPPED_PROFILES, Config, load_config
from agent.errors import EXIT_CONFIG, ConfigError
from tests.recorders import recdock

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "recdock.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_embedded_default_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECDOCK_CONFIG", raising=False)
    monkeypatch.setattr("agent.config.paths.DEFAULT_CONFIG_PATH", Path("/nonexistent/recdock.toml"))
    config = load_config(None)
    assert config == Config()
    assert config.station_id == "station-01"
    assert config.profiles.dirs == [SHIPPED_PROFILES]
    assert config.store.reserve_bytes > 0
    assert config.offload.keep_source is False


def test_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'station_id = "bay-7"\n')
    monkeypatch.setenv("RECDOCK_CONFIG", str(path))
    assert load_config(None).station_id == "bay-7"


def test_a_full_file_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
station_id = "pi-03"
[store]
reserve_bytes = 0
sm3 = true
buffer_bytes = 1048576
[offload]
keep_source = true
[bays]
"platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.1:1.0" = 1
[[devices]]
serial = "ABC123"
profile = "generic-msc"
officer = "100001"
unit = "交警一中队"
""",
    )
    config = load_config(path)
    assert config.store.sm3 and config.offload.keep_source
    assert config.registered()["ABC123"].unit == "交警一中队"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("statoin_id = 'x'\n", "statoin_id"),
        ("[store]\nreserve = 0\n", "store.reserve"),
        ("[checks]\nmin_battery = 50\n", "checks.min_battery"),
        (
            "[[devices]]\nserial = 'A'\nprofile = 'generic-msc'\nofficer_id = '1'\n",
            "devices.0.officer_id",
        ),
        ("[indicators.bays.1]\nled = 17\ncolour = 'red'\n", "indicators.bays.1.colour"),
        ("[nonsense]\nx = 1\n", "nonsense"),
    ],
)
def test_unknown_key_names_file_and_dotted_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"{path}: {key}: "), message
    assert "unknown key" in message


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("[store]\nreserve_bytes = 'lots'\n", "store.reserve_bytes", "integer"),
        ("[store]\nsm3 = 'perhaps'\n", "store.sm3", "boolean"),
        ("[store]\nbuffer_bytes = 0\n", "store.buffer_bytes", "greater than or equal"),
        ("[store]\nbuffer_bytes = 100000\n", "store.buffer_bytes", "multiple of 65536"),
        ("[gpio]\nfactory = 'pigpio'\n", "gpio.factory", "'lgpio' or 'mock'"),
        ("[checks]\nmin_battery_pct = 101\n", "checks.min_battery_pct", "less than or equal"),
        ("station_id = '../x'\n", "station_id", "letters, digits"),
        ("devices = 'ABC'\n", "devices", "list"),
    ],
)
def test_wrong_type_names_key_and_expectation(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert expected in message, message


def test_missing_required_key_in_a_device(tmp_path: Path) -> None:
    path = write(tmp_path, "[[devices]]\nserial = 'A'\n")
    with pytest.raises(ConfigError, match=r"devices\.0\.profile: required key is missing"):
        load_config(path)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, "station_id = \n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_cli_prints_one_line_per_problem_and_exits_78(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "statoin_id = 'x'\n[store]\nreserve = 1\nsm3 = 'maybe'\n[[devices]]\nserial = 'A'\n"
        "profile = 'generic-msc'\nofficr = '1'\n",
        "bad.toml",
    )
    result = recdock("catalog", home=tmp_path / "home", config=path)
    assert result.returncode == EXIT_CONFIG, result
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert len(lines) == 4, lines
    keys = {"statoin_id", "store.reserve", "store.sm3", "devices.0.officr"}
    for line in lines:
        assert line.startswith(f"recdock: {path}: "), line
    assert {line.split(": ")[2] for line in lines} == keys
    assert not (tmp_path / "home").exists(), "a bad config must stop before touching the home"


# -- docs/configuration.md lists every setting -------------------------------------------------


def _models_in(annotation: object) -> list[type[BaseModel]]:
    """The pydantic models inside a field annotation (list[X], dict[str, X], X | None...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            found.extend(_models_in(arg))
    return found


def settings_keys(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = []
    for name, info in model.model_fields.items():
        path = (*prefix, info.alias or name)
        keys.append(path)
        for sub in _models_in(info.annotation):
            keys.extend(settings_keys(sub, path))
    return keys


def test_settings_walk_reaches_nested_models() -> None:
    keys = settings_keys(Config)
    assert ("store", "reserve_bytes") in keys
    assert ("devices", "serial") in keys
    assert ("indicators", "bays", "led") in keys
    assert ("checks", "approved_firmware") in keys


def test_configuration_doc_mentions_every_setting() -> None:
    doc = REPO / "docs" / "configuration.md"
    assert doc.is_file(), f"{doc} is missing: it must list every setting with its default"
    text = doc.read_text(encoding="utf-8")
    missing = [
        ".".join(path)
        for path in settings_keys(Config)
        if not re.search(rf"(?<![A-Za-z0-9_]){re.escape(path[-1])}(?![A-Za-z0-9_])", text)
    ]
    assert not missing, f"docs/configuration.md does not mention: {missing}"
    sections = {path[0] for path in settings_keys(Config) if len(path) > 1}
    for section in sections:
        assert re.search(rf"\[\[?{section}\b|\b{section}\.", text), (
            f"docs/configuration.md has no [{section}] section"
        )
