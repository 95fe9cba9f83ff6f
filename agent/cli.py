"""The `recdock` command line: a thin click layer over the agent library.

A user sees one clear line per problem, not a traceback; the log keeps the
traceback (``-vv`` shows it). Exit codes are in agent/errors.py and
docs/operations.md.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from agent import errors
from agent.catalog import Catalog, open_catalog
from agent.checks_cli import check_command
from agent.config import Config, load_config, resolve_home
from agent.errors import RecdockError
from agent.profiles import Profile, ProfileSet
from agent.signals import SignalRelay

log = logging.getLogger("recdock")


@dataclass
class Ctx:
    home: Path
    config: Config
    verbose: int

    def catalog(self, *, create: bool = True) -> Catalog:
        return open_catalog(self.home, self.config.station_id, create=create)

    def profiles(self) -> ProfileSet:
        return ProfileSet.load(self.config.profiles.dirs)


def setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


class RecdockGroup(click.Group):
    """Turns RecdockError into one clear line and its exit code, and any other exception (a
    bug) into one line and exit 70; -vv logs the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RecdockError as exc:
            log.debug("error", exc_info=True)
            for line in str(exc).splitlines():
                click.echo(f"recdock: {line}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # click's own: usage errors, --help, Ctrl-C at a prompt
        except Exception as exc:
            log.debug("unexpected error", exc_info=True)
            click.echo(
                f"recdock: unexpected error (a bug): {type(exc).__name__}: {exc}; run it again "
                "with -vv for the traceback and report it",
                err=True,
            )
            ctx.exit(errors.EXIT_SOFTWARE)


@click.group(cls=RecdockGroup)
@click.option(
    "--home",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Data folder: catalog, store, logs (default $RECDOCK_HOME or /var/lib/recdock).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML configuration (default $RECDOCK_CONFIG, /etc/recdock/recdock.toml, "
    "else the embedded default).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, config_path: Path | None, verbose: int) -> None:
    """recdock: the station software for docking body-worn recorders."""
    setup_logging(verbose)
    try:
        config = load_config(config_path)
    except RecdockError as exc:
        for line in str(exc).splitlines():
            click.echo(f"recdock: {line}", err=True)
        ctx.exit(exc.exit_code)
    ctx.obj = Ctx(resolve_home(home), config, verbose)


def pick_profile(c: Ctx, source: Path, name: str | None) -> Profile:
    profiles = c.profiles()
    if name:
        return profiles.get(name)
    found = profiles.match_root(source)
    if found is None:
        raise errors.ProfileError(
            f"{source}: no firmware profile recognises this recorder (no marker file); "
            "pass --profile NAME (see firmware_profiles/)"
        )
    return found


@cli.command()
@click.argument("source", type=click.Path(path_type=Path, file_okay=False))
@click.option("--profile", "profile_name", help="Firmware profile to read the recorder with.")
@click.option(
    "--keep-source", is_flag=True, help="Leave every recording on the recorder after the copy."
)
@click.option("--serial", help="Device serial, for profiles that take it from USB (generic-msc).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def offload(
    c: Ctx,
    source: Path,
    profile_name: str | None,
    keep_source: bool,
    serial: str | None,
    as_json: bool,
) -> None:
    """Offload one mounted recorder (a folder) into the store.

    Exit 0 only when every media file on the recorder is verified in the store.
    """
    from agent.offload import Offloader

    stop = threading.Event()
    if not c.verbose:
        # one line per problem: what the report below prints is not logged again
        for handler in logging.getLogger().handlers:
            handler.addFilter(lambda r: not getattr(r, "recdock_reported", False))
    profile = pick_profile(c, source, profile_name)
    catalog = c.catalog()
    bar = None
    progress = None
    if sys.stdout.isatty() and not as_json:
        from agent.recorder import list_media

        media, _ = list_media(source, profile)
        total = sum(m.size for m in media)
        bar = click.progressbar(length=total, label="offloading", show_pos=False, width=30)
        bar.__enter__()
        progress = bar.update
    # SIGTERM (systemd stop, kill) is a clean stop: the file in flight is abandoned
    # (its temp file removed), what is verified is catalogued, the session ends. Set from
    # a relay thread, never in the handler itself (agent/signals.py)
    relay = SignalRelay(stop.set, [signal.SIGTERM])
    try:
        report = Offloader(
            c.config,
            c.home,
            catalog,
            keep_source=True if keep_source else None,
            progress=progress,
            stop=stop,
        ).run(source, profile, serial=serial)
    finally:
        relay.close()
        if bar is not None:
            bar.__exit__(None, None, None)
    d = report.as_dict()
    if as_json:
        click.echo(json.dumps(d, indent=2, ensure_ascii=False))
    else:
        click.echo(
            f"session {report.session_id}: device {report.device_serial}: "
            f"{d['stored']} stored, {d['already']} already in the store, {d['failed']} failed, "
            f"{d['removed']} removed from the recorder"
            + (f" (kept: {report.source_kept_reason})" if report.source_kept_reason else "")
        )
        for late in d["late"]:
            click.echo(f"late: {late['source_path']}: {late['age_hours']} hours old at docking")
    for line in report.failures:
        click.echo(f"recdock: {line}", err=True)
    if not report.ok:
        # the error that stopped the offload decides: 73 store full, 69 recorder gone, 74 I/O
        stopped_by = report.exception
        code = stopped_by.exit_code if isinstance(stopped_by, RecdockError) else None
        sys.exit(code or errors.EXIT_FAILED)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one recording per line.")
@click.pass_obj
def catalog(c: Ctx, as_json: bool) -> None:
    """List catalogued recordings."""
    cat = c.catalog(create=False)
    rows = cat.recordings()
    if as_json:
        for r in rows:
            click.echo(json.dumps(r, ensure_ascii=False, sort_keys=True))
        return
    if not rows:
        click.echo("no recordings catalogued")
        return
    click.echo(
        f"{'device':<12} {'officer':<10} {'recorded start':<25} {'size':>12}  sha256        source"
    )
    for r in rows:
        click.echo(
            f"{r['device_serial'][:12]:<12} {(r['officer_id'] or '-')[:10]:<10} "
            f"{(r['recorded_start'] or '-')[:25]:<25} {r['size']:>12}  {r['sha256'][:12]}  "
            f"{r['source_path']}" + ("  LATE" if r["late"] else "")
        )
    click.echo(f"{len(rows)} recordings")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def verify(c: Ctx, as_json: bool) -> None:
    """Re-hash the store and check the audit log; exit 0 only when intact."""
    from agent.store import Store
    from agent.verify import verify as run_verify

    cat = c.catalog(create=False)
    store = Store(c.home / "store", reserve_bytes=c.config.store.reserve_bytes)
    report = run_verify(cat, store, buffer_bytes=c.config.store.buffer_bytes)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "files_checked": report.files_checked,
                    "bytes_checked": report.bytes_checked,
                    "audit_entries": report.audit_entries,
                    "problems": report.problems,
                    "notes": report.notes,
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        for n in report.notes:
            click.echo(f"note: {n}")
        for p in report.problems:
            click.echo(f"PROBLEM: {p}")
        click.echo(
            f"{'intact' if report.ok else 'NOT INTACT'}: {report.files_checked} files "
            f"({report.bytes_checked} bytes) re-hashed, {report.audit_entries} audit entries, "
            f"{len(report.problems)} problems"
        )
    if not report.ok:
        sys.exit(errors.EXIT_FAILED)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the faults as JSON.")
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved faults.")
@click.pass_obj
def faults(c: Ctx, as_json: bool, include_resolved: bool) -> None:
    """Faults and their age against the 24-hour repair limit."""
    from agent.faults import list_faults

    rows = [f.as_dict() for f in list_faults(c.catalog(), include_resolved=include_resolved)]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no open faults")
        return
    for f in rows:
        state = "resolved" if f["resolved_at"] else ("OVERDUE" if f["overdue"] else "open")
        click.echo(
            f"{state:<8} {f['age_hours']:>7.1f} h  {f['kind']:<10} {f['subject']:<16} {f['detail']}"
        )


@cli.group()
def simulate() -> None:
    """Virtual recorders and a simulated dock, for trying the station without hardware."""


@simulate.command("recorder")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--serial", required=True, help="Device serial of the virtual recorder.")
@click.option("--officer", default="100001", show_default=True, help="Officer id.")
@click.option("--unit", default="patrol-1", show_default=True, help="Unit / department.")
@click.option("--files", default=3, show_default=True, type=click.IntRange(0), help="Media files.")
@click.option(
    "--size",
    default=4 * 1024 * 1024,
    show_default=True,
    type=click.IntRange(0),
    help="Bytes per media file.",
)
@click.option(
    "--battery",
    default=90.0,
    show_default=True,
    type=click.FloatRange(0, 100),
    help="Battery level, percent.",
)
@click.option("--charging", is_flag=True, help="The recorder reports that it is charging.")
@click.option(
    "--clock-offset",
    default=0.0,
    show_default=True,
    type=float,
    help="Seconds the recorder's clock is ahead (negative: behind).",
)
@click.option("--firmware", default="2.1.0", show_default=True, help="Firmware version reported.")
@click.option(
    "--age-hours",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0),
    help="How long ago the last recording ended.",
)
@click.option("--sparse", is_flag=True, help="Sparse files (folder only; for files over 4 GiB).")
@click.option("--capacity", type=click.IntRange(0), help="FAT image size in bytes.")
@click.option("--fat", is_flag=True, help="Build a FAT32 image file instead of a folder.")
def simulate_recorder(dest: Path, fat: bool, **kw: Any) -> None:
    """Build a virtual recorder of the `simulated` model at DEST."""
    from agent.simulate import RecorderSpec, build_fat_image, build_tree

    spec = RecorderSpec(**kw)
    if fat:
        build_fat_image(dest, spec)
        click.echo(f"FAT32 image {dest}: recorder {spec.serial}, {spec.files} files")
    else:
        if spec.sparse and kw.get("capacity"):
            raise click.UsageError("--capacity applies to --fat images only")
        dest.mkdir(parents=True, exist_ok=True)
        build_tree(dest, spec)
        click.echo(f"folder {dest}: recorder {spec.serial}, {spec.files} files")


cli.add_command(check_command, "check")

from agent.station_cli import (  # noqa: E402 - registered after the group exists
    plug_command,
    run_command,
    status_command,
    unplug_command,
)

cli.add_command(run_command, "run")
cli.add_command(status_command, "status")
simulate.add_command(plug_command, "plug")
simulate.add_command(unplug_command, "unplug")


@cli.command("sync")
@click.option(
    "--once",
    is_flag=True,
    help="Run one upload pass, print what happened and exit: 0 when nothing failed, "
    "69 when the central store is unreachable, 1 when a file failed or has no receipt.",
)
@click.option("--json", "as_json", is_flag=True, help="With --once: print the pass as JSON.")
@click.pass_obj
def sync_command(c: Ctx, once: bool, as_json: bool) -> None:
    """Upload recordings without a central receipt to the central store ([upload]).

    Late recordings go first; uploads resume where they stopped. Without --once,
    keep uploading until SIGTERM or Ctrl-C (the station daemon runs the same worker).
    """
    from sync.upload_worker import UploadWorker

    if not c.config.upload.enabled:
        raise errors.ConfigError(
            "uploads are off: set [upload] enabled = true and endpoint = the central store's "
            "tus URL in the configuration"
        )
    stop = threading.Event()
    worker = UploadWorker(c.config, c.home, stop=stop, catalog=c.catalog(create=False))
    # SIGTERM sets stop from a relay thread: the worker waits in stop.wait() on this thread,
    # and a handler setting it there could deadlock (agent/signals.py)
    with SignalRelay(stop.set, [signal.SIGTERM]):
        if not once:
            try:
                worker.run_forever()
            except KeyboardInterrupt:
                stop.set()
            return
        summary = worker.run_once()
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    elif not summary["window_open"]:
        click.echo(
            f"outside the allowed upload hours ({c.config.upload.allowed_hours}): nothing "
            f"sent; the window opens in {summary['opens_in_s'] / 60:.0f} min; "
            f"{summary['remaining']} recordings wait"
        )
    else:
        for f in summary["files"]:
            if f["status"] != "synced":
                click.echo(f"{f['status']}: {f['store_path']}: {f['detail']}")
        click.echo(
            f"{summary['synced']} synced, {summary['unconfirmed']} without a receipt, "
            f"{summary['rejected']} rejected, {summary['failed']} failed, "
            f"{summary['set_aside']} set aside (open upload fault); "
            f"{summary['remaining']} not yet synced"
        )
    if summary["error"]:
        click.echo(f"recdock: {summary['error']}", err=True)
        sys.exit(errors.EXIT_UNAVAILABLE)
    if summary["failed"] or summary["rejected"] or summary["unconfirmed"]:
        sys.exit(errors.EXIT_FAILED)


def main() -> None:
    cli(prog_name="recdock")


if __name__ == "__main__":
    main()
