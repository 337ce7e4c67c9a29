"""Seeed MR60FDA2 (fall) and MR60BHA2 (breathing, heart rate) 60 GHz radars, 115200 8N1.

Both speak the same TinyFrame-style format (header fields big-endian, payload values
little-endian)::

    01 | id u16 | len u16 | type u16 | ~xor(header) | data[len] | ~xor(data)

The data checksum is absent when ``len`` is 0. Types the gateway uses:

==========  ======================================  =====================================
type        payload                                 decoded as
==========  ======================================  =====================================
0x0E02      u8 fall (0/1)                           :class:`FallStatus` (MR60FDA2)
0x0F09      u8 or u16 presence                      :class:`Presence` (both)
0x0A14      f32 breaths per minute                  :class:`BreathRate` (MR60BHA2)
0x0A15      f32 beats per minute                    :class:`HeartRate` (MR60BHA2)
0x0A16      u32 valid flag, f32 range cm            :class:`TargetDistance` (MR60BHA2)
0x0A13      f32 total, breath, heart phase          :class:`Phases` (MR60BHA2)
other       anything                                :class:`MR60Frame` (kept raw)
==========  ======================================  =====================================
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from functools import reduce
from operator import xor

from gateway.errors import FrameError

from .framing import NEED_MORE, Framer

PROTOCOL = "mr60"
BAUD = 115200
SOF = 0x01
HEADER_LEN = 8
MAX_DATA = 512

TYPE_PHASES = 0x0A13
TYPE_BREATH_RATE = 0x0A14
TYPE_HEART_RATE = 0x0A15
TYPE_DISTANCE = 0x0A16
TYPE_FALL = 0x0E02
TYPE_PRESENCE = 0x0F09


def checksum(data: bytes) -> int:
    """The radar's checksum: the inverted XOR of the bytes."""
    return ~reduce(xor, data, 0) & 0xFF


@dataclass(frozen=True, slots=True)
class MR60Frame:
    """A well-formed frame of a type the gateway does not interpret."""

    frame_id: int
    frame_type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class FallStatus:
    frame_id: int
    fall: bool


@dataclass(frozen=True, slots=True)
class Presence:
    frame_id: int
    present: bool


@dataclass(frozen=True, slots=True)
class BreathRate:
    frame_id: int
    breaths_per_min: float


@dataclass(frozen=True, slots=True)
class HeartRate:
    frame_id: int
    beats_per_min: float


@dataclass(frozen=True, slots=True)
class TargetDistance:
    frame_id: int
    valid: bool
    distance_cm: float


@dataclass(frozen=True, slots=True)
class Phases:
    frame_id: int
    total_phase: float
    breath_phase: float
    heart_phase: float


MR60Message = MR60Frame | FallStatus | Presence | BreathRate | HeartRate | TargetDistance | Phases


def encode(frame_type: int, data: bytes = b"", frame_id: int = 0) -> bytes:
    """A whole frame (for commands, emulators and tests)."""
    header = struct.pack(">BHHH", SOF, frame_id, len(data), frame_type)
    out = header + bytes([checksum(header)]) + data
    if data:
        out += bytes([checksum(data)])
    return out


def _f32(data: bytes, offset: int, raw: bytes) -> float:
    (value,) = struct.unpack_from("<f", data, offset)
    if not math.isfinite(value):
        raise FrameError("value not finite", raw, protocol=PROTOCOL)
    return float(value)


def decode_payload(frame_id: int, frame_type: int, data: bytes, raw: bytes = b"") -> MR60Message:
    """Interpret a checked frame's payload by its type."""

    def need(n: int) -> None:
        if len(data) < n:
            raise FrameError(f"type 0x{frame_type:04X} payload too short", raw, protocol=PROTOCOL)

    if frame_type == TYPE_FALL:
        need(1)
        return FallStatus(frame_id, data[0] != 0)
    if frame_type == TYPE_PRESENCE:
        need(1)
        return Presence(frame_id, any(data[:2]))
    if frame_type == TYPE_BREATH_RATE:
        need(4)
        return BreathRate(frame_id, round(_f32(data, 0, raw), 3))
    if frame_type == TYPE_HEART_RATE:
        need(4)
        return HeartRate(frame_id, round(_f32(data, 0, raw), 3))
    if frame_type == TYPE_DISTANCE:
        need(8)
        (flag,) = struct.unpack_from("<I", data)
        return TargetDistance(frame_id, flag != 0, round(_f32(data, 4, raw), 3))
    if frame_type == TYPE_PHASES:
        need(12)
        return Phases(
            frame_id,
            round(_f32(data, 0, raw), 4),
            round(_f32(data, 4, raw), 4),
            round(_f32(data, 8, raw), 4),
        )
    return MR60Frame(frame_id, frame_type, bytes(data))


class MR60Framer(Framer[MR60Message]):
    protocol = PROTOCOL
    max_frame = HEADER_LEN + MAX_DATA + 1

    def _extract(self, buf: bytearray, pos: int) -> tuple[int, MR60Message | FrameError | None]:
        start = buf.find(SOF, pos)
        if start < 0:
            self.garbage_bytes += len(buf) - pos
            return len(buf), NEED_MORE
        self.garbage_bytes += start - pos
        if len(buf) - start < HEADER_LEN:
            return start, NEED_MORE
        header = bytes(buf[start : start + HEADER_LEN - 1])
        # A 0x01 is common in noise and in other frames' data: a header whose checksum
        # fails was never a frame, so it is skipped as garbage, not reported.
        if checksum(header) != buf[start + HEADER_LEN - 1]:
            self.garbage_bytes += 1
            return start + 1, NEED_MORE
        _, frame_id, length, frame_type = struct.unpack(">BHHH", header)
        if length > MAX_DATA:
            return start + 1, FrameError("length out of range", header, protocol=PROTOCOL)
        end = start + HEADER_LEN + length + (1 if length else 0)
        if len(buf) < end:
            return start, NEED_MORE
        raw = bytes(buf[start:end])
        data = raw[HEADER_LEN : HEADER_LEN + length]
        if length and checksum(data) != raw[-1]:
            return start + 1, FrameError("bad data checksum", raw, protocol=PROTOCOL)
        try:
            return end, decode_payload(frame_id, frame_type, data, raw)
        except FrameError as err:
            return end, err
