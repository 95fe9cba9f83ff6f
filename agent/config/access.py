"""``[access]``: who may approve access to footage, and what export labels name (rule clauses
12, 13, 34, 35; docs/access.md)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class AccessConfig(BaseModel):
    """``[access]``: the approvers (local user names) and the unit export labels name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    approvers: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        description="Local user names (the OS user running `recdock access approve`, or the "
        "user behind sudo) who may approve or refuse access requests; empty: nobody can, so "
        "nothing leaves the station.",
    )
    unit: str = Field(
        default="",
        max_length=200,
        description="The unit (单位) export labels and bag-info name when the recordings carry "
        "none of their own.",
    )
    max_valid_days: Annotated[int, Field(ge=1, le=366)] = Field(
        default=30, description="Longest time an approval may run for (days)."
    )
