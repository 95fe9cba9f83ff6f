"""Firmware profiles: data, not code; strict like the config; first match wins."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.config import SHIPPED_PROFILES
from agent.errors import ProfileError
from agent.recorder.media import MediaFile, recorded_times
from agent.recorder.profiles import ProfileSet, load_profile
from agent.recorder.status import read_info

SHIPPED = sorted(SHIPPED_PROFILES.glob("*.toml"))

MINIMAL = """
name = "{name}"
[identity]
source = "usb_serial"
[match]
{match}
[media]
globs = ["**/*.MP4"]
"""


def write_profile(folder: Path, name: str, match: str = "", text: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text if text is not None else MINIMAL.format(name=name, match=match))
    return path


def test_the_reference_profiles_are_shipped() -> None:
    assert {p.stem for p in SHIPPED} >= {"simulated", "generic-msc", "gat947"}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_profile_loads(path: Path) -> None:
    profile = load_profile(path)
    assert profile.name == path.stem
    assert profile.media.globs
    assert profile.description


def test_the_shipped_folder_loads_as_a_set() -> None:
    names = [p.name for p in ProfileSet.load([SHIPPED_PROFILES]).profiles]
    assert names == sorted(p.stem for p in SHIPPED)


def test_an_installed_wheel_finds_its_profiles_with_the_default_config(tmp_path: Path) -> None:
    """Not only a checkout: a station installed with pip from a wheel has its profiles where
    the default profiles.dirs looks (a plain install without them exits 78 at start)."""
    # built from a copy: setuptools builds in the source tree, and a build/ left there by an
    # earlier build would hide what pyproject.toml leaves out
    root = tmp_path / "src"
    shutil.copytree(
        Path(__file__).resolve().parent.parent,
        root,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__"),
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", tmp_path / "wheel", root], check=True)
    (wheel,) = (tmp_path / "wheel").glob("recdock-*.whl")
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", target, wheel], check=True)
    probe = (
        "import agent; from agent.config import Config\n"
        "from agent.recorder.profiles import ProfileSet\n"
        "print(agent.__file__)\n"
        "print(' '.join(p.name for p in ProfileSet.load(Config().profiles.dirs).profiles))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0].startswith(str(target)), "the probe must import the installed copy"
    assert out[1].split() == sorted(p.stem for p in SHIPPED)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (
            'name = "typo"\n[identity]\nsource = "usb_serial"\n[media]\nglob = ["*.MP4"]\n',
            "media.glob",
        ),
        (
            'name = "typo"\n[identity]\nsource = "usb_serial"\n[media]\nglobs = ["*"]\n'
            "[match]\nregistred_only = true\n",
            "match.registred_only",
        ),
        (
            'name = "typo"\nmodel = "x"\n[identity]\nsource = "usb_serial"\n'
            '[media]\nglobs = ["*"]\n',
            "model",
        ),
    ],
)
def test_misspelled_key_names_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = write_profile(tmp_path, "typo", text=text)
    with pytest.raises(ProfileError) as info:
        ProfileSet.load([tmp_path])
    lines = str(info.value).splitlines()
    assert any(line.startswith(f"{path}: {key}: unknown key") for line in lines), lines


def test_name_must_equal_file_stem(tmp_path: Path) -> None:
    path = write_profile(tmp_path, "other", text=MINIMAL.format(name="mine", match=""))
    with pytest.raises(ProfileError, match="must equal the file name 'other'") as info:
        load_profile(path)
    assert str(path) in str(info.value)


def test_any_usb_without_register_is_refused(tmp_path: Path) -> None:
    path = write_profile(tmp_path, "loose", match="any_usb = true")
    with pytest.raises(ProfileError, match="registered_only"):
        load_profile(path)


def test_same_name_in_two_folders_is_refused(tmp_path: Path) -> None:
    write_profile(tmp_path / "a", "dup")
    write_profile(tmp_path / "b", "dup")
    with pytest.raises(ProfileError, match="also defined in"):
        ProfileSet.load([tmp_path / "a", tmp_path / "b"])


def test_missing_profile_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=rf"{tmp_path / 'nope'}: firmware profile folder"):
        ProfileSet.load([tmp_path / "nope"])


def test_gat947_reads_device_officer_and_start_from_the_name(tmp_path: Path) -> None:
    profile = ProfileSet.load([SHIPPED_PROFILES]).get("gat947")
    name = "1234567_100001_20261127083000_0001.MP4"
    fields = profile.name_fields(name)
    assert fields["device"] == "1234567"
    assert fields["officer"] == "100001"
    assert fields["seq"] == "0001"
    start = profile.start_from_name(name)
    assert start == datetime(2026, 11, 27, 8, 30, tzinfo=timezone(timedelta(hours=8)))
    # the identity of a recorder with such files comes from their names
    media_dir = tmp_path / "rec" / "DCIM"
    media_dir.mkdir(parents=True)
    (media_dir / name).write_bytes(b"x")
    media = [MediaFile(f"DCIM/{name}".encode(), 1, 0)]
    info = read_info(tmp_path / "rec", profile, media=media)
    assert (info.serial, info.officer) == ("1234567", "100001")
    assert recorded_times(profile, media[0])[0] == start
    assert profile.start_from_name("holiday.MP4") is None


def test_match_usb_needs_a_registered_serial_for_registered_only(tmp_path: Path) -> None:
    write_profile(tmp_path, "a-model", match='usb = [{vendor_id = "1D6B", product_id = "0104"}]')
    write_profile(tmp_path, "b-generic", match="any_usb = true\nregistered_only = true")
    profiles = ProfileSet.load([tmp_path])
    # exact ids win whatever the serial; vendor ids are case-insensitive
    assert profiles.match_usb("1d6b", "0104", None, set()).name == "a-model"
    # an unknown stick: matched only when its serial is registered (rule 5)
    assert profiles.match_usb("0781", "5581", "S123", set()) is None
    assert profiles.match_usb("0781", "5581", None, {"S123"}) is None
    assert profiles.match_usb("0781", "5581", "S123", {"S123"}).name == "b-generic"


def test_match_usb_first_match_wins(tmp_path: Path) -> None:
    ids = 'usb = [{vendor_id = "1209", product_id = "0001"}]'
    write_profile(tmp_path / "one", "first", match=ids)
    write_profile(tmp_path / "two", "second", match=ids)
    assert (
        ProfileSet.load([tmp_path / "one", tmp_path / "two"])
        .match_usb("1209", "0001", None, set())
        .name
        == "first"
    )
    assert (
        ProfileSet.load([tmp_path / "two", tmp_path / "one"])
        .match_usb("1209", "0001", None, set())
        .name
        == "second"
    )


def test_shipped_simulated_matches_its_usb_ids_and_generic_needs_registration() -> None:
    profiles = ProfileSet.load([SHIPPED_PROFILES])
    assert profiles.match_usb("1209", "0001", None, set()).name == "simulated"
    assert profiles.match_usb("abcd", "ef01", "X1", set()) is None
    found = profiles.match_usb("abcd", "ef01", "X1", {"X1"})
    assert found is not None and found.match.registered_only


def test_match_root_by_marker_file(tmp_path: Path) -> None:
    profiles = ProfileSet.load([SHIPPED_PROFILES])
    root = tmp_path / "rec"
    root.mkdir()
    assert profiles.match_root(root) is None
    (root / "DEVICE.JSN").write_text("{}")
    assert profiles.match_root(root).name == "simulated"


def test_match_root_not_through_a_symlinked_marker(tmp_path: Path) -> None:
    profiles = ProfileSet.load([SHIPPED_PROFILES])
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    root = tmp_path / "rec"
    root.mkdir()
    os.symlink(outside, root / "DEVICE.JSN")
    assert profiles.match_root(root) is None


def test_match_root_not_a_folder_named_like_the_marker(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    (root / "DEVICE.JSN").mkdir(parents=True)
    assert ProfileSet.load([SHIPPED_PROFILES]).match_root(root) is None


def test_the_simulated_model_never_matches_on_a_real_dock() -> None:
    """1209:0001 is a public test id: only `recdock run --simulate` may match it (rule 7)."""
    from agent.config import SHIPPED_PROFILES
    from agent.recorder.profiles import ProfileSet

    profiles = ProfileSet.load([SHIPPED_PROFILES])
    assert profiles.match_usb("1209", "0001", None, set()).name == "simulated"
    assert profiles.for_real_dock().match_usb("1209", "0001", None, set()) is None
    assert "generic-msc" in {p.name for p in profiles.for_real_dock().profiles}
