"""Serial protocol parsers against vectors from device documentation and public captures.

Every vector (tests/vectors/<device>/*.json, each with its source) is decoded whole, one
byte at a time, and with garbage before, between and after, and compared against the
whole expected object. Bad vectors must give exactly their rejection reason. Hypothesis
checks that no input raises out of a framer, stalls it, or grows its buffer unbounded.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.serial import bedpad, ld2410, mr60, rflink, rtl433
from drivers.serial.framing import Framer
from drivers.serial.protocol import PROTOCOLS

VECTORS = Path(__file__).parent / "vectors"
DEVICE_PROTOCOL = {
    "ld2410": "ld2410",
    "mr60fda2": "mr60fda2",
    "mr60bha2": "mr60bha2",
    "rflink": "rflink",
    "rtl433": "rtl433",
    "bedpad": "bedpad",
}
TEXT = {"rflink", "rtl433"}
# Bytes that start no frame of any binary protocol here (no 0x01, 0xA5, 0xF4, 0xFD).
BIN_GARBAGE = bytes(range(0x80, 0xA0)) + b"\x00\x02\x55\xaa\xf8\x04"
TEXT_GARBAGE = b"\x00\xff noise"


def plain(obj: Any) -> Any:
    """A decoded frame as JSON-like data, to compare with a whole expected object."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {"type": type(obj).__name__}
        for f in dataclasses.fields(obj):
            out[f.name] = plain(getattr(obj, f.name))
        return out
    if isinstance(obj, enum.Enum):
        return obj.name
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, tuple | list):
        return [plain(x) for x in obj]
    return obj


def load_vectors() -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for path in sorted(VECTORS.glob("*/*.json")):
        device = path.parent.name
        if device not in DEVICE_PROTOCOL:
            continue
        out.append((device, path.stem, json.loads(path.read_text(encoding="utf-8"))))
    return out


ALL = load_vectors()
GOOD = [v for v in ALL if "expected" in v[2]]
BAD = [v for v in ALL if "error" in v[2]]


def wire(device: str, vec: dict[str, Any]) -> bytes:
    if "hex" in vec:
        return bytes.fromhex(vec["hex"])
    return vec["line"].encode() + b"\r\n"


def framer(device: str) -> Framer[Any]:
    return PROTOCOLS[DEVICE_PROTOCOL[device]].framer()


def ids(vs: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    return [f"{d}/{n}" for d, n, _ in vs]


def test_every_device_has_vectors_with_sources() -> None:
    devices = {d for d, _, _ in ALL}
    assert devices == set(DEVICE_PROTOCOL)
    for d, n, v in ALL:
        assert v.get("source"), f"{d}/{n} has no source"
    assert len(GOOD) >= 30
    assert len(BAD) >= 15


@pytest.mark.parametrize(("device", "name", "vec"), GOOD, ids=ids(GOOD))
def test_vector_whole(device: str, name: str, vec: dict[str, Any]) -> None:
    f = framer(device)
    frames = f.feed(wire(device, vec))
    assert [plain(x) for x in frames] == [vec["expected"]]
    assert f.pop_errors() == []
    assert f.pending == 0


@pytest.mark.parametrize(("device", "name", "vec"), GOOD, ids=ids(GOOD))
def test_vector_one_byte_at_a_time(device: str, name: str, vec: dict[str, Any]) -> None:
    f = framer(device)
    data = wire(device, vec)
    frames = []
    for i in range(len(data)):
        got = f.feed(data[i : i + 1])
        if i < len(data) - 1:
            assert got == [], f"frame completed early at byte {i}"
        frames += got
    assert [plain(x) for x in frames] == [vec["expected"]]
    assert f.pop_errors() == []


@pytest.mark.parametrize(("device", "name", "vec"), GOOD, ids=ids(GOOD))
def test_vector_with_garbage_around(device: str, name: str, vec: dict[str, Any]) -> None:
    f = framer(device)
    data = wire(device, vec)
    if device in TEXT:
        # Text protocols: a partial line before a newline is one bad line, then in sync.
        stream = TEXT_GARBAGE + b"\n" + data + TEXT_GARBAGE + b"\r\n" + data + TEXT_GARBAGE
    else:
        stream = BIN_GARBAGE + data + BIN_GARBAGE + data + BIN_GARBAGE
    frames = []
    for chunk in (stream[:7], stream[7:30], stream[30:]):
        frames += f.feed(chunk)
    assert [plain(x) for x in frames] == [vec["expected"]] * 2
    if device not in TEXT:
        assert f.pop_errors() == []
        assert f.garbage_bytes == 3 * len(BIN_GARBAGE)


@pytest.mark.parametrize(("device", "name", "vec"), BAD, ids=ids(BAD))
def test_bad_vector_rejected_with_reason(device: str, name: str, vec: dict[str, Any]) -> None:
    f = framer(device)
    frames = f.feed(wire(device, vec))
    errors = f.pop_errors()
    assert frames == []
    assert [e.reason for e in errors][:1] == [vec["error"]]
    assert all(e.protocol == f.protocol for e in errors)
    assert errors[0].raw, "a rejection carries the raw bytes"


@pytest.mark.parametrize(("device", "name", "vec"), GOOD, ids=ids(GOOD))
def test_truncated_then_whole(device: str, name: str, vec: dict[str, Any]) -> None:
    """A frame cut short (a reset mid-frame) never yields, and the next frame is found."""
    f = framer(device)
    data = wire(device, vec)
    cut = data[: max(1, len(data) // 2)]
    assert f.feed(cut) == []
    assert f.pending <= f.max_frame
    if device in TEXT:
        f.feed(b"\n")  # a line device restarts on a new line
    frames = f.feed(data)
    assert [plain(x) for x in frames][-1:] == [vec["expected"]]


@pytest.mark.parametrize(("device", "name", "vec"), GOOD, ids=ids(GOOD))
def test_corrupted_byte_never_raises(device: str, name: str, vec: dict[str, Any]) -> None:
    data = bytearray(wire(device, vec))
    for i in range(len(data)):
        f = framer(device)
        bad = bytearray(data)
        bad[i] ^= 0x5A
        frames = f.feed(bytes(bad)) + f.feed(b"")
        assert len(frames) <= 1
        assert f.pending <= f.max_frame


# ----------------------------------------------------------------- property tests

protocol_names = st.sampled_from(sorted(PROTOCOLS))


@settings(max_examples=300, deadline=None)
@given(name=protocol_names, data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000)))
def test_random_bytes_never_raise_stall_or_grow(name: str, data: bytes, cuts: list[int]) -> None:
    f = PROTOCOLS[name].framer()
    points = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    for a, b in itertools.pairwise(points):
        f.feed(data[a:b])
        assert f.pending <= f.max_frame
    assert f.frames + f.rejected <= len(data)
    # Quiet line: repeated resyncs drain whatever is held; nothing is stuck forever.
    for _ in range(f.max_frame + 1):
        if not f.pending:
            break
        f.resync()
    assert f.pending == 0


def _no_sync(b: bytes) -> bytes:
    return bytes(x for x in b if x >= 0x80 and x not in (0xA5, 0xF4, 0xFD))


def _frames_for(name: str) -> list[bytes]:
    dev = {"mr60fda2": "mr60fda2", "mr60bha2": "mr60bha2"}.get(name, name)
    return [wire(d, v) for d, _, v in GOOD if d == dev]


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(["ld2410", "mr60fda2", "mr60bha2", "bedpad"]),
    noise=st.lists(st.binary(max_size=40).map(_no_sync), max_size=8),
    split=st.integers(1, 50),
)
def test_valid_frames_survive_noise_and_any_split(
    name: str, noise: list[bytes], split: int
) -> None:
    frames = _frames_for(name)
    stream = b""
    for i, fr in enumerate(frames):
        stream += (noise[i % len(noise)] if noise else b"") + fr
    f = PROTOCOLS[name].framer()
    got = []
    for i in range(0, len(stream), split):
        got += f.feed(stream[i : i + split])
    assert len(got) == len(frames)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.text(max_size=200), max_size=20),
    name=st.sampled_from(["rflink", "rtl433"]),
)
def test_text_lines_never_raise(lines: list[str], name: str) -> None:
    f = PROTOCOLS[name].framer()
    for line in lines:
        f.feed(line.encode("utf-8", "surrogatepass") + b"\n")
        assert f.pending <= f.max_frame


@settings(max_examples=100, deadline=None)
@given(
    payload=st.dictionaries(
        st.text(max_size=10),
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
        max_size=8,
    ),
    model=st.text(min_size=1, max_size=20),
)
def test_rtl433_any_object_decodes_or_rejects(payload: dict[str, Any], model: str) -> None:
    payload["model"] = model
    f = rtl433.Rtl433Framer()
    f.feed(json.dumps(payload).encode() + b"\n")
    assert f.frames + f.rejected <= 1


def test_long_line_is_rejected_once_and_resyncs() -> None:
    f = rflink.RFLinkFramer()
    assert f.feed(b"x" * 5000) == []
    assert [e.reason for e in f.pop_errors()] == ["line too long"]
    assert f.feed(b"x" * 5000) == []
    assert f.pop_errors() == []
    got = f.feed(b"tail\n20;01;EV1527;ID=01;SWITCH=1;CMD=ON;\n")
    assert [plain(g)["device_id"] for g in got] == ["01"]
    assert f.pending == 0


@pytest.mark.parametrize("name", ["mr60fda2", "ld2410", "bedpad"])
def test_resync_frees_a_frame_held_behind_a_false_header(name: str) -> None:
    """Noise that looks like a long frame's header must not hold a real frame forever."""
    false_header = {
        "mr60fda2": mr60.encode(0x0A04, bytes(300))[:8],  # valid header, 300 data bytes owed
        "ld2410": ld2410.DATA_HEAD + b"\x40\x00",  # 64 bytes owed
        "bedpad": bedpad.SYNC + b"\x40",
    }[name]
    real = _frames_for(name)[0]
    f = PROTOCOLS[name].framer()
    assert f.feed(false_header + real) == []  # waits for the false frame's bytes
    got: list[Any] = []
    for _ in range(len(false_header)):  # the driver calls this once per quiet tick
        got += f.resync()
        if got:
            break
    assert [plain(x) for x in got] == [plain(PROTOCOLS[name].framer().feed(real)[0])]
    assert f.pending == 0


def test_resync_drops_a_partial_line() -> None:
    f = rflink.RFLinkFramer()
    assert f.feed(b"20;01;EV15") == []
    assert f.resync() == []
    assert f.pending == 0
    assert len(f.feed(b"20;02;EV1527;ID=01;CMD=ON;\n")) == 1


def test_huge_single_feed_is_linear_enough() -> None:
    """Many frames in one chunk are consumed in one pass (no quadratic re-copying)."""
    frame = bytes.fromhex(json.loads((VECTORS / "ld2410/doc_basic_still.json").read_text())["hex"])
    f = ld2410.LD2410Framer()
    assert len(f.feed(frame * 20000)) == 20000
    assert f.pending == 0


# ----------------------------------------------------------------- pure helpers


def test_crc16_ccitt_check_value() -> None:
    assert bedpad.crc16_ccitt(b"123456789") == 0x29B1


def test_mr60_checksum_matches_esphome_frames() -> None:
    assert mr60.checksum(bytes.fromhex("01 00 00 00 00 0E 06")) == 0xF6
    assert mr60.encode(0x2110) == bytes.fromhex("01 00 00 00 00 21 10 CF")


def test_ld2410_encoders_round_trip() -> None:
    for _, _, v in (x for x in GOOD if x[0] == "ld2410"):
        data = bytes.fromhex(v["hex"])
        (obj,) = ld2410.LD2410Framer().feed(data)
        if isinstance(obj, ld2410.LD2410Report):
            assert ld2410.encode_report(obj) == data
    assert ld2410.encode_command(ld2410.CMD_ENABLE_CONFIG, b"\x01\x00") == bytes.fromhex(
        "FD FC FB FA 04 00 FF 00 01 00 04 03 02 01"
    )


def test_ld2410_firmware_and_config_session() -> None:
    vec = json.loads((VECTORS / "ld2410/doc_read_firmware_ack.json").read_text())
    (ack,) = ld2410.LD2410Framer().feed(bytes.fromhex(vec["hex"]))
    assert ack.ok
    assert ack.firmware == "V1.07.22091516"
    session = ld2410.config_session((ld2410.CMD_ENGINEERING_ON, b""))
    frames = ld2410.LD2410Framer().feed(session)
    assert [(f.command, f.value) for f in frames] == [
        (ld2410.CMD_ENABLE_CONFIG, b"\x01\x00"), (ld2410.CMD_ENGINEERING_ON, b""),
        (ld2410.CMD_END_CONFIG, b""),
    ]


def test_ld2410_distance_prefers_nonzero_target_distance() -> None:
    r = ld2410.LD2410Report(False, ld2410.TargetState.BOTH, 120, 50, 80, 40, 100)
    assert r.distance_cm == 80
    assert r.presence
    r = ld2410.LD2410Report(False, ld2410.TargetState.STILL, 81, 0, 0, 59, 90)
    assert r.distance_cm == 90
    r = ld2410.LD2410Report(False, ld2410.TargetState.NONE, 81, 0, 0, 59, 90)
    assert r.distance_cm == 0
    assert not r.presence


class TestBedDebouncer:
    def test_first_state_is_reported_at_once(self) -> None:
        d = bedpad.BedDebouncer(enter_s=5, exit_s=10)
        assert d.feed(bedpad.BedState.IN, 0.0) is True

    def test_short_exit_is_not_reported(self) -> None:
        d = bedpad.BedDebouncer(enter_s=5, exit_s=10)
        d.feed(bedpad.BedState.IN, 0.0)
        assert d.feed(bedpad.BedState.OUT, 100.0) is None
        assert d.feed(bedpad.BedState.OUT, 105.0) is None
        assert d.feed(bedpad.BedState.IN, 106.0) is None  # turned over, back on the pad
        assert d.tick(200.0) is None
        assert d.state is True

    def test_exit_held_is_reported_by_tick(self) -> None:
        d = bedpad.BedDebouncer(enter_s=5, exit_s=10)
        d.feed(bedpad.BedState.IN, 0.0)
        assert d.feed(bedpad.BedState.OUT, 100.0) is None
        assert d.tick(109.9) is None
        assert d.tick(110.0) is False
        assert d.tick(111.0) is None
        assert d.feed(bedpad.BedState.IN, 120.0) is None
        assert d.feed(bedpad.BedState.IN, 125.0) is True

    def test_unknown_changes_nothing(self) -> None:
        d = bedpad.BedDebouncer()
        assert d.feed(bedpad.BedState.UNKNOWN, 0.0) is None
        assert d.state is None
