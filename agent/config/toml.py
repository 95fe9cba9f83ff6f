"""Strict loading of TOML files into pydantic models, with errors a person can act on."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agent.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def describe_validation_error(path: Path | str, exc: ValidationError) -> str:
    """One line per problem: the file, the key (dotted) and what was expected."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
        kind = err.get("type", "")
        if kind == "extra_forbidden":
            what = "unknown key (misspelled? see the documentation for the allowed keys)"
        elif kind == "missing":
            what = "required key is missing"
        else:
            what = err.get("msg", "invalid value")
            if "input" in err and kind not in ("model_type",):
                what += f" (got {err['input']!r})"
        lines.append(f"{path}: {key}: {what}")
    return "\n".join(lines)


def read_toml(path: Path, error_cls: type[ConfigError] = ConfigError) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise error_cls(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise error_cls(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise error_cls(f"{path}: cannot read: {exc.strerror}") from exc


def load_model(
    model: type[M],
    data: dict[str, Any],
    source: Path | str,
    error_cls: type[ConfigError] = ConfigError,
) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error_cls(describe_validation_error(source, exc)) from exc
