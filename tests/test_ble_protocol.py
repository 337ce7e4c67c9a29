"""BTHome decoding against captured frames (tests/vectors/bthome/), and totality."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ble.protocol import BTHomeFrame, decode, parse_bindkey
from gateway.errors import FrameError

VECTORS = sorted((Path(__file__).parent / "vectors" / "bthome").glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_vectors_are_there() -> None:
    assert len(VECTORS) >= 15
    for path in VECTORS:
        assert _load(path)["source"], path


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_vector(path: Path) -> None:
    v = _load(path)
    key = bytes.fromhex(v["bindkey"]) if v["bindkey"] else None
    if "error" in v["expected"]:
        with pytest.raises(FrameError) as info:
            decode(bytes.fromhex(v["hex"]), v["mac"], bindkey=key, name=v["name"])
        assert info.value.reason == v["expected"]["error"]
        assert info.value.raw == bytes.fromhex(v["hex"])
        return
    frame = decode(bytes.fromhex(v["hex"]), v["mac"], bindkey=key, name=v["name"])
    assert isinstance(frame, BTHomeFrame)
    assert frame.as_dict() == v["expected"]


def test_decode_is_pure() -> None:
    """The same frame twice gives the same result: no replay or packet-id state inside."""
    v = _load(next(p for p in VECTORS if p.stem == "shelly_blu_button1_encrypted_press"))
    key = bytes.fromhex(v["bindkey"])
    a = decode(bytes.fromhex(v["hex"]), v["mac"], bindkey=key, name=v["name"])
    b = decode(bytes.fromhex(v["hex"]), v["mac"], bindkey=key, name=v["name"])
    assert a == b


def test_tampered_ciphertext_fails_auth() -> None:
    v = _load(next(p for p in VECTORS if p.stem == "shelly_blu_button1_encrypted_press"))
    raw = bytearray(bytes.fromhex(v["hex"]))
    raw[3] ^= 0x01
    with pytest.raises(FrameError) as info:
        decode(bytes(raw), v["mac"], bindkey=bytes.fromhex(v["bindkey"]))
    assert info.value.reason == "auth_failed"


def test_tampered_counter_fails_auth() -> None:
    """The counter is in the nonce: raising it to dodge replay protection breaks the MIC."""
    v = _load(next(p for p in VECTORS if p.stem == "shelly_blu_button1_encrypted_press"))
    raw = bytearray(bytes.fromhex(v["hex"]))
    raw[-8] = (raw[-8] + 1) & 0xFF
    with pytest.raises(FrameError) as info:
        decode(bytes(raw), v["mac"], bindkey=bytes.fromhex(v["bindkey"]))
    assert info.value.reason == "auth_failed"


def test_parse_bindkey() -> None:
    assert parse_bindkey("231d39c1d7cc1ab1aee224cd096db932") == bytes.fromhex(
        "231d39c1d7cc1ab1aee224cd096db932"
    )
    with pytest.raises(FrameError):
        parse_bindkey("abc")
    with pytest.raises(FrameError):
        parse_bindkey("zz" * 16)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.booleans())
def test_total_on_hostile_bytes(raw: bytes, keyed: bool) -> None:
    key = bytes(range(16)) if keyed else None
    result: object
    try:
        result = decode(raw, "AA:BB:CC:DD:EE:FF", bindkey=key)
    except FrameError as exc:
        result = exc
    assert isinstance(result, BTHomeFrame) or (isinstance(result, FrameError) and result.raw == raw)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=30))
def test_total_on_plain_v2_payloads(body: bytes) -> None:
    raw = b"\x40" + body
    result: object
    try:
        result = decode(raw, "AA:BB:CC:DD:EE:FF")
    except FrameError as exc:
        result = exc.reason
    assert isinstance(result, BTHomeFrame) or (isinstance(result, str) and result)
