"""``[anchor]``: how often the station compares its audit chain with the head the centre holds.

The comparison (sync/anchor.py) asks the central store's JSON API for the head of this
station's chain, with the station's upload token, so it runs only with ``[upload]`` enabled;
the daemon does it every ``check_every_hours`` (once a day by default) and
``recdock verify --against-central`` does it on demand.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator


class AnchorConfig(BaseModel):
    """``[anchor]``: the daily comparison of the local chain with the centre's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=True,
        description="Compare the local audit chain with the head the central store holds "
        "(needs [upload] enabled: the same centre, the same token); a disagreement opens a "
        "critical 'chain.central' fault.",
    )
    check_every_hours: Annotated[float, Field(ge=0.01, le=168)] = Field(
        default=24.0, description="Hours between two comparisons by the daemon."
    )
    url: str | None = Field(
        default=None,
        description="Base URL of the central store's JSON API, e.g. https://central.example; "
        "unset: the scheme and host of upload.endpoint.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must be an http:// or https:// URL")
        return v

    def base_url(self, upload_endpoint: str | None) -> str | None:
        """The API's base URL: ``url``, else the origin of ``upload_endpoint``."""
        if self.url:
            return self.url.rstrip("/")
        if not upload_endpoint:
            return None
        parts = urlsplit(upload_endpoint)
        return f"{parts.scheme}://{parts.netloc}"
