"""``[retention]``: how long the station keeps a recording the centre has confirmed (rule clause
11: six months), longer per unit or per category, and the free space below which it purges
early (docs/retention.md)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

GiB = 1024 * 1024 * 1024
Months = Annotated[int, Field(ge=1, le=1200)]


class RetentionConfig(BaseModel):
    """``[retention]``: a recording is purged only once the centre's receipt confirmed its hash,
    its retention ran out and no hold covers it (rule 4, docs/architecture.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=True,
        description="Run the purge pass in the daemon (`recdock purge` runs it by hand).",
    )
    months: Months = Field(
        default=6,
        description="How long a recording is kept after its offload (rule clause 11: 6 months).",
    )
    units: dict[str, Months] = Field(
        default_factory=dict,
        description="Months per unit (department, as the recording is filed), where it differs; "
        "where a unit's and a category's retention both apply, the longer wins.",
    )
    categories: dict[str, Months] = Field(
        default_factory=dict,
        description="Months per category of media (named in category_globs), where it differs.",
    )
    category_globs: dict[str, list[str]] = Field(
        default_factory=dict,
        description="What each category is: glob patterns on the recorder's path of the file "
        "(case-insensitive; '*' also matches '/'), e.g. photo = [\"*.JPG\"].",
    )
    low_disk_free_bytes: Annotated[int, Field(ge=0)] = Field(
        default=4 * GiB,
        description="Below this much free space in the store, purge early what the centre "
        "confirmed and no hold covers, oldest first, until above it (0: never early).",
    )
    purge_every_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = Field(
        default=10.0, description="How often the daemon runs the purge pass."
    )
    batch: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=200, description="Recordings purged per transaction of a pass."
    )

    @model_validator(mode="after")
    def _categories_named(self) -> RetentionConfig:
        unknown = sorted(set(self.categories) - set(self.category_globs))
        if unknown:
            raise ValueError(f"categories {unknown} have no patterns in category_globs")
        empty = sorted(k for k, v in self.category_globs.items() if not v)
        if empty:
            raise ValueError(f"category_globs {empty}: give at least one pattern")
        return self
