"""End to end: the real bleak BlueZ backend against python-dbusmock's bluez5 template.

A private system bus (dbus-daemon started here) carries a mock BlueZ with adapter hci0;
tests push ``ServiceData`` property changes on mock devices, exactly what bluetoothd does
when it receives an advertisement. bleak (unmodified, BlueZ backend, dbus-fast) sees them
and our driver, the detectors and a real SQLite store do the rest.

Stops at the store: the MQTT uplink is not on this branch, so "at a mosquitto subscriber"
is left to the integration test once both are merged (the alert is in the outbox here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest
from bthome_frames import SHELLY_KEY, SHELLY_MAC, SHELLY_PRESS, button, plain

from drivers.ble.driver import BleDriver, BleOptions, power_cycle_adapter
from drivers.ble.protocol import BTHOME_UUID
from gateway.clock import Clock
from gateway.detect.sensors import SensorEventDetector
from gateway.detect.supervision import SupervisionDetector
from gateway.model import AlertState, AlertType, Reading, ReadingKind, Sensor, SensorKind, Transport
from gateway.store import Store

dbus = pytest.importorskip("dbus", reason="python-dbusmock needs dbus-python (pip install .[dev])")
dbusmock = pytest.importorskip("dbusmock")

pytestmark = [
    pytest.mark.dbus,
    pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="dbus-daemon not installed"),
]

BUTTON = Sensor("btn1", SensorKind.BUTTON, Transport.BLE, SHELLY_MAC, "bedroom", 3600.0, "btn1key")
DOOR = Sensor("door1", SensorKind.DOOR, Transport.BLE, "A4:C1:38:8D:18:B2", "entrance", 600.0)
KEYS = {"btn1key": SHELLY_KEY.hex()}


class MockBlueZ:
    """bluez5 template on a private system bus; ``push`` is one received advertisement."""

    def __init__(self, monitor_api: bool) -> None:
        self.bus = dbusmock.PrivateDBus(dbusmock.BusType.SYSTEM)
        self.bus.start()
        self.mock = dbusmock.SpawnedMock.spawn_with_template(
            "bluez5",
            {"enable_monitor_api": monitor_api},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.conn = dbus.bus.BusConnection(self.bus.address)
        self.control = dbus.Interface(self.conn.get_object("org.bluez", "/"), "org.bluez.Mock")
        self.control.AddAdapter("hci0", "anxin-test")
        self.devices: dict[str, object] = {}

    def add_device(self, mac: str, name: str) -> None:
        path = self.control.AddDevice("hci0", mac, name)
        dev = dbus.Interface(self.conn.get_object("org.bluez", path), dbusmock.MOCK_IFACE)
        # The template declares these two as arrays; BlueZ sends dictionaries (a{qv}, a{sv}).
        dev.UpdateProperties(
            "org.bluez.Device1",
            {
                "ManufacturerData": dbus.Dictionary({}, signature="qv"),
                "ServiceData": dbus.Dictionary({}, signature="sv"),
            },
        )
        self.devices[mac] = dev

    def push(self, mac: str, raw: bytes, rssi: int = -60) -> None:
        data = dbus.Dictionary({BTHOME_UUID: dbus.Array(raw, signature="y")}, signature="sv")
        self.devices[mac].UpdateProperties(  # type: ignore[attr-defined]
            "org.bluez.Device1", {"ServiceData": data, "RSSI": dbus.Int16(rssi)}
        )

    def adapter_powered(self) -> bool:
        props = dbus.Interface(
            self.conn.get_object("org.bluez", "/org/bluez/hci0"), "org.freedesktop.DBus.Properties"
        )
        return bool(props.Get("org.bluez.Adapter1", "Powered"))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
        self.mock.terminate()
        self.bus.stop()


@pytest.fixture(params=[True], ids=["monitor-api"])
def bluez(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[MockBlueZ]:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")  # restored after
    mock = MockBlueZ(monitor_api=request.param)
    try:
        mock.add_device(SHELLY_MAC, "SBBT-002C")
        mock.add_device(DOOR.address, "SBDW-002C")
        mock.add_device("11:22:33:44:55:66", "SBMO-003Z")
        yield mock
    finally:
        mock.close()


@pytest.fixture
def bluez_no_monitor(monkeypatch: pytest.MonkeyPatch) -> Iterator[MockBlueZ]:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
    mock = MockBlueZ(monitor_api=False)
    try:
        mock.add_device(DOOR.address, "SBDW-002C")
        yield mock
    finally:
        mock.close()


@contextlib.asynccontextmanager
async def running(driver: BleDriver) -> AsyncIterator[asyncio.Queue[Reading]]:
    """Open the driver and pump its readings into a queue; close everything after."""
    out: asyncio.Queue[Reading] = asyncio.Queue()

    async def pump() -> None:
        async for reading in driver.readings():
            out.put_nowait(reading)

    async with driver:
        task = asyncio.create_task(pump())
        try:
            yield out
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def next_of(q: asyncio.Queue[Reading], kind: ReadingKind, timeout: float = 10) -> Reading:
    async with asyncio.timeout(timeout):
        while True:
            r = await q.get()
            if r.kind is kind:
                return r


async def test_button_advert_becomes_emergency_alert_in_store(
    bluez: MockBlueZ, store: Store
) -> None:
    sensors = [BUTTON, DOOR]
    store.sync_sensors(sensors)
    driver = BleDriver(sensors, KEYS, store=store, clock=Clock(assume_synced=True))
    detectors = [SensorEventDetector(sensors, store), SupervisionDetector(sensors, store)]
    async with running(driver) as readings:
        assert driver.scanning_mode == "passive"
        bluez.push("11:22:33:44:55:66", plain(button(1)))  # not paired: listed, never read
        bluez.push(SHELLY_MAC, SHELLY_PRESS, rssi=-58)
        press = await next_of(readings, ReadingKind.BUTTON)
        store.add_readings([press])
        for det in detectors:
            for alert in det.feed(press):
                store.commit_alert(alert)
    assert (press.sensor_id, press.value, press.extra["rssi_dbm"]) == ("btn1", "press", -58)
    (alert,) = store.alerts()
    assert alert.type is AlertType.EMERGENCY_BUTTON
    assert alert.evidence["gesture"] == "press"
    assert (alert.sensor_id, alert.room) == ("btn1", "bedroom")
    (row,) = store.pending()
    assert row.kind == "alert"
    assert row.body["type"] == "emergency_button"
    assert row.body["severity"] == "critical"
    assert store.counter("bthome:" + SHELLY_MAC) == 442
    assert "11:22:33:44:55:66" in driver.unpaired
    assert {r.sensor_id for _, r in store.readings_after(0, 100)} == {"btn1"}


async def test_passive_unavailable_falls_back_to_active(
    bluez_no_monitor: MockBlueZ, caplog: pytest.LogCaptureFixture
) -> None:
    driver = BleDriver([DOOR], clock=Clock(assume_synced=True))
    with caplog.at_level(logging.WARNING, logger="drivers.ble.driver"):
        async with running(driver) as readings:
            assert driver.scanning_mode == "active"
            bluez_no_monitor.push(DOOR.address, plain(bytes([0x2D, 1]), trigger=False))
            contact = await next_of(readings, ReadingKind.CONTACT)
    assert contact.value is True
    assert any("falling back to active scanning" in r.getMessage() for r in caplog.records)


async def test_watchdog_restarts_recovers_alerts_and_resolves(
    bluez: MockBlueZ, store: Store
) -> None:
    recoveries: list[str] = []

    async def recover(adapter: str) -> bool:
        recoveries.append(adapter)
        return await power_cycle_adapter(adapter, off_s=0.05)

    opts = BleOptions(watchdog_silence_s=0.5, watchdog_check_s=0.05, heartbeat_s=3600)
    driver = BleDriver([DOOR], clock=Clock(assume_synced=True), options=opts, recover=recover)
    async with running(driver) as readings:
        bluez.push(DOOR.address, plain(bytes([0x00, 1, 0x2D, 1])))
        await next_of(readings, ReadingKind.CONTACT)
        # The mock stops delivering: restart, then adapter recovery, then a health alert.
        async with asyncio.timeout(15):
            health = await driver.health.get()
        assert health.type is AlertType.GATEWAY_HEALTH
        assert health.state is AlertState.RAISED
        assert health.evidence["component"] == "ble_scanner"
        assert driver.counters.scanner_restarts >= 3
        assert recoveries[:1] == ["hci0"]
        assert bluez.adapter_powered()  # power cycled back on
        store.commit_alert(health)

        # Advertisements come back: they reach the *restarted* scanner, the alert resolves.
        # The sensor repeats its advert (as real ones do): one sent while the watchdog is
        # between stop and start of the scanner is lost, like on a real adapter.
        async def repeat() -> None:
            for i in range(100):
                bluez.push(DOOR.address, plain(bytes([0x00, 2, 0x2D, 0])), rssi=-60 - i % 5)
                await asyncio.sleep(0.1)

        repeater = asyncio.create_task(repeat())
        try:
            closed = await next_of(readings, ReadingKind.CONTACT)
        finally:
            repeater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await repeater
        assert closed.value is False
        async with asyncio.timeout(5):
            resolved = await driver.health.get()
    assert (resolved.id, resolved.state) == (health.id, AlertState.RESOLVED)
    store.set_alert_state(resolved.id, AlertState.RESOLVED)
    stored = store.alert(health.id)
    assert stored is not None
    assert stored.state is AlertState.RESOLVED
