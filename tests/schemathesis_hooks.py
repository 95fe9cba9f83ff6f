"""Loaded by schemathesis (``SCHEMATHESIS_HOOKS=tests.schemathesis_hooks``) when
tests/test_central_openapi.py runs it: a tus ``PATCH`` body is raw bytes of the media type
``application/offset+octet-stream``, which schemathesis cannot make from a JSON Schema."""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

schemathesis.openapi.media_type("application/offset+octet-stream", st.binary(max_size=4096))
