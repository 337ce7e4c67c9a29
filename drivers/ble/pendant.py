"""The pendant's GATT client: accelerometer frames -> ACCEL readings, "I'm OK", battery, link.

Connects with :func:`bleak_retry_connector.establish_connection` (its own retries inside
one attempt), and around that reconnects forever with exponential backoff and jitter.
Per connection it subscribes to the accelerometer and cancel characteristics
(:mod:`drivers.ble.pendant_protocol`), reads the standard Battery Level and subscribes to it
when the pendant allows. Yields:

* ``LINK`` "up" on connect and "down" on link loss, or when a connected pendant sends
  nothing for the sensor's ``expected_interval_s`` (default 5 s; it is then disconnected
  and reconnected). Raising ``sensor_offline`` from that is the service's silence watch;
* ``ACCEL`` per frame, ``extra = {"samples_g": [[x, y, z], ...], "seq": n,
  "gap_samples": lost}``, where ``gap_samples`` counts samples lost before this frame
  (from sequence numbers), so the fall detector restarts its window instead of splicing;
* ``CANCEL`` when the wearer presses "I'm OK"; ``BATTERY`` in percent.

Bad frames are counted in ``self.stats`` and logged; they never leave ``readings()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from drivers.base import Driver
from drivers.ble.pendant_protocol import (
    ACCEL_CHAR_UUID,
    BATTERY_LEVEL_UUID,
    CANCEL_CHAR_UUID,
    FrameDecoder,
    SeqTracker,
)
from gateway.clock import Clock
from gateway.errors import DeviceUnavailableError, FrameError, TransientError
from gateway.model import Reading, ReadingKind, Sensor

log = logging.getLogger(__name__)


class PendantClient(Protocol):
    """The part of a BleakClient the driver uses (a fake in tests)."""

    async def start_notify(
        self, char_specifier: str, callback: Callable[[Any, bytearray], None], /
    ) -> None: ...

    async def read_gatt_char(self, char_specifier: str, /) -> bytearray: ...

    async def disconnect(self) -> Any: ...


ConnectFn = Callable[[str, Callable[[], None]], Awaitable[PendantClient]]
"""(address, on_disconnect) -> a connected client."""


async def bleak_connect(address: str, on_disconnect: Callable[[], None]) -> PendantClient:
    """Find the pendant and connect through bleak-retry-connector."""
    from bleak import BleakScanner
    from bleak.exc import BleakError
    from bleak_retry_connector import BleakClientWithServiceCache, establish_connection

    try:
        device = await BleakScanner.find_device_by_address(address, timeout=10.0)
        if device is None:
            raise DeviceUnavailableError(f"pendant {address} not found in scan")
        client: PendantClient = await establish_connection(
            BleakClientWithServiceCache,
            device,
            f"pendant {address}",
            disconnected_callback=lambda _client: on_disconnect(),
            max_attempts=3,
        )
    except (BleakError, OSError) as exc:
        raise DeviceUnavailableError(f"pendant {address}: {exc}") from exc
    return client


class PendantDriver(Driver):
    name = "ble-pendant"

    def __init__(
        self,
        sensor: Sensor,
        *,
        clock: Clock | None = None,
        connect: ConnectFn = bleak_connect,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
    ) -> None:
        super().__init__()
        self.sensor = sensor
        self.clock = clock or Clock()
        self._connect = connect
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.seq = SeqTracker()
        self.connects = 0
        # frames come 5 times a second; a connected pendant mute this long is dropped and
        # reconnected (the sensor's expected_interval_s, else 5 s)
        self.silence_s = sensor.expected_interval_s or 5.0

    def _reading(self, kind: ReadingKind, value: Any, **kw: Any) -> Reading:
        return Reading.at(self.clock.now(), self.sensor.id, kind, value, **kw)

    async def readings(self) -> AsyncIterator[Reading]:
        backoff = self.backoff_initial_s
        while True:
            queue: asyncio.Queue[Reading | None] = asyncio.Queue()
            try:
                lost = functools.partial(queue.put_nowait, None)
                client = await self._connect(self.sensor.address, lost)
            except TransientError as exc:
                self.stats.last_error = str(exc)
                delay = backoff * random.uniform(0.8, 1.2)
                log.warning("pendant %s: %s; retry in %.1fs", self.sensor.id, exc, delay)
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            backoff = self.backoff_initial_s
            self.connects += 1
            if self.connects > 1:
                self.stats.reconnects += 1
            self.seq.reset()
            try:
                # aclosing: when our caller stops early, close the session generator now rather
                # than leaving it to the garbage collector (its finaliser would run it later).
                async with contextlib.aclosing(self._session(client, queue)) as session:
                    async for r in session:
                        yield r
            finally:
                with contextlib.suppress(Exception):  # a dead link may refuse the disconnect
                    await client.disconnect()

    async def _session(
        self, client: PendantClient, queue: asyncio.Queue[Reading | None]
    ) -> AsyncGenerator[Reading, None]:
        decoder = FrameDecoder()

        def on_accel(_char: Any, data: bytearray) -> None:
            for item in decoder.feed(bytes(data)):
                if isinstance(item, FrameError):
                    self.stats.reject(item, self.sensor.id)
                    continue
                res = self.seq.update(item.seq)
                if res.duplicate:
                    continue
                self.stats.frames_ok += 1
                queue.put_nowait(
                    self._reading(
                        ReadingKind.ACCEL,
                        None,
                        unit="g",
                        extra={
                            "samples_g": item.samples_g,
                            "seq": item.seq,
                            "gap_samples": res.lost_frames * len(item.samples),
                        },
                    )
                )

        def on_cancel(_char: Any, data: bytearray) -> None:
            if data[:1] == b"\x01":
                queue.put_nowait(self._reading(ReadingKind.CANCEL, True))

        def on_battery(_char: Any, data: bytearray) -> None:
            if data:
                queue.put_nowait(self._reading(ReadingKind.BATTERY, int(data[0]), unit="%"))

        await client.start_notify(ACCEL_CHAR_UUID, on_accel)
        await client.start_notify(CANCEL_CHAR_UUID, on_cancel)
        yield self._reading(ReadingKind.LINK, "up")
        try:
            on_battery(None, await client.read_gatt_char(BATTERY_LEVEL_UUID))
            await client.start_notify(BATTERY_LEVEL_UUID, on_battery)
        except Exception as exc:  # noqa: BLE001 - battery is optional; the stream matters more
            log.info("pendant %s: no battery notifications: %s", self.sensor.id, exc)
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), self.silence_s)
            except TimeoutError:
                # connected but mute (a hung pendant, a stalled BlueZ link): treat as lost
                log.warning("pendant %s: silent for %.1fs", self.sensor.id, self.silence_s)
                item = None
            if item is None:
                log.warning("pendant %s: link lost", self.sensor.id)
                yield self._reading(ReadingKind.LINK, "down")
                return
            yield item
