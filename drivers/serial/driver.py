"""The serial driver: one port, one protocol, readings out; unplug and re-plug survived.

The port is opened with :func:`serial.serial_for_url`, so a device path (use the stable
``/dev/serial/by-id/...`` name: ``ttyUSB0`` changes with plug order), ``socket://host:port``
(a remote serial bridge, or rtl_433 piped through ``nc``) and ``loop://`` all work. A
reader thread does the blocking reads and hands bytes to the event loop through a
bounded buffer; everything else runs on the loop. (A thread rather than an asyncio
transport: it works the same for every URL scheme, and ``loop://`` has no descriptor.)
When the port fails (unplugged, EIO, socket closed) the driver emits a ``link`` reading
``"down"``, retries with exponential backoff and jitter, and emits ``"up"`` when the port
is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import serial

from drivers.base import Driver
from gateway.backoff import Backoff
from gateway.clock import Clock
from gateway.errors import ConfigError, DeviceUnavailableError, FrameError
from gateway.model import Reading, ReadingKind, Sensor, SensorKind, Transport

from .framing import Framer
from .interpret import Interpreter, RadioInterpreter, interpreter_for
from .protocol import spec
from .rf433 import parse_address

log = logging.getLogger(__name__)

INBOX_LIMIT = 64 * 1024
"""Bytes the reader thread may be ahead of the loop; beyond it the oldest are dropped."""


class _Lost:
    """Inbox marker: the reader thread stopped because the port failed."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Inbox:
    """Bytes from the reader thread to the loop, coalesced, bounded.

    A queue of chunks would hold one item per ``read()``; a socket:// port returns one
    byte per read when bytes trickle in, so a burst would fill any chunk queue. Here the
    thread appends to one buffer and wakes the loop only when the buffer was empty.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = INBOX_LIMIT) -> None:
        self._loop = loop
        self._limit = limit
        self._lock = threading.Lock()
        self._buf = bytearray()
        self._lost: str | None = None
        self._event = asyncio.Event()
        self.dropped = 0

    def put(self, data: bytes) -> None:
        """From the reader thread."""
        with self._lock:
            wake = not self._buf
            self._buf += data
            over = len(self._buf) - self._limit
            if over > 0:
                del self._buf[:over]
                self.dropped += over
        if wake:
            self._loop.call_soon_threadsafe(self._event.set)

    def lost(self, reason: str) -> None:
        """From the reader thread: the port failed; nothing more will come."""
        with self._lock:
            self._lost = reason
        self._loop.call_soon_threadsafe(self._event.set)

    async def get(self, timeout_s: float) -> bytes | _Lost | None:
        """Bytes, or the loss once all bytes before it were taken, or None on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._event.wait()
        except TimeoutError:
            return None
        with self._lock:
            data = bytes(self._buf)
            self._buf.clear()
            lost = self._lost
            if lost is None:  # a loss stays signalled until it is taken
                self._event.clear()
        if data:
            return data
        return _Lost(lost) if lost is not None else b""


class SerialDriver(Driver):
    """Readings from one serial device (or one 433 MHz receiver and its paired sensors)."""

    name = "serial"

    def __init__(
        self,
        sensor: Sensor,
        *,
        protocol: str | None = None,
        radio_sensors: Iterable[Sensor] = (),
        clock: Clock | None = None,
        baud: int | None = None,
        backoff_min_s: float = 0.5,
        backoff_max_s: float = 30.0,
        read_timeout_s: float = 0.2,
        read_size: int = 4096,
        tick_s: float = 1.0,
        options: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        proto = protocol or str(sensor.options.get("protocol", ""))
        try:
            self.spec = spec(proto)
        except KeyError as exc:
            raise ConfigError(f"sensor {sensor.id!r}: {exc.args[0]}", key="protocol") from None
        self.sensor = sensor
        self.url = sensor.address
        self.baud = int(baud or sensor.options.get("baud") or self.spec.baud)
        self.clock = clock or Clock()
        self.backoff = Backoff(backoff_min_s, backoff_max_s)
        self.read_timeout_s = read_timeout_s
        self.read_size = read_size
        self.tick_s = tick_s
        self.framer: Framer[Any] = self.spec.framer()
        self.interpreter: Interpreter | RadioInterpreter = interpreter_for(
            self.spec.name, sensor, radio_sensors, **(options or {})
        )
        self.connected = False
        self._closing = False
        self._port: Any = None  # a pyserial port; its type differs per URL scheme
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def unpaired(self) -> list[dict[str, Any]]:
        """433 MHz devices heard but not configured (for ``anxin`` pairing listings)."""
        if not isinstance(self.interpreter, RadioInterpreter):
            return []
        return [
            {"address": d.address, "count": d.count, "first_seen": d.first_seen,
             "last_seen": d.last_seen, "sample": d.sample}
            for d in self.interpreter.unpaired.values()
        ]

    def _is_closing(self) -> bool:
        return self._closing

    async def close(self) -> None:
        self._closing = True
        await self._stop_reader()

    # ----------------------------------------------------------------- port handling

    def _open_port(self) -> Any:
        try:
            return serial.serial_for_url(
                self.url, baudrate=self.baud, timeout=self.read_timeout_s, exclusive=True
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceUnavailableError(f"{self.url}: {exc}") from exc

    def _reader(self, port: Any, inbox: _Inbox) -> None:
        reason = "reader stopped"
        try:
            while not self._stop.is_set():
                data = port.read(max(1, min(port.in_waiting, self.read_size)))
                if data:
                    inbox.put(data)
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            # TypeError/AttributeError: pyserial's posix port read after close() from
            # another thread (fd set to None) on shutdown.
            reason = f"{type(exc).__name__}: {exc}"
        except RuntimeError:  # the loop closed under us: nobody is listening any more
            return
        if not self._stop.is_set():
            with contextlib.suppress(RuntimeError):
                inbox.lost(reason)

    async def _start_reader(self) -> _Inbox:
        port = await asyncio.to_thread(self._open_port)
        inbox = _Inbox(asyncio.get_running_loop())
        self._stop = threading.Event()
        self._port = port
        self._thread = threading.Thread(
            target=self._reader, args=(port, inbox), name=f"serial-reader {self.url}", daemon=True
        )
        self._thread.start()
        return inbox

    async def _stop_reader(self) -> None:
        self._stop.set()
        port, thread = self._port, self._thread
        self._port, self._thread = None, None
        if port is not None:
            with contextlib.suppress(Exception):
                port.cancel_read()
        if thread is not None:
            await asyncio.to_thread(thread.join, 2.0)
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()

    def write(self, data: bytes) -> None:
        """Send bytes to the device (commands); DeviceUnavailableError when not connected."""
        port = self._port
        if port is None:
            raise DeviceUnavailableError(f"{self.url}: not connected")
        try:
            port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise DeviceUnavailableError(f"{self.url}: {exc}") from exc

    # ----------------------------------------------------------------- readings

    def _link(self, value: str, reason: str = "") -> Reading:
        extra: dict[str, Any] = {"port": self.url, "protocol": self.spec.name}
        if reason:
            extra["reason"] = reason
        return Reading.at(self.clock.now(), self.sensor.id, ReadingKind.LINK, value, extra=extra)

    def _decode(self, data: bytes) -> list[Reading]:
        return self._interpret(self.framer.feed(data))

    def _interpret(self, frames: list[Any]) -> list[Reading]:
        for err in self.framer.pop_errors():
            self.stats.reject(err, self.url)
        out: list[Reading] = []
        if not frames:
            return out
        stamp = self.clock.now()
        for frame in frames:
            self.stats.frames_ok += 1
            try:
                out += self.interpreter.frame(frame, stamp)
            except FrameError as err:
                self.stats.reject(err, self.url)
        return out

    async def readings(self) -> AsyncIterator[Reading]:
        announced_down = False
        try:
            while not self._closing:
                try:
                    inbox = await self._start_reader()
                except DeviceUnavailableError as exc:
                    self.stats.last_error = str(exc)
                    if not announced_down:
                        announced_down = True
                        log.warning("%s: cannot open: %s", self.url, exc)
                        yield self._link("down", str(exc))
                    await asyncio.sleep(self.backoff.next_delay())
                    continue
                self.connected = True
                self.backoff.reset()
                self.framer.reset()
                announced_down = False
                log.info("%s: open (%s, %d baud)", self.url, self.spec.name, self.baud)
                yield self._link("up")
                reason = ""
                async for reading in self._pump(inbox):
                    if isinstance(reading, _Lost):
                        reason = reading.reason
                        break
                    yield reading
                self.connected = False
                await self._stop_reader()
                if self._is_closing():
                    break
                self.stats.reconnects += 1
                self.stats.last_error = reason
                announced_down = True
                log.warning("%s: lost (%s); reconnecting", self.url, reason)
                yield self._link("down", reason)
                await asyncio.sleep(self.backoff.next_delay())
        finally:
            self.connected = False
            await self._stop_reader()

    async def _pump(self, inbox: _Inbox) -> AsyncIterator[Reading | _Lost]:
        while not self._closing:
            item = await inbox.get(self.tick_s)
            if isinstance(item, _Lost):
                yield item
                return
            if inbox.dropped:
                self.stats.last_error = f"{inbox.dropped} bytes dropped: the loop fell behind"
            if item:
                for reading in self._decode(item):
                    yield reading
            elif item is None and self.framer.pending:
                for reading in self._interpret(self.framer.resync()):
                    yield reading
            for reading in self.interpreter.tick(self.clock.now()):
                yield reading


def build_serial_drivers(
    sensors: Sequence[Sensor], clock: Clock | None = None
) -> list[SerialDriver]:
    """One driver per serial port in the config; 433 MHz sensors go to their receiver.

    A port is a sensor with ``transport = "serial"`` and a ``protocol``; a 433 MHz sensor
    (``transport = "rf433"``, address ``rflink:...`` or ``rtl433:...``) is heard through
    every receiver of that kind. A malformed 433 MHz address is a ConfigError; one with no
    receiver of its kind is only logged.
    """
    radio = [s for s in sensors if s.transport is Transport.RF433]
    ports = [s for s in sensors if s.transport is Transport.SERIAL and s.options.get("protocol")]
    for s in radio:
        parts = parse_address(s.address)
        if parts is None:
            raise ConfigError(
                f"sensor {s.id!r}: 433 MHz address {s.address!r} is not "
                "SOURCE:PROTOCOL:ID[:SWITCH] with SOURCE rflink or rtl433",
                key="address",
            )
        if not any(p.options.get("protocol") == parts[0] for p in ports):
            # Not fatal: the receiver may be added later; supervision reports the silence.
            log.warning("sensor %s: no serial sensor with protocol %r receives it",
                        s.id, parts[0])
    drivers = []
    for port in ports:
        proto = str(port.options["protocol"])
        mine = [s for s in radio if s.address.lower().startswith(proto + ":")]
        drivers.append(SerialDriver(port, radio_sensors=mine, clock=clock))
    return drivers


def receiver_sensor(url: str, protocol: str, sensor_id: str = "serial-probe") -> Sensor:
    """A stand-in sensor for a port that is not in the config (probe, tools)."""
    return Sensor(
        sensor_id, SensorKind.OTHER, Transport.SERIAL, url, "", options={"protocol": protocol}
    )
