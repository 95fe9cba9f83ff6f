"""Figures of an installed station, for docs/deployment.md: what scripts/test-arm64 prints after
installing recdock in the emulated platform as the deployment doc says.

    /opt/recdock/venv/bin/python figures.py /opt/recdock/venv

Only what is the same on a Pi as under emulation: sizes on disk, versions, and which
distributions are native code (and for which platform their wheel was built). No timing.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

DEBIAN_PACKAGES = ("python3", "python3-venv", "exfatprogs", "dosfstools", "git")


def disk_usage(folder: Path) -> int:
    """Bytes on disk (allocated blocks) under ``folder``, each inode once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def wheel_tags(dist: metadata.Distribution) -> list[str]:
    text = dist.read_text("WHEEL") or ""
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")]


def native_files(dist: metadata.Distribution) -> list[str]:
    return [str(f) for f in dist.files or [] if str(f).endswith(".so") or ".so." in str(f)]


def dist_size(dist: metadata.Distribution) -> int:
    return sum(f.size or 0 for f in dist.files or [])


def main(venv: Path) -> None:
    print(f"machine: {platform.machine()}; Python {platform.python_version()}; ", end="")
    print(f"Debian {Path('/etc/debian_version').read_text().strip()}")
    print(f"virtual environment {venv}: {disk_usage(venv) / 2**20:.1f} MiB on disk")
    print()
    print(f"{'distribution':<22} {'version':<14} {'KiB':>6}  wheel")
    dists = sorted(metadata.distributions(), key=lambda d: d.metadata["Name"].lower())
    for dist in dists:
        tags = ", ".join(wheel_tags(dist)) or "?"
        kind = "native" if native_files(dist) else "pure"
        name, version = dist.metadata["Name"], dist.version
        print(f"{name:<22} {version:<14} {dist_size(dist) / 1024:>6.0f}  {kind}: {tags}")
    built_here = [
        d.metadata["Name"]
        for d in dists
        if native_files(d) and not any("manylinux" in t for t in wheel_tags(d))
    ]
    print()
    print("native code built on this machine (no binary wheel for it):", built_here or "none")
    print()
    print("Debian packages of docs/deployment.md, step 2:")
    fmt = "${Package} ${Version} ${Installed-Size}\n"
    out = subprocess.run(
        ["dpkg-query", "-W", f"-f={fmt}", *DEBIAN_PACKAGES], capture_output=True, text=True
    )
    for line in out.stdout.splitlines():
        name, version, kib = line.split()
        print(f"  {name:<14} {version:<24} {kib:>6} KiB installed")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
