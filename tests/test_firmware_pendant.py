"""The pendant firmware: ADXL345 FIFO -> 50 Hz frames in GATT notifications, and "I'm OK".

The gateway's frame parser (``drivers.ble.pendant_protocol``) is built on another branch.
Where it is importable the notifications go through it; otherwise through
``reference_parse`` below, written from docs/pendant-protocol.md of that branch and pinned
by the document's own example frame.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from firmware_stubs.host import Board, samples

try:
    from drivers.ble import pendant_protocol  # type: ignore[attr-defined, unused-ignore]
except ImportError:  # not merged into this branch yet
    pendant_protocol = None

ACCEL = "7a6e0002-5f1c-4a7e-9f3b-616e78696e01"
CANCEL = "7a6e0003-5f1c-4a7e-9f3b-616e78696e01"
SERVICE = "7a6e0001-5f1c-4a7e-9f3b-616e78696e01"
BATTERY = "00002a19-0000-1000-8000-00805f9b34fb"
DOC_EXAMPLE = bytes.fromhex("a5 01 01 02 01 42 0f 00 00 00 01 00 00 46")  # seq 513, (0, 256, 0)


def crc8(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def reference_parse(raw: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    magic, version, seq, n, scale = struct.unpack_from("<BBHBH", raw)
    assert (magic, version) == (0xA5, 1)
    assert len(raw) == 8 + 6 * n
    assert crc8(raw[:-1]) == raw[-1]
    vals = struct.unpack_from(f"<{3 * n}h", raw, 7)
    return seq, scale, [tuple(vals[i:i + 3]) for i in range(0, 3 * n, 3)]  # type: ignore[misc]


def parse(raw: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    if pendant_protocol is None:
        return reference_parse(raw)
    frame = pendant_protocol.parse_frame(raw)
    return frame.seq, frame.scale_ug, [tuple(s) for s in frame.samples]


MOTION = [(i % 97 - 48, (i * 7) % 301 - 150, 256 - i % 13) for i in range(400)]


def pendant(tmp_path: Path) -> tuple[Board, object]:
    b = Board(tmp_path / "flash", mac="A4:C1:38:F0:00:04")
    b.set_adc_uv(4, 1_900_000)  # 3.8 V Li-ion through the 1:2 divider
    b.add_adxl345(samples(MOTION))
    app = b.load("pendant").App()
    return b, app


def test_firmware_encoder_matches_the_documented_example(tmp_path: Path) -> None:
    fw = Board(tmp_path).load("pendant")
    assert fw.crc8(b"123456789") == 0xF4
    assert fw.encode_frame(513, [(0, 256, 0)], 3906) == DOC_EXAMPLE
    assert parse(DOC_EXAMPLE) == (513, 3906, [(0, 256, 0)])
    assert [fw.samples_for_mtu(m) for m in (23, 70, 71, 247)] == [2, 9, 10, 10]


@pytest.mark.parametrize(("mtu", "per_frame"), [(247, 10), (23, 2)])
def test_stream_at_50_hz_in_order_without_loss(tmp_path: Path, mtu: int, per_frame: int) -> None:
    b, app = pendant(tmp_path)
    (adv,) = b.adverts
    assert adv.connectable
    assert SERVICE in adv.service_uuids
    assert adv.name == "Anxin Pendant"
    b.ble_connect(mtu=mtu)
    b.run(app, 4000)
    frames = [parse(n.data) for n in b.notifications if n.uuid == ACCEL]
    assert [seq for seq, _, _ in frames] == list(range(len(frames)))
    assert {len(s) for _, _, s in frames} == {per_frame}
    assert {scale for _, scale, _ in frames} == {3906}
    got = [s for _, _, chunk in frames for s in chunk]
    assert 190 <= len(got) <= 200  # 4 s at 50 Hz, less what waits for the next frame
    assert got == MOTION[: len(got)]  # every sample, in order, none twice
    assert all(len(n.data) <= mtu - 3 for n in b.notifications)


def test_im_ok_button_battery_and_reconnect(tmp_path: Path) -> None:
    b, app = pendant(tmp_path)
    b.run(app, 500)
    assert b.notifications == []  # nobody connected: nothing sent
    b.ble_connect(mtu=247)
    b.run(app, 200)
    for level in (0, 1, 0, 1, 0):  # one press, bouncing
        b.pin(3).drive(level)
        b.advance(2)
    b.run(app, 300)
    b.pin(3).drive(1)
    b.run(app, 61_000)
    cancels = [n.data for n in b.notifications if n.uuid == CANCEL]
    assert cancels == [b"\x01"]
    battery = [n.data for n in b.notifications if n.uuid == BATTERY]
    assert battery == [bytes([63])]  # (3.8 - 3.3) / (4.1 - 3.3): 62.5 % rounds up
    b.ble_disconnect()
    assert len(b.adverts) == 2  # advertising again after the link dropped
    seen = len(b.notifications)
    b.run(app, 1000)
    assert len(b.notifications) == seen


@pytest.mark.data
def test_sisfall_fall_replayed_through_the_pendant(tmp_path: Path, shared_data: Path) -> None:
    """A SisFall fall (waist ADXL345, same part and scale) through the firmware, unchanged.

    SisFall is 200 Hz raw counts at 1/256 g, the pendant's full-resolution scale; every
    fourth sample is what the part would give at 50 Hz. Rigs replay falls this way.
    """
    import numpy as np

    data = np.load(shared_data / "sisfall" / "sisfall_adxl345_200hz.npz")
    i = next(k for k, f in enumerate(data["files"]) if str(f).startswith("SA01/F01_"))
    acc = data["acc"][data["offsets"][i]:data["offsets"][i + 1]][::4]
    fall = [tuple(int(v) for v in row) for row in acc]
    b = Board(tmp_path / "flash", mac="A4:C1:38:F0:00:05")
    b.set_adc_uv(4, 1_900_000)
    b.add_adxl345(samples(fall))
    app = b.load("pendant").App()
    b.ble_connect(mtu=247)
    b.run(app, len(fall) * 20 + 500)
    got = [s for n in b.notifications if n.uuid == ACCEL for s in parse(n.data)[2]]
    assert got[: len(fall)] == fall
    peak_g = max((x * x + y * y + z * z) ** 0.5 for x, y, z in got) / 256
    assert peak_g > 2.0  # the impact is in the stream
