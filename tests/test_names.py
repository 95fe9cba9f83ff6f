"""Untrusted recorder names to safe store paths and back (property tests)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from agent.recorder.names import (
    MAX_COMPONENT,
    decode_component,
    decode_relpath,
    display,
    encode_bytes,
    encode_component,
    encode_relpath,
    safe_label,
)
from agent.store import TEMP_PREFIX

# a component as a recorder's file system could present it: any bytes but '/' and NUL
component = st.binary(min_size=1, max_size=300).filter(lambda b: b"/" not in b and b"\0" not in b)
any_bytes = st.binary(max_size=300)
texty = st.text(min_size=1, max_size=80).map(lambda s: s.encode("utf-8", "surrogatepass"))
paths = st.lists(
    st.one_of(
        st.sampled_from([b"..", b".", b"", b"/", b"//", b"/etc", b"..\\..", b"\x00"]), any_bytes
    ),
    min_size=1,
    max_size=8,
).map(lambda parts: b"/".join(parts))


def fits(raw: bytes) -> bool:
    """The component's escaped form fits in one file name (else it is cut and hashed)."""
    return len(encode_bytes(raw).encode("utf-8")) + 2 <= MAX_COMPONENT


def assert_safe(name: str) -> None:
    assert name not in ("", ".", "..")
    assert "/" not in name and "\\" not in name
    assert not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name), repr(name)
    assert not name.startswith(TEMP_PREFIX) and not name.startswith(".recdock-")
    assert len(name.encode("utf-8")) <= MAX_COMPONENT


@given(st.one_of(component, texty.filter(lambda b: b"/" not in b)))
@example(b"%41")
@example(b"%")
@example(b"..")
@example(b".")
@example(b".recdock-partial-1234")
@example("执法记录_2026.MP4".encode())
@example(b"\xff\xfe name")
@settings(max_examples=500)
def test_round_trip(raw: bytes) -> None:
    assume(fits(raw))
    assert decode_component(encode_component(raw)) == raw


@given(st.binary(min_size=1, max_size=84).filter(lambda b: b"/" not in b))
def test_every_short_component_fits_and_round_trips(raw: bytes) -> None:
    # 84 bytes escaped as %XX each is 252 characters: always fits
    assert fits(raw)
    assert decode_component(encode_component(raw)) == raw


@given(st.one_of(any_bytes, texty))
@example(b"")
@example(b".")
@example(b"..")
@example(b".recdock-partial-abc")
@example(b"a\\b")
@example(b"\x00")
@example(b"\n")
@example(b"\x7f")
@example("界" * 200)  # 600 bytes of UTF-8
@example(b"%" * 300)
@settings(max_examples=500)
def test_component_is_always_safe(raw: bytes | str) -> None:
    if isinstance(raw, str):
        raw = raw.encode()
    assert_safe(encode_component(raw))


@given(st.binary(min_size=256, max_size=2000).filter(lambda b: b"/" not in b))
def test_long_components_are_cut_and_stay_distinct(raw: bytes) -> None:
    a, b = encode_component(raw), encode_component(raw + b"x")
    assert_safe(a)
    assert a != b


@given(paths)
@example(b"../../etc/passwd")
@example(b"/etc/passwd")
@example(b"//server//share/..")
@example(b"a/../../b")
@example(b"..\\..\\windows")
@settings(max_examples=500)
def test_relpath_never_escapes(raw: bytes) -> None:
    root = Path("/srv/store/session/media")
    try:
        rel = encode_relpath(raw)
    except ValueError:
        assert not [p for p in raw.split(b"/") if p]
        return
    assert not rel.startswith("/")
    parts = rel.split("/")
    for part in parts:
        assert_safe(part)
    resolved = Path(os.path.normpath(root / rel))
    assert resolved.is_relative_to(root) and resolved != root
    assert len(parts) == len([p for p in raw.split(b"/") if p])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"../../etc/passwd", "%2E%2E/%2E%2E/etc/passwd"),
        (b"/etc/passwd", "etc/passwd"),
        (b"a//b", "a/b"),
        (b"DCIM/./x.MP4", "DCIM/%2E/x.MP4"),
        (b"C:\\x.mp4", "C%3A%5Cx.mp4"),
    ],
)
def test_relpath_examples(raw: bytes, expected: str) -> None:
    assert encode_relpath(raw) == expected


@pytest.mark.parametrize("raw", [b"", b"/", b"///"])
def test_relpath_refuses_empty(raw: bytes) -> None:
    with pytest.raises(ValueError, match="empty"):
        encode_relpath(raw)


def test_chinese_names_stay_readable() -> None:
    name = "执法记录仪_张三_20261127.MP4"
    assert encode_component(name.encode()) == name
    assert encode_relpath(f"录像/{name}".encode()) == f"录像/{name}"
    assert display(f"录像/{name}".encode()) == f"录像/{name}"


def test_invalid_utf8_is_escaped_reversibly() -> None:
    raw = b"VID_\xb2\xe2\xca\xd4.MP4"  # GBK bytes, not UTF-8
    text = encode_component(raw)
    assert text == "VID_%B2%E2%CA%D4.MP4"
    assert decode_component(text) == raw


def test_percent_is_escaped_so_names_do_not_collide() -> None:
    assert encode_component(b"%41") != encode_component(b"A")
    assert decode_component(encode_component(b"%41")) == b"%41"


@pytest.mark.parametrize(
    "value", ["../../etc/x", "/abs", "..", ".", "", None, "a/b", ".recdock-partial-x"]
)
def test_safe_label_is_one_safe_component(value: str | None) -> None:
    label = safe_label(value)
    assert_safe(label)


def test_decode_relpath_gives_a_path_back_unless_a_component_was_cut() -> None:
    for raw in ("执法记录".encode() * 5 + b"/A.MP4", b"DCIM/100RDSIM/\xff%.MP4"):
        assert decode_relpath(encode_relpath(raw)) == raw
    cut = b"DCIM/" + "执法记录".encode("gbk") * 20 + b".MP4"
    assert decode_relpath(encode_relpath(cut)) != cut
