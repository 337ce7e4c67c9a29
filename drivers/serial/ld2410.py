"""HLK-LD2410 / LD2410B / LD2410C 24 GHz presence radar, serial protocol (256000 8N1).

Reports (radar -> host, little-endian)::

    F4 F3 F2 F1 | len u16 | type | AA | target | [gates] | 55 | 00 | F8 F7 F6 F5

type is 01 (engineering) or 02 (basic).

target (9 bytes): state u8 (0 none, 1 moving, 2 still, 3 both), moving distance u16 cm,
moving energy u8, still distance u16 cm, still energy u8, detection distance u16 cm.
Engineering mode adds: max moving gate N u8, max still gate M u8, N+1 moving gate energies,
M+1 still gate energies, then (firmware 2.x) light level u8 and OUT pin u8.

Commands and acknowledgements (both directions)::

    FD FC FB FA | len u16 | command word u16 | value | 04 03 02 01

An acknowledgement echoes the command word with bit 8 set (0x01FF for 0x00FF) and starts
its value with a status u16 (0 = success). Commands other than 0x00FF (enable
configuration) are accepted only between enable and end (0x00FE) configuration.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from gateway.errors import FrameError

from .framing import NEED_MORE, Framer

PROTOCOL = "ld2410"
BAUD = 256000
DATA_HEAD = b"\xf4\xf3\xf2\xf1"
DATA_TAIL = b"\xf8\xf7\xf6\xf5"
CMD_HEAD = b"\xfd\xfc\xfb\xfa"
CMD_TAIL = b"\x04\x03\x02\x01"
MAX_BODY = 64

CMD_ENABLE_CONFIG = 0x00FF
CMD_END_CONFIG = 0x00FE
CMD_ENGINEERING_ON = 0x0062
CMD_ENGINEERING_OFF = 0x0063
CMD_READ_FIRMWARE = 0x00A0


class TargetState(enum.IntEnum):
    NONE = 0
    MOVING = 1
    STILL = 2
    BOTH = 3


@dataclass(frozen=True, slots=True)
class LD2410Report:
    """One periodic report (about 10 per second)."""

    engineering: bool
    target_state: TargetState
    moving_distance_cm: int
    moving_energy: int
    still_distance_cm: int
    still_energy: int
    detection_distance_cm: int
    moving_gate_energies: tuple[int, ...] = ()
    still_gate_energies: tuple[int, ...] = ()
    light: int | None = None
    out_pin: int | None = None

    @property
    def presence(self) -> bool:
        return self.target_state is not TargetState.NONE

    @property
    def distance_cm(self) -> int:
        """The distance to report for the room: the nearest detected target.

        Some firmware reports 0 for the distance of a target it flags (the protocol
        document's own basic-mode example does); the detection distance stands in then.
        """
        candidates: list[int] = []
        if self.target_state in (TargetState.MOVING, TargetState.BOTH):
            candidates.append(self.moving_distance_cm)
        if self.target_state in (TargetState.STILL, TargetState.BOTH):
            candidates.append(self.still_distance_cm)
        nonzero = [d for d in candidates if d > 0]
        if nonzero:
            return min(nonzero)
        return self.detection_distance_cm if candidates else 0


@dataclass(frozen=True, slots=True)
class LD2410Command:
    """A command frame (host -> radar; seen when a port is looped back or sniffed)."""

    command: int
    value: bytes


@dataclass(frozen=True, slots=True)
class LD2410Ack:
    """The radar's answer to a command."""

    command: int
    status: int
    value: bytes

    @property
    def ok(self) -> bool:
        return self.status == 0

    @property
    def firmware(self) -> str | None:
        """``V1.07.22091516`` from a read-firmware (0x00A0) answer, else None."""
        if self.command != CMD_READ_FIRMWARE or len(self.value) < 8:
            return None
        minor, major = self.value[2], self.value[3]
        (build,) = struct.unpack_from("<I", self.value, 4)
        return f"V{major}.{minor:02d}.{build:08X}"


LD2410Frame = LD2410Report | LD2410Command | LD2410Ack


def encode_command(command: int, value: bytes = b"") -> bytes:
    """The bytes that send ``command`` with ``value`` to the radar."""
    body = struct.pack("<H", command) + value
    return CMD_HEAD + struct.pack("<H", len(body)) + body + CMD_TAIL


def config_session(*commands: tuple[int, bytes]) -> bytes:
    """``commands`` wrapped in enable / end configuration, as the radar requires.

    The radar stops reporting while configuration is enabled and answers each command
    with an :class:`LD2410Ack`; end configuration resumes the reports.
    """
    out = encode_command(CMD_ENABLE_CONFIG, b"\x01\x00")
    for command, value in commands:
        out += encode_command(command, value)
    return out + encode_command(CMD_END_CONFIG)


def encode_report(report: LD2410Report) -> bytes:
    """The bytes a radar sends for ``report`` (for emulators and tests)."""
    body = bytearray([1 if report.engineering else 2, 0xAA])
    body += struct.pack(
        "<BHBHBH",
        report.target_state,
        report.moving_distance_cm,
        report.moving_energy,
        report.still_distance_cm,
        report.still_energy,
        report.detection_distance_cm,
    )
    if report.engineering:
        body += bytes([len(report.moving_gate_energies) - 1, len(report.still_gate_energies) - 1])
        body += bytes(report.moving_gate_energies) + bytes(report.still_gate_energies)
        if report.light is not None:
            body += bytes([report.light, report.out_pin or 0])
    body += b"\x55\x00"
    return DATA_HEAD + struct.pack("<H", len(body)) + bytes(body) + DATA_TAIL


def decode_report(body: bytes) -> LD2410Report:
    """Decode the body of a data frame (between length and tail)."""

    def bad(reason: str) -> FrameError:
        return FrameError(reason, body, protocol=PROTOCOL)

    if len(body) < 13:
        raise bad("report too short")
    kind, head = body[0], body[1]
    if kind not in (1, 2) or head != 0xAA:
        raise bad("bad report type or head")
    if body[-2] != 0x55 or body[-1] != 0x00:
        raise bad("bad report tail")
    state, md, me, sd, se, dd = struct.unpack_from("<BHBHBH", body, 2)
    if state > 3:
        raise bad("bad target state")
    if kind == 2:
        if len(body) != 13:
            raise bad("basic report length")
        return LD2410Report(False, TargetState(state), md, me, sd, se, dd)
    if len(body) < 15:
        raise bad("engineering report too short")
    n_move, n_still = body[11] + 1, body[12] + 1
    gates_end = 13 + n_move + n_still
    extra = len(body) - 2 - gates_end
    if extra < 0 or extra > 4:
        raise bad("engineering report length")
    moving = tuple(body[13 : 13 + n_move])
    still = tuple(body[13 + n_move : gates_end])
    light = body[gates_end] if extra >= 1 else None
    out_pin = body[gates_end + 1] if extra >= 2 else None
    return LD2410Report(True, TargetState(state), md, me, sd, se, dd, moving, still, light, out_pin)


def decode_command(body: bytes) -> LD2410Command | LD2410Ack:
    if len(body) < 2:
        raise FrameError("command too short", body, protocol=PROTOCOL)
    (word,) = struct.unpack_from("<H", body)
    if word & 0x0100:
        if len(body) < 4:
            raise FrameError("ack without status", body, protocol=PROTOCOL)
        (status,) = struct.unpack_from("<H", body, 2)
        return LD2410Ack(word & ~0x0100, status, bytes(body[4:]))
    return LD2410Command(word, bytes(body[2:]))


class LD2410Framer(Framer[LD2410Frame]):
    protocol = PROTOCOL
    max_frame = 4 + 2 + MAX_BODY + 4

    def _extract(self, buf: bytearray, pos: int) -> tuple[int, LD2410Frame | FrameError | None]:
        start, found = self._seek(buf, pos, DATA_HEAD, CMD_HEAD)
        if not found:
            return start, NEED_MORE
        if len(buf) - start < 6:
            return start, NEED_MORE
        is_data = buf[start] == 0xF4
        (length,) = struct.unpack_from("<H", buf, start + 4)
        if length > MAX_BODY:
            return start + 1, FrameError(
                "length out of range", bytes(buf[start : start + 6]), protocol=PROTOCOL
            )
        end = start + 6 + length + 4
        if len(buf) < end:
            return start, NEED_MORE
        raw = bytes(buf[start:end])
        if raw[-4:] != (DATA_TAIL if is_data else CMD_TAIL):
            # Resync one byte on: a real frame may start inside this false one.
            return start + 1, FrameError("bad frame tail", raw, protocol=PROTOCOL)
        body = raw[6:-4]
        try:
            return end, decode_report(body) if is_data else decode_command(body)
        except FrameError as err:
            return end, FrameError(err.reason, raw, protocol=PROTOCOL)
