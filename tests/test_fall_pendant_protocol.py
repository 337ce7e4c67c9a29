"""The pendant accelerometer frame: round trip, byte-at-a-time, corruption, gaps."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ble.pendant_protocol import (
    MAX_SAMPLES,
    AccelFrame,
    FrameDecoder,
    SeqTracker,
    crc8,
    encode_frame,
    parse_frame,
)
from gateway.errors import FrameError

SAMPLES = [(0, 256, 0), (-256, 3, 7), (32767, -32768, 1)]


def test_round_trip_and_scale() -> None:
    f = parse_frame(encode_frame(513, SAMPLES, scale_ug=3906))
    assert f == AccelFrame(513, 3906, tuple(SAMPLES))
    assert f.samples_g[0][1] == pytest.approx(256 * 3906e-6)


def test_crc8_check_value() -> None:
    assert crc8(b"123456789") == 0xF4  # CRC-8/SMBUS check value


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[:-1], "length"),
        (lambda b: b[:5], "short"),
        (lambda b: b"\x00" + b[1:], "magic"),
        (lambda b: b[:1] + b"\x02" + b[2:], "version"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 0xFF]), "crc"),
        (lambda b: b[:4] + b"\x00" + b[5:], "sample count"),
        (lambda b: b[:10] + bytes([b[10] ^ 0x01]) + b[11:], "crc"),
    ],
)
def test_corrupt_frames_raise(mutate, reason: str) -> None:
    with pytest.raises(FrameError, match=reason) as exc:
        parse_frame(mutate(encode_frame(1, SAMPLES)))
    assert exc.value.protocol == "anxin-pendant"


def test_byte_at_a_time_yields_the_same_frames() -> None:
    frames = [encode_frame(i, SAMPLES[: 1 + i % 3]) for i in range(20)]
    dec = FrameDecoder()
    out = []
    for b in b"".join(frames):
        out += dec.feed(bytes([b]))
    assert [f.seq for f in out if isinstance(f, AccelFrame)] == list(range(20))
    assert not [e for e in out if isinstance(e, FrameError)]
    assert dec.pending == 0


def test_decoder_resyncs_after_corruption() -> None:
    good = [encode_frame(i, SAMPLES) for i in range(6)]
    bad = bytearray(good[2])
    bad[9] ^= 0x55  # a flipped sample byte: CRC fails
    stream = good[0] + b"\x13\x37" + good[1] + bytes(bad) + good[3] + good[4][:5]
    dec = FrameDecoder()
    rng = random.Random(3)
    out: list[AccelFrame | FrameError] = []
    i = 0
    while i < len(stream):
        n = rng.randint(1, 9)
        out += dec.feed(stream[i : i + n])
        i += n
    out += dec.feed(good[4][5:] + good[5])
    seqs = [f.seq for f in out if isinstance(f, AccelFrame)]
    assert seqs == [0, 1, 3, 4, 5]
    assert any(isinstance(e, FrameError) for e in out)


def test_seq_gaps_wraparound_and_duplicates() -> None:
    t = SeqTracker()
    assert t.update(65533).lost_frames == 0
    assert t.update(65534).lost_frames == 0
    assert t.update(1).lost_frames == 2  # 65535 and 0 lost across the wrap
    r = t.update(1)
    assert r.duplicate
    assert t.update(0).duplicate  # an older frame
    assert t.update(5).lost_frames == 3
    assert t.lost_total == 5
    t.reset()
    assert t.update(900).lost_frames == 0


@given(
    seq=st.integers(0, 0xFFFF),
    samples=st.lists(
        st.tuples(*[st.integers(-32768, 32767)] * 3), min_size=1, max_size=MAX_SAMPLES
    ),
    scale=st.integers(1, 0xFFFF),
)
def test_round_trip_property(seq: int, samples: list[tuple[int, int, int]], scale: int) -> None:
    assert parse_frame(encode_frame(seq, samples, scale)) == AccelFrame(seq, scale, tuple(samples))


@given(junk=st.binary(max_size=200))
def test_decoder_never_raises_on_junk(junk: bytes) -> None:
    dec = FrameDecoder()
    out = dec.feed(junk)
    out += dec.feed(encode_frame(7, SAMPLES))
    assert all(isinstance(x, AccelFrame | FrameError) for x in out)


def test_documented_example_frame() -> None:
    raw = bytes.fromhex("a5 01 01 02 01 42 0f 00 00 00 01 00 00 46")
    assert parse_frame(raw) == AccelFrame(513, 3906, ((0, 256, 0),))
