"""Find out what is attached to a serial port: try each baud rate, feed every framer.

Passive by default (listens only). With ``ask=True`` it also sends queries that change
nothing on the device: RFLink ``10;PING;`` and the LD2410 read-firmware sequence
(enable configuration, read firmware version, end configuration), so devices that are
quiet until spoken to (an RFLink with no radio traffic) can be recognised.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import serial

from gateway.errors import DeviceUnavailableError

from . import ld2410, mr60, rflink
from .protocol import PROTOCOLS
from .rf433 import RadioEvent

DEFAULT_BAUDS = (256000, 115200, 57600, 9600)
_FRAMERS = ("ld2410", "mr60fda2", "rflink", "rtl433", "bedpad")
_BHA2 = (mr60.HeartRate, mr60.BreathRate, mr60.TargetDistance, mr60.Phases)


@dataclass(frozen=True, slots=True)
class Attempt:
    baud: int
    bytes_read: int
    frames: dict[str, int]
    rejected: dict[str, int]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    port: str
    protocol: str | None
    baud: int | None
    description: str
    frames: int
    attempts: tuple[Attempt, ...] = ()
    samples: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "protocol": self.protocol,
            "baud": self.baud,
            "description": self.description,
            "frames": self.frames,
            "samples": list(self.samples),
            "attempts": [
                {"baud": a.baud, "bytes": a.bytes_read, "frames": a.frames, "rejected": a.rejected}
                for a in self.attempts
            ],
        }


def _queries() -> bytes:
    return (
        b"10;PING;\r\n"
        + ld2410.encode_command(ld2410.CMD_ENABLE_CONFIG, b"\x01\x00")
        + ld2410.encode_command(ld2410.CMD_READ_FIRMWARE)
        + ld2410.encode_command(ld2410.CMD_END_CONFIG)
    )


def _name(proto: str, frames: Sequence[object]) -> str:
    if proto != "mr60fda2":
        return proto
    if any(isinstance(f, _BHA2) for f in frames):
        return "mr60bha2"
    return "mr60fda2"


def _useful(proto: str, frames: Sequence[object]) -> int:
    """Frames that identify the device (an RFLink banner counts; a PING echo does not)."""
    if proto == "rflink":
        return sum(1 for f in frames if isinstance(f, RadioEvent | rflink.RFLinkInfo))
    if proto == "ld2410":
        return sum(1 for f in frames if not isinstance(f, ld2410.LD2410Command))
    return len(frames)


def listen(port: Any, seconds: float, sink: Callable[[bytes], None]) -> int:
    """Read for ``seconds``, handing bytes to ``sink``; returns the byte count."""
    total = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        data = port.read(max(1, min(port.in_waiting, 4096)))
        if data:
            total += len(data)
            sink(data)
    return total


def probe(
    url: str,
    *,
    bauds: Sequence[int] = DEFAULT_BAUDS,
    seconds: float = 1.5,
    ask: bool = False,
) -> ProbeResult:
    """Open ``url`` at each baud rate in turn and report the protocol that decodes best."""
    attempts: list[Attempt] = []
    best: tuple[int, str, int, list[object]] | None = None
    is_serial = "://" not in url
    for baud in bauds if is_serial else bauds[:1]:
        framers = {name: PROTOCOLS[name].framer() for name in _FRAMERS}
        seen: dict[str, list[object]] = {name: [] for name in _FRAMERS}

        def sink(data: bytes, framers: dict[str, Any] = framers,
                 seen: dict[str, list[object]] = seen) -> None:
            for name, fr in framers.items():
                seen[name] += fr.feed(data)

        try:
            port = serial.serial_for_url(url, baudrate=baud, timeout=0.1)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceUnavailableError(f"{url}: {exc}") from exc
        try:
            if ask:
                port.write(_queries())
            n = listen(port, seconds, sink)
        except (serial.SerialException, OSError) as exc:
            raise DeviceUnavailableError(f"{url}: {exc}") from exc
        finally:
            port.close()
        counts = {name: _useful(name, seen[name]) for name in _FRAMERS}
        attempts.append(Attempt(baud, n, {k: v for k, v in counts.items() if v},
                                {k: f.rejected for k, f in framers.items() if f.rejected}))
        name, count = max(counts.items(), key=lambda kv: kv[1])
        if count and (best is None or count > best[0]):
            best = (count, name, baud, seen[name])
        if count >= 3:
            break  # clearly recognised; no need to try slower rates
    if best is None:
        return ProbeResult(url, None, None, "nothing recognised", 0, tuple(attempts))
    count, name, baud, frames = best
    proto = _name(name, frames)
    firmware = [f.firmware for f in frames if isinstance(f, ld2410.LD2410Ack) and f.firmware]
    samples = tuple(repr(f)[:200] for f in frames[:3])
    samples += tuple(f"firmware {v}" for v in firmware[:1])
    return ProbeResult(url, proto, baud if is_serial else None, PROTOCOLS[proto].description,
                       count, tuple(attempts), samples)
