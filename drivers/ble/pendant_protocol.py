"""The Anxin pendant's accelerometer frame (GATT notification), pure: bytes in, frames out.

Layout (little-endian; docs/pendant-protocol.md is the reference)::

    offset  size  field
    0       1     magic 0xA5
    1       1     version (1)
    2       2     seq: frame sequence number, u16, +1 per frame, wraps 65535 -> 0
    4       1     n: samples in this frame, 1..MAX_SAMPLES
    5       2     scale_ug: micro-g per count, u16 (3906 = 1/256 g, the ADXL345 full-res step)
    7       6n    n samples of int16 x, y, z
    7+6n    1     CRC-8 (polynomial 0x07, init 0x00) over bytes 0 .. 6+6n

Samples are at 50 Hz, oldest first. A notification normally carries one whole frame; the
:class:`FrameDecoder` also accepts them split or joined (a byte at a time, as over a debug
UART), resynchronising on the magic byte after corruption. :class:`SeqTracker` turns
sequence numbers into lost-sample counts so the detector never splices across a gap.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from gateway.errors import FrameError

PROTOCOL = "anxin-pendant"
MAGIC = 0xA5
VERSION = 1
HEADER = 7
MAX_SAMPLES = 40
SAMPLE_RATE_HZ = 50

SERVICE_UUID = "7a6e0001-5f1c-4a7e-9f3b-616e78696e01"
ACCEL_CHAR_UUID = "7a6e0002-5f1c-4a7e-9f3b-616e78696e01"  # notify: accelerometer frames
CANCEL_CHAR_UUID = "7a6e0003-5f1c-4a7e-9f3b-616e78696e01"  # notify: 1 byte, 0x01 = "I'm OK"
BATTERY_LEVEL_UUID = "00002a19-0000-1000-8000-00805f9b34fb"  # standard Battery Level, u8 %
BATTERY_SERVICE_UUID = "0000180f-0000-1000-8000-00805f9b34fb"  # standard Battery service
# The pendant's GATT database: service UUID -> [(characteristic UUID, flags)] (what the
# firmware exports, and what rigs put into a mock BlueZ).
GATT_SERVICES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    SERVICE_UUID: [(ACCEL_CHAR_UUID, ("notify",)), (CANCEL_CHAR_UUID, ("read", "notify"))],
    BATTERY_SERVICE_UUID: [(BATTERY_LEVEL_UUID, ("read", "notify"))],
}

_HEAD = struct.Struct("<BBHBH")


def crc8(data: bytes) -> int:
    """CRC-8, polynomial x^8 + x^2 + x + 1 (0x07), initial value 0, no reflection."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


@dataclass(frozen=True, slots=True)
class AccelFrame:
    seq: int
    scale_ug: int
    samples: tuple[tuple[int, int, int], ...]  # raw counts

    @property
    def samples_g(self) -> list[list[float]]:
        k = self.scale_ug * 1e-6
        return [[x * k, y * k, z * k] for x, y, z in self.samples]


def frame_length(n: int) -> int:
    return HEADER + 6 * n + 1


def encode_frame(seq: int, samples: list[tuple[int, int, int]], scale_ug: int = 3906) -> bytes:
    """The pendant's side (and tests): build one frame."""
    if not 1 <= len(samples) <= MAX_SAMPLES:
        raise ValueError(f"1..{MAX_SAMPLES} samples per frame, got {len(samples)}")
    body = _HEAD.pack(MAGIC, VERSION, seq & 0xFFFF, len(samples), scale_ug)
    body += b"".join(struct.pack("<hhh", *s) for s in samples)
    return body + bytes([crc8(body)])


def parse_frame(raw: bytes) -> AccelFrame:
    """Exactly one frame -> AccelFrame, or FrameError saying what is wrong."""
    if len(raw) < HEADER + 7:
        raise FrameError("short frame", raw, protocol=PROTOCOL)
    magic, version, seq, n, scale = _HEAD.unpack_from(raw)
    if magic != MAGIC:
        raise FrameError("bad magic", raw, protocol=PROTOCOL)
    if version != VERSION:
        raise FrameError(f"unsupported version {version}", raw, protocol=PROTOCOL)
    if not 1 <= n <= MAX_SAMPLES:
        raise FrameError(f"bad sample count {n}", raw, protocol=PROTOCOL)
    if len(raw) != frame_length(n):
        raise FrameError(
            f"length {len(raw)} != {frame_length(n)} for {n} samples", raw, protocol=PROTOCOL
        )
    if crc8(raw[:-1]) != raw[-1]:
        raise FrameError("bad crc", raw, protocol=PROTOCOL)
    if scale == 0:
        raise FrameError("zero scale", raw, protocol=PROTOCOL)
    vals = struct.unpack_from(f"<{3 * n}h", raw, HEADER)
    samples = tuple((vals[i], vals[i + 1], vals[i + 2]) for i in range(0, 3 * n, 3))
    return AccelFrame(seq, scale, samples)


class FrameDecoder:
    """Bytes in any chunking -> frames and errors, in order. Resyncs on the magic byte."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[AccelFrame | FrameError]:
        self._buf += data
        out: list[AccelFrame | FrameError] = []
        while self._buf:
            start = self._buf.find(MAGIC)
            if start < 0:
                out.append(FrameError("no magic", bytes(self._buf), protocol=PROTOCOL))
                self._buf.clear()
                break
            if start > 0:
                out.append(
                    FrameError("junk before frame", bytes(self._buf[:start]), protocol=PROTOCOL)
                )
                del self._buf[:start]
            if len(self._buf) < HEADER:
                break
            n = self._buf[4]
            if self._buf[1] != VERSION or not 1 <= n <= MAX_SAMPLES:
                out.append(FrameError("bad header", bytes(self._buf[:HEADER]), protocol=PROTOCOL))
                del self._buf[:1]
                continue
            size = frame_length(n)
            if len(self._buf) < size:
                break
            raw = bytes(self._buf[:size])
            try:
                frame = parse_frame(raw)
            except FrameError as err:
                out.append(err)
                del self._buf[:1]  # the magic may have been data: look again one byte on
                continue
            del self._buf[:size]
            out.append(frame)
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


@dataclass(frozen=True, slots=True)
class SeqResult:
    lost_frames: int  # frames missing between the previous frame and this one
    duplicate: bool  # the same or an older frame again: drop it


class SeqTracker:
    """Sequence numbers -> gaps. The first frame (and one after reset) has no gap."""

    def __init__(self) -> None:
        self.last: int | None = None
        self.lost_total = 0

    def reset(self) -> None:
        """Link lost: the next frame starts afresh (the pendant may have rebooted)."""
        self.last = None

    def update(self, seq: int) -> SeqResult:
        if self.last is None:
            self.last = seq
            return SeqResult(0, duplicate=False)
        diff = (seq - self.last) & 0xFFFF
        if diff == 0 or diff > 0x8000:
            return SeqResult(0, duplicate=True)
        self.last = seq
        self.lost_total += diff - 1
        return SeqResult(diff - 1, duplicate=False)
