"""The Anxin bed pad: the project's own framed protocol (see docs/bedpad-protocol.md).

::

    A5 5A | len u8 | type u8 | seq u8 | payload[len-2] | crc u16 big-endian

``len`` counts type, seq and payload (2..66). ``crc`` is CRC-16/CCITT-FALSE (polynomial
0x1021, initial 0xFFFF, no reflection, no final XOR) over len, type, seq and payload.
Multi-byte payload fields are little-endian. The pad reports raw state; the gateway
debounces it (:class:`BedDebouncer`) so a person turning over is not a bed exit.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from gateway.errors import FrameError

from .framing import NEED_MORE, Framer

PROTOCOL = "bedpad"
BAUD = 9600
SYNC = b"\xa5\x5a"
MAX_LEN = 66
MIN_LEN = 2

TYPE_STATUS = 0x01
TYPE_HELLO = 0x02
TYPE_FAULT = 0x03

FLAG_BATTERY_LOW = 0x01
FLAG_TAMPER = 0x02


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE; ``crc16_ccitt(b"123456789") == 0x29B1``."""
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


class BedState(enum.IntEnum):
    OUT = 0
    IN = 1
    UNKNOWN = 2


class FaultCode(enum.IntEnum):
    OPEN_CIRCUIT = 1
    SHORT_CIRCUIT = 2
    CALIBRATION = 3
    OTHER = 255


@dataclass(frozen=True, slots=True)
class BedStatus:
    """Raw pad state, sent on every change and at least every ``interval_s`` of its HELLO."""

    seq: int
    state: BedState
    pressure: int
    battery_low: bool
    tamper: bool


@dataclass(frozen=True, slots=True)
class BedHello:
    """Sent once at power-up."""

    seq: int
    firmware: str
    serial: int
    interval_s: int


@dataclass(frozen=True, slots=True)
class BedFault:
    seq: int
    code: FaultCode


BedFrame = BedStatus | BedHello | BedFault


def encode(frame_type: int, seq: int, payload: bytes) -> bytes:
    body = bytes([len(payload) + 2, frame_type, seq & 0xFF]) + payload
    return SYNC + body + struct.pack(">H", crc16_ccitt(body))


def encode_status(seq: int, state: BedState, pressure: int, flags: int = 0) -> bytes:
    return encode(TYPE_STATUS, seq, struct.pack("<BHB", state, pressure, flags))


def encode_hello(seq: int, major: int, minor: int, serial: int, interval_s: int) -> bytes:
    return encode(TYPE_HELLO, seq, struct.pack("<BBIB", major, minor, serial, interval_s))


def decode_body(frame_type: int, seq: int, payload: bytes, raw: bytes = b"") -> BedFrame:
    def bad(reason: str) -> FrameError:
        return FrameError(reason, raw or payload, protocol=PROTOCOL)

    if frame_type == TYPE_STATUS:
        if len(payload) < 4:
            raise bad("status payload too short")
        state, pressure, flags = struct.unpack_from("<BHB", payload)
        if state > 2:
            raise bad("bad bed state")
        return BedStatus(
            seq,
            BedState(state),
            pressure,
            bool(flags & FLAG_BATTERY_LOW),
            bool(flags & FLAG_TAMPER),
        )
    if frame_type == TYPE_HELLO:
        if len(payload) < 7:
            raise bad("hello payload too short")
        major, minor, serial, interval = struct.unpack_from("<BBIB", payload)
        return BedHello(seq, f"{major}.{minor}", serial, interval)
    if frame_type == TYPE_FAULT:
        if len(payload) < 1:
            raise bad("fault payload too short")
        code = payload[0]
        return BedFault(seq, FaultCode(code) if code in (1, 2, 3) else FaultCode.OTHER)
    raise bad(f"unknown frame type 0x{frame_type:02X}")


class BedPadFramer(Framer[BedFrame]):
    protocol = PROTOCOL
    max_frame = 2 + 1 + MAX_LEN + 2

    def _extract(self, buf: bytearray, pos: int) -> tuple[int, BedFrame | FrameError | None]:
        start, found = self._seek(buf, pos, SYNC)
        if not found or len(buf) - start < 3:
            return start, NEED_MORE
        length = buf[start + 2]
        if not MIN_LEN <= length <= MAX_LEN:
            # Not a frame: A5 5A followed by an impossible length is noise.
            self.garbage_bytes += 1
            return start + 1, NEED_MORE
        end = start + 3 + length + 2
        if len(buf) < end:
            return start, NEED_MORE
        raw = bytes(buf[start:end])
        body = raw[2:-2]
        (crc,) = struct.unpack(">H", raw[-2:])
        if crc16_ccitt(body) != crc:
            return start + 1, FrameError("bad crc", raw, protocol=PROTOCOL)
        try:
            return end, decode_body(body[1], body[2], body[3:], raw)
        except FrameError as err:
            return end, err


class BedDebouncer:
    """Turns the pad's raw in/out state into debounced IN_BED changes.

    A new raw state must hold for ``enter_s`` (getting into bed) or ``exit_s`` (leaving it)
    before it is reported; a flicker back cancels it. UNKNOWN never changes the state.
    Pure: the caller passes monotonic seconds.
    """

    def __init__(self, enter_s: float = 5.0, exit_s: float = 10.0) -> None:
        self.enter_s = enter_s
        self.exit_s = exit_s
        self.state: bool | None = None
        self._candidate: bool | None = None
        self._since = 0.0

    def feed(self, raw: BedState, now_s: float) -> bool | None:
        """Take a raw state; return the new debounced state when it changes, else None."""
        if raw is BedState.UNKNOWN:
            return None
        value = raw is BedState.IN
        if self.state is None:
            # First report after start: nothing to debounce against; report it as is.
            self.state = value
            self._candidate = None
            return value
        if value == self.state:
            self._candidate = None
            return None
        if self._candidate != value:
            self._candidate = value
            self._since = now_s
        return self.tick(now_s)

    def tick(self, now_s: float) -> bool | None:
        """Time passed without a new frame; return the new state if the wait is over."""
        if self._candidate is None:
            return None
        hold = self.enter_s if self._candidate else self.exit_s
        if now_s - self._since >= hold:
            self.state = self._candidate
            self._candidate = None
            return self.state
        return None

    @property
    def pending_since(self) -> float | None:
        return self._since if self._candidate is not None else None
