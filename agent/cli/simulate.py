"""`recdock simulate`: virtual recorders and the simulated dock's plug and unplug."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


@click.group("simulate")
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
    from agent.recorder.simulated import RecorderSpec, build_fat_image, build_tree

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


@simulate.command("plug")
@click.argument("bay", type=click.IntRange(1, 64))
@click.argument("source", type=click.Path(path_type=Path, exists=True))
@click.option(
    "--usb-id",
    default="1209:0001",
    show_default=True,
    help="USB VID:PID the virtual device presents (1209:0001 is the simulated recorder; "
    "anything else, e.g. 0781:5567, is a USB stick unless registered).",
)
@click.option("--serial", default=None, help="USB serial the virtual device presents.")
@click.pass_obj
def plug_command(c: Any, bay: int, source: Path, usb_id: str, serial: str | None) -> None:
    """Dock SOURCE (a recorder folder or FAT32 image) into BAY of a running simulated station."""
    from agent.seams.dock.simulated import parse_usb_id, send_request

    parse_usb_id(usb_id)
    answer = send_request(
        c.home,
        {
            "op": "plug",
            "bay": bay,
            "source": str(source.resolve()),
            "usb_id": usb_id,
            "serial": serial,
        },
    )
    click.echo(answer.get("message", "plugged"))


@simulate.command("unplug")
@click.argument("bay", type=click.IntRange(1, 64))
@click.pass_obj
def unplug_command(c: Any, bay: int) -> None:
    """Pull the virtual recorder out of BAY of a running simulated station."""
    from agent.seams.dock.simulated import send_request

    answer = send_request(c.home, {"op": "unplug", "bay": bay})
    click.echo(answer.get("message", "unplugged"))
