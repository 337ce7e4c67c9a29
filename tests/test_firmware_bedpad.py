"""The bed pad firmware writes the bed-pad serial protocol to a real pseudo-terminal.

The gateway's parser (``drivers.serial.bedpad``, docs/bedpad-protocol.md) is built on
another branch. Where it is importable the bytes go through its framer; otherwise through
``reference_frames`` below, written from that document (A5 5A | len | type | seq | payload
| CRC-16/CCITT-FALSE big endian), and pinned by the document's examples and vectors made
with that module's encoder.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from firmware_stubs.host import Board

try:
    from drivers.serial import bedpad as gateway_bedpad  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # not merged into this branch yet
    gateway_bedpad = None

# Made with drivers/serial/bedpad.py on the serial branch (encode_status / encode_hello / encode).
VECTORS = {
    "status seq 7, in bed, pressure 40000": bytes.fromhex("a55a06010701409c004400"),
    "hello seq 0, v1.0, serial a1b2c3d4, 30 s": bytes.fromhex("a55a0902000100d4c3b2a11e6182"),
    "fault seq 9, open circuit": bytes.fromhex("a55a03030901ecf5"),
}
# docs/bedpad-protocol.md, "Examples".
DOC_EXAMPLES = {
    "status seq 7, in bed, pressure 1234": bytes.fromhex("A5 5A 06 01 07 01 D2 04 00 C3 1B"),
    "status seq 8, out of bed, pressure 12, battery low": bytes.fromhex("A5 5A 06 01 08 00 0C 00 01 72 26"),
    "hello seq 0, 1.2, serial 00C0FFEE, 5 s": bytes.fromhex("A5 5A 09 02 00 01 02 EE FF C0 00 05 F8 24"),
}


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def reference_frames(data: bytes) -> Iterator[tuple[str, int, tuple[int, ...]]]:
    """(type, seq, fields) per frame; any byte that is not part of a valid frame fails."""
    i = 0
    while i < len(data):
        assert data[i:i + 2] == b"\xa5\x5a", f"sync expected at {i}: {data[i:].hex()}"
        n = data[i + 2]
        body = data[i + 2:i + 3 + n]
        (crc,) = struct.unpack(">H", data[i + 3 + n:i + 5 + n])
        assert crc16(body) == crc, f"bad crc at {i}"
        kind, seq, payload = body[1], body[2], body[3:]
        if kind == 0x01:
            yield "status", seq, struct.unpack("<BHB", payload)
        elif kind == 0x02:
            yield "hello", seq, struct.unpack("<BBIB", payload)
        elif kind == 0x03:
            yield "fault", seq, tuple(payload)
        else:
            pytest.fail(f"unknown frame type {kind}")
        i += 5 + n


def gateway_frames(data: bytes) -> list[tuple[str, int, tuple[int, ...]]]:
    framer = gateway_bedpad.BedPadFramer()
    out = []
    for f in framer.feed(data):
        if isinstance(f, gateway_bedpad.BedStatus):
            flags = (1 if f.battery_low else 0) | (2 if f.tamper else 0)
            out.append(("status", f.seq, (int(f.state), f.pressure, flags)))
        elif isinstance(f, gateway_bedpad.BedHello):
            major, minor = (int(x) for x in f.firmware.split("."))
            out.append(("hello", f.seq, (major, minor, f.serial, f.interval_s)))
        else:
            out.append(("fault", f.seq, (int(f.code),)))
    assert not framer.errors
    return out


def parse(data: bytes) -> list[tuple[str, int, tuple[int, ...]]]:
    return gateway_frames(data) if gateway_bedpad is not None else list(reference_frames(data))


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    try:
        yield master, path
    finally:
        os.close(master)
        os.close(slave)


def uv(adc_u16: int) -> int:
    """The pin voltage that reads ``adc_u16`` on the host ADC (2.5 V full scale)."""
    return -(-adc_u16 * 2_500_000 // 65535)


def test_firmware_encoder_matches_the_gateway_vectors(tmp_path: Path) -> None:
    fw = Board(tmp_path).load("bedpad")
    assert fw.crc16_ccitt(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value
    assert fw.status_frame(7, fw.IN, 40000) == VECTORS["status seq 7, in bed, pressure 40000"]
    assert fw.hello_frame(0, 0xA1B2C3D4, 30) == VECTORS["hello seq 0, v1.0, serial a1b2c3d4, 30 s"]
    assert fw.fault_frame(9, fw.FAULT_OPEN) == VECTORS["fault seq 9, open circuit"]
    assert fw.status_frame(7, fw.IN, 1234) == DOC_EXAMPLES["status seq 7, in bed, pressure 1234"]
    assert fw.status_frame(8, fw.OUT, 12, fw.FLAG_BATTERY_LOW) == (
        DOC_EXAMPLES["status seq 8, out of bed, pressure 12, battery low"]
    )
    assert fw.hello_frame(0, 0x00C0FFEE, 5, 1, 2) == DOC_EXAMPLES["hello seq 0, 1.2, serial 00C0FFEE, 5 s"]
    for raw in [*VECTORS.values(), *DOC_EXAMPLES.values()]:
        assert len(parse(raw)) == 1


def test_pad_over_a_real_pty(tmp_path: Path, pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    # Opened first, as the gateway keeps it open: pyserial puts the tty in raw mode (no echo,
    # no CR/LF translation) and flushes its input when it opens.
    port = serial.Serial(path, 9600, timeout=2)
    b = Board(tmp_path / "flash", mac="A4:C1:38:F0:00:03")
    (b.flash / "config.py").write_text("INTERVAL_S = 10\n")
    b.attach_uart(1, master)
    b.set_adc_uv(4, uv(5000))  # empty bed: the 1 MOhm across the mat
    app = b.load("bedpad").App()
    b.run(app, 2000)
    b.set_adc_uv(4, uv(36000))  # someone lies down
    b.run(app, 2000)
    b.set_adc_uv(4, uv(17000))  # turning over: inside the hysteresis band, still in bed
    b.run(app, 2000)
    b.set_adc_uv(4, uv(0))  # the mat's plug is pulled
    b.run(app, 2000)
    b.set_adc_uv(4, uv(4000))  # plugged in again, bed empty
    b.run(app, 11_000)  # and a periodic status after INTERVAL_S
    sent = bytes(b.machine.uart_log[1])
    with port:
        got = port.read(len(sent))
    assert got == sent  # raw mode on a real tty: every byte through unchanged

    frames = parse(got)
    assert [seq for _, seq, _ in frames] == list(range(len(frames)))
    assert frames[0] == ("hello", 0, (1, 0, 0x38F00003, 10))
    summary = [(kind, fields[0], fields[-1]) for kind, _, fields in frames[1:]]
    assert summary == [
        ("status", 0, 0),  # out of bed at power-up
        ("status", 1, 0),  # in bed once the median of 5 samples crossed ON_LEVEL
        ("fault", 1, 1),  # open circuit
        ("status", 2, 2),  # state unknown, tamper flag: the mat's cable is out
        ("status", 0, 0),  # back, empty bed
        ("status", 0, 0),  # the periodic report
    ]
    pressures = [fields[1] for kind, _, fields in frames if kind == "status"]
    assert pressures[1] == 36000
    assert (pressures[0], pressures[-1]) == (5000, 4000)
