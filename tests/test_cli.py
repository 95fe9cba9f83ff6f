"""The command line: every command and option explains itself (sqlite-utils' help test)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from agent.cli.main import cli
from tests.recorders import recdock


def walk(command: click.Command, path: tuple[str, ...] = ("recdock",)):
    """Every command, as a user reaches it (commands load lazily: ask the group)."""
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, f"{' '.join(path)} {name}: listed but not found"
            yield from walk(sub, (*path, name))


def missing_help(root: click.Command) -> list[str]:
    """Every command without help text, and every option without help, by its path."""
    missing: list[str] = []
    for path, command in walk(root):
        where = " ".join(path)
        if not (command.help or "").strip():
            missing.append(f"{where}: command has no help")
        for param in command.params:
            if isinstance(param, click.Option) and not (param.help or "").strip():
                missing.append(f"{where} {param.opts[0]}: option has no help")
    return missing


COMMANDS = [path for path, _ in walk(cli)]


def test_the_documented_commands_exist() -> None:
    names = {" ".join(p[1:]) for p in COMMANDS}
    assert {"offload", "catalog", "verify", "faults", "simulate", "simulate recorder"} <= names


def test_every_command_and_option_has_help() -> None:
    assert missing_help(cli) == []


def test_the_check_catches_a_command_without_help() -> None:
    @click.group(help="a group")
    def group() -> None: ...

    @group.command()
    @click.option("--flag", is_flag=True)
    def helpless() -> None:
        pass

    @group.command(help="documented")
    @click.option("--fine", help="has help")
    def documented(fine: str) -> None:
        pass

    assert missing_help(group) == [
        "recdock helpless: command has no help",
        "recdock helpless --flag: option has no help",
    ]


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_help_runs(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path[1:], "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_recdock_help_as_installed(tmp_path) -> None:
    result = recdock("--help", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    for name in ("offload", "catalog", "verify", "simulate"):
        assert name in result.stdout
    assert "--home" in result.stdout and "--config" in result.stdout


def test_unknown_command_is_a_usage_error(tmp_path) -> None:
    result = recdock("offlaod", home=tmp_path / "home")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_an_unexpected_error_is_one_line_and_exit_70(tmp_path, monkeypatch) -> None:
    """A bug (any exception that is not a RecdockError) is exit 70 (EX_SOFTWARE) with one
    line saying so, not a traceback and exit 1; -vv logs the traceback."""
    from agent.catalog import Catalog, open_catalog
    from agent.config import Config

    home = tmp_path / "home"
    open_catalog(home, Config().station_id).close()
    assert CliRunner().invoke(cli, ["--home", str(home), "catalog"]).exit_code == 0

    def broken(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(Catalog, "stream", broken)
    result = CliRunner().invoke(cli, ["--home", str(home), "catalog"])
    assert result.exit_code == 70, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "ZeroDivisionError: division by zero" in lines[0] and "-vv" in lines[0]


@pytest.fixture(scope="module")
def big_home(tmp_path_factory: pytest.TempPathFactory):
    """A home whose catalog prints far more than a pipe holds (64 KiB)."""
    from tests.recorders import BIN

    base = tmp_path_factory.mktemp("pipes")
    home = base / "home"
    rec = base / "rec"
    made = recdock(
        "simulate",
        "recorder",
        str(rec),
        "--serial",
        "PIPE001",
        "--files",
        "300",
        "--size",
        "64",
        home=home,
    )
    assert made.returncode == 0, made.stderr
    done = recdock("offload", str(rec), home=home)
    assert done.returncode == 0, done.stderr
    assert BIN.exists()
    return home


@pytest.mark.parametrize(
    "args",
    [("catalog", "--json"), ("catalog",), ("faults", "--all", "--json"), ("status",), ("--help",)],
    ids=" ".join,
)
def test_a_reader_that_closes_early_ends_the_command_quietly_with_0(big_home, args) -> None:
    """`recdock catalog --json | head -1`: like coreutils, no error, exit 0."""
    import subprocess

    from tests.recorders import BIN

    proc = subprocess.Popen(
        [str(BIN / "recdock"), "--home", str(big_home), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader goes away, as head does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert first and err == ""
    if args == ("catalog", "--json"):
        # the test only proves something if the output did not fit in the pipe
        full = recdock(*args, home=big_home)
        assert len(full.stdout) > 128 * 1024, len(full.stdout)


@pytest.mark.parametrize("args", [("--help",), ("status", "--json")], ids=" ".join)
def test_help_and_status_import_nothing_they_do_not_use(tmp_path, args) -> None:
    """No GPIO, MQTT, HTTP server or sqlite-utils for `recdock --help` and `recdock status`:
    on a Pi each costs a noticeable part of a second (bench/bench_cli.py)."""
    import subprocess
    import sys

    home = tmp_path / "home"
    from agent.catalog import open_catalog
    from agent.config import Config

    open_catalog(home, Config().station_id).close()
    probe = (
        "import sys\n"
        "from agent.cli.main import cli\n"
        f"try:\n    cli({['--home', str(home), *args]!r}, prog_name='recdock')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stderr.split())
    heavy = {"gpiozero", "paho", "fastapi", "uvicorn", "starlette", "sqlite_utils", "requests"}
    heavy |= {"tqdm"}  # verify's progress bar
    assert loaded & heavy == set(), sorted(loaded & heavy)
    assert "click" in loaded  # the probe did run the command line


@pytest.mark.parametrize("args", [("status",), ("status", "--json")], ids=" ".join)
def test_status_on_a_home_where_the_station_never_ran_says_so_and_exits_0(tmp_path, args) -> None:
    import json

    home = tmp_path / "home"
    config = tmp_path / "recdock.toml"
    config.write_text("[indicators.bays.1]\nled = 17\n[indicators.bays.2]\nled = 27\n")
    done = recdock(*args, home=home, config=config)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    if "--json" in args:
        snap = json.loads(done.stdout)
        assert snap["catalog_found"] is False and snap["daemon"]["running"] is False
        assert [(b["bay"], b["state"], b["led"]) for b in snap["bays"]] == [
            (1, "idle", "idle"),
            (2, "idle", "idle"),
        ]
        assert snap["sync_backlog"] == 0 and snap["faults"] == []
    else:
        assert "has not run here yet" in done.stdout.splitlines()[0], done.stdout
    assert not home.exists() or not (home / "catalog.db").exists()  # status creates nothing
