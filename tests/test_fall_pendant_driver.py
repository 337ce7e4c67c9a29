"""The pendant GATT client against a fake BLE client: frames, gaps, cancel, battery, link loss."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest

from drivers.ble.pendant import PendantDriver
from drivers.ble.pendant_protocol import (
    ACCEL_CHAR_UUID,
    BATTERY_LEVEL_UUID,
    CANCEL_CHAR_UUID,
    encode_frame,
)
from gateway.clock import Clock
from gateway.errors import DeviceUnavailableError
from gateway.model import ReadingKind, Sensor, SensorKind, Transport


@pytest.fixture(autouse=True)
def _close_loop_left_by_sync_tests() -> None:
    """conftest's lingering-task check makes the policy create a loop during sync tests;
    pytest-asyncio would later drop that loop unclosed (a ResourceWarning, which is an error
    here). Close it before this module's async test installs its own."""
    with contextlib.suppress(RuntimeError):
        loop = asyncio.get_event_loop_policy().get_event_loop()
        if not loop.is_running():
            loop.close()


PENDANT = Sensor("pendant-1", SensorKind.PENDANT, Transport.BLE, "AA:BB:CC:DD:EE:FF", "hall")
S = [(0, 256, 0)] * 10


class FakeClient:
    def __init__(self, on_disconnect: Callable[[], None]) -> None:
        self.notify: dict[str, Callable[[Any, bytearray], None]] = {}
        self.on_disconnect = on_disconnect
        self.disconnected = False

    async def start_notify(self, char: str, cb: Callable[[Any, bytearray], None]) -> None:
        self.notify[char] = cb

    async def read_gatt_char(self, char: str) -> bytearray:
        assert char == BATTERY_LEVEL_UUID
        return bytearray([87])

    async def disconnect(self) -> None:
        self.disconnected = True

    def send(self, char: str, data: bytes) -> None:
        self.notify[char](None, bytearray(data))


class Pendant:
    """Connect fails once (out of range), then works; the test drives the notifications."""

    def __init__(self) -> None:
        self.clients: list[FakeClient] = []
        self.attempts = 0

    async def connect(self, address: str, on_disconnect: Callable[[], None]) -> FakeClient:
        assert address == PENDANT.address
        self.attempts += 1
        if self.attempts == 1:
            raise DeviceUnavailableError("not found in scan")
        c = FakeClient(on_disconnect)
        self.clients.append(c)
        return c


async def test_frames_gaps_cancel_battery_and_link_loss() -> None:
    pend = Pendant()
    drv = PendantDriver(
        PENDANT, clock=Clock(assume_synced=True), connect=pend.connect, backoff_initial_s=0.01
    )
    it = drv.readings()

    async def nxt() -> Any:
        return await asyncio.wait_for(anext(it), 5)

    try:
        r = await nxt()
        assert (r.kind, r.value) == (ReadingKind.LINK, "up")
        assert pend.attempts == 2
        c = pend.clients[0]
        r = await nxt()
        assert (r.kind, r.value, r.unit) == (ReadingKind.BATTERY, 87, "%")
        frame0 = encode_frame(10, S)
        c.send(ACCEL_CHAR_UUID, frame0[:5])  # split notification
        c.send(ACCEL_CHAR_UUID, frame0[5:] + encode_frame(11, S))
        c.send(ACCEL_CHAR_UUID, b"\xa5\x01garbage" + b"\x00" * 60)
        c.send(ACCEL_CHAR_UUID, encode_frame(11, S))  # duplicate: dropped
        c.send(ACCEL_CHAR_UUID, encode_frame(14, S))  # 12, 13 lost
        c.send(CANCEL_CHAR_UUID, b"\x01")
        got = [await nxt() for _ in range(4)]
        assert [g.kind for g in got] == [ReadingKind.ACCEL] * 3 + [ReadingKind.CANCEL]
        assert [g.extra["seq"] for g in got[:3]] == [10, 11, 14]
        assert [g.extra["gap_samples"] for g in got[:3]] == [0, 0, 20]
        assert got[0].extra["samples_g"][0] == pytest.approx([0.0, 256 * 3906e-6, 0.0])
        assert drv.stats.frames_rejected >= 1
        assert drv.stats.frames_ok == 3
        c.on_disconnect()
        r = await nxt()
        assert (r.kind, r.value) == (ReadingKind.LINK, "down")
        r = await nxt()
        assert (r.kind, r.value) == (ReadingKind.LINK, "up")
        assert c.disconnected
        assert drv.stats.reconnects == 1
        c2 = pend.clients[1]
        await nxt()  # battery
        c2.send(ACCEL_CHAR_UUID, encode_frame(0, S))  # pendant rebooted: no gap after reconnect
        r = await nxt()
        assert r.extra["gap_samples"] == 0
    finally:
        await it.aclose()


async def test_a_mute_connected_pendant_counts_as_link_loss() -> None:
    pend = Pendant()
    pend.attempts = 1  # connect at once
    mute = Sensor(
        "pendant-2",
        SensorKind.PENDANT,
        Transport.BLE,
        PENDANT.address,
        "hall",
        expected_interval_s=0.2,
    )
    drv = PendantDriver(
        mute, clock=Clock(assume_synced=True), connect=pend.connect, backoff_initial_s=0.01
    )
    it = drv.readings()
    try:
        kinds = [
            (r.kind, r.value) for r in [await asyncio.wait_for(anext(it), 5) for _ in range(4)]
        ]
        assert kinds == [
            (ReadingKind.LINK, "up"),
            (ReadingKind.BATTERY, 87),
            (ReadingKind.LINK, "down"),
            (ReadingKind.LINK, "up"),
        ]
        assert pend.clients[0].disconnected
    finally:
        await it.aclose()
