"""A recorder's own "important" mark becomes a hold at offload (rule clause 12): a profile's
``media.important_globs`` names the marked files; each is held (reason ``marked_on_recorder``,
origin ``recorder``) in the transaction that records it (rule 3, docs/architecture.md)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from agent.catalog import holds, open_catalog, recordings
from agent.cli.main import cli
from tests.recorders import make_folder_recorder

REPO = Path(__file__).resolve().parent.parent


def marking_profile(folder: Path) -> Path:
    """The simulated model, as a model that marks important files with an ``IMP_`` prefix."""
    folder.mkdir()
    text = (REPO / "firmware_profiles" / "simulated.toml").read_text()
    text = text.replace('name = "simulated"', 'name = "marking"')
    text = text.replace("[media]\n", '[media]\nimportant_globs = ["**/IMP_*"]\n', 1)
    (folder / "marking.toml").write_text(text)
    return folder


def test_a_file_the_recorder_marked_is_held_when_it_is_stored(tmp_path: Path) -> None:
    profiles = marking_profile(tmp_path / "profiles")
    config = tmp_path / "recdock.toml"
    config.write_text(f'[store]\nreserve_bytes = 0\n[profiles]\ndirs = ["{profiles}"]\n')
    rec = make_folder_recorder(tmp_path / "rec", "MARK01", files=3, size=10_000)
    media = sorted((rec / "DCIM").rglob("*.MP4"))
    marked = media[1].rename(media[1].with_name("IMP_" + media[1].name))
    home = tmp_path / "home"
    result = CliRunner().invoke(
        cli,
        ["--home", str(home), "--config", str(config), "offload", str(rec), "--profile", "marking"],
    )
    assert result.exit_code == 0, result.output
    cat = open_catalog(home, "", create=False)
    placed = holds.listing(cat)
    assert [(h["scope"], h["reason"], h["origin"]) for h in placed] == [
        ("recording", "marked_on_recorder", "recorder")
    ]
    held = holds.recordings_held_by(cat, placed[0]["id"])
    assert [r["source_path"] for r in held] == [marked.relative_to(rec).as_posix()]
    # the hold is audited right after the file it holds, in the same transaction
    rows = cat.query("SELECT kind, subject, data FROM audit ORDER BY seq")
    at = next(i for i, r in enumerate(rows) if r["kind"] == "hold.placed")
    assert rows[at - 1]["kind"] == "file.stored"
    assert rows[at - 1]["subject"] == held[0]["store_path"]
    assert json.loads(rows[at]["data"])["recording_id"] == held[0]["id"]
    assert len(recordings.listing(cat)) == 3
