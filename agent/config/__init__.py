"""The station's configuration: which file is read, and the model it is read into.

This module imports no pydantic: `recdock status` asks only which file the configuration comes
from (and compares it with what the running daemon read) before it decides to load the model.
The model lives in agent/config/settings.py; its names are also reachable here
(``from agent.config import Config``), loaded on first use.

An unknown or mistyped key stops the program with the file, the key and what was expected
(``extra="forbid"`` on every model). Every setting has a default, so the station runs on its
embedded default with no file at all. docs/configuration.md lists every setting;
``tests/test_config.py`` checks that list against the model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.config.settings import Config

from agent.config import paths
from agent.config.paths import DEFAULT_HOME, SHIPPED_PROFILES

__all__ = ["DEFAULT_HOME", "SHIPPED_PROFILES", "config_file", "load_config", "resolve_home"]

#: The names of agent/config/settings.py offered here, imported when first asked for.
_MODEL_NAMES = frozenset(
    {
        "Config",
        "ChecksConfig",
        "DeviceEntry",
        "GpioConfig",
        "OffloadConfig",
        "ProfilesConfig",
        "StationConfig",
        "StoreConfig",
        "Strict",
        "GiB",
        "MiB",
    }
)


def __getattr__(name: str) -> Any:
    if name in _MODEL_NAMES:
        from agent.config import settings

        return getattr(settings, name)
    raise AttributeError(f"module 'agent.config' has no attribute {name!r}")


def config_file(path: Path | None) -> Path | None:
    """The file :func:`load_config` reads for ``path``: ``path`` itself, else
    ``$RECDOCK_CONFIG``, else /etc/recdock/recdock.toml when it exists; None: the embedded
    default."""
    if path is not None:
        return path
    env = os.environ.get("RECDOCK_CONFIG")
    if env:
        return Path(env)
    default = paths.DEFAULT_CONFIG_PATH
    return default if default.exists() else None


def config_fingerprint(path: Path | None) -> dict[str, Any]:
    """Which configuration ``path`` stands for, as it is now: its file (None: the embedded
    default) with its size and modification time. Two equal fingerprints read the same
    settings."""
    file = config_file(path)
    if file is None:
        return {"file": None}
    try:
        st = file.stat()
    except OSError:
        return {"file": str(file), "missing": True}
    return {"file": str(file.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def load_config(path: Path | None) -> Config:
    """Load the configuration file (:func:`config_file` says which), or the embedded default
    when there is none."""
    from agent.config.settings import Config
    from agent.config.toml import load_model, read_toml

    file = config_file(path)
    if file is None:
        return Config()
    return load_model(Config, read_toml(file), file)


def resolve_home(home: Path | None) -> Path:
    if home is not None:
        return home
    env = os.environ.get("RECDOCK_HOME")
    return Path(env) if env else DEFAULT_HOME
