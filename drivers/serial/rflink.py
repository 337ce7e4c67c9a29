"""RFLink 433 MHz receiver (57600 8N1), text lines ``20;SEQ;PROTOCOL;KEY=VALUE;...;``.

Lines from the receiver start with ``20``; ``SEQ`` is a hex counter. Device lines carry
``ID=`` (hex), usually ``SWITCH=`` and ``CMD=`` (ON, OFF, ALLON, ALLOFF), and depending on
the device ``SMOKEALERT=ON``, ``PIR=ON``, ``BAT=OK|LOW``, ``CHIME=``. Lines without
``ID=`` (the start-up banner, ``OK``, ``VER=...``, ``DEBUG``) are :class:`RFLinkInfo`.
Lines starting ``10;`` are commands to the receiver (an echo) and are ignored; ``11;`` are
RFLink-to-RFLink relays (``11;20;...``) and are decoded like the ``20;`` line they carry.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import FrameError

from .framing import LineFramer
from .rf433 import RadioEvent

PROTOCOL = "rflink"
BAUD = 57600

_ON = {"ON", "ALLON", "OPEN", "ALARM", "1"}
_OFF = {"OFF", "ALLOFF", "CLOSED", "CLOSE", "0"}
_ALARM_KEYS = {"SMOKEALERT": "smoke"}
_STATE_KEYS = ("CMD", "PIR", "SMOKEALERT")


@dataclass(frozen=True, slots=True)
class RFLinkInfo:
    """A receiver line that is not a device (banner, OK, version, debug)."""

    seq: int
    text: str


RFLinkLine = RadioEvent | RFLinkInfo


def decode_line(line: bytes) -> RFLinkLine | None:
    """One line without its terminator. Raises FrameError for malformed lines."""
    try:
        text = line.decode("ascii").strip()
    except UnicodeDecodeError:
        raise FrameError("not ascii", line, protocol=PROTOCOL) from None
    if text.startswith("10;"):
        return None
    parts = text.split(";")
    if parts and parts[-1] == "":
        parts.pop()
    if len(parts) > 2 and parts[0] == "11" and parts[1] == "20":
        parts = parts[1:]  # "11;20;..." is a relayed "20;..." line
    if len(parts) < 3 or parts[0] not in ("20", "11"):
        raise FrameError("not an RFLink line", line, protocol=PROTOCOL)
    try:
        seq = int(parts[1], 16)
    except ValueError:
        raise FrameError("bad sequence number", line, protocol=PROTOCOL) from None
    name = parts[2]
    pairs: list[tuple[str, str]] = []
    for item in parts[3:]:
        key, sep, value = item.partition("=")
        if not sep:
            return RFLinkInfo(seq, ";".join(parts[2:]))
        pairs.append((key.upper(), value))
    fields = dict(pairs)
    if "ID" not in fields:
        return RFLinkInfo(seq, ";".join(parts[2:]))
    device_id = fields["ID"].lower()
    if not device_id or not all(c in "0123456789abcdef" for c in device_id):
        raise FrameError("bad device id", line, protocol=PROTOCOL)
    active: bool | None = None
    for key in _STATE_KEYS:
        value = fields.get(key, "").upper()
        if value in _ON:
            active = True
            break
        if value in _OFF:
            active = False
            break
    alarm = next(
        (kind for key, kind in _ALARM_KEYS.items() if fields.get(key, "").upper() == "ON"), None
    )
    bat = fields.get("BAT", "").upper()
    return RadioEvent(
        source=PROTOCOL,
        protocol=name.lower().replace(" ", "_"),
        device_id=device_id,
        switch=fields.get("SWITCH", "").lower() or None,
        active=active,
        alarm=alarm,
        battery_low={"LOW": True, "OK": False}.get(bat),
        fields=tuple(pairs),
    )


class RFLinkFramer(LineFramer[RFLinkLine]):
    protocol = PROTOCOL
    max_frame = 512

    def decode_line(self, line: bytes) -> RFLinkLine | FrameError | None:
        try:
            return decode_line(line)
        except FrameError as err:
            return err
