"""End to end: the real bleak BlueZ backend against python-dbusmock's bluez5 template.

A private system bus (dbus-daemon started here) carries a mock BlueZ with adapter hci0;
tests push ``ServiceData`` property changes on mock devices, exactly what bluetoothd does
when it receives an advertisement. bleak (unmodified, BlueZ backend, dbus-fast) sees them
and our driver, the detectors and a real SQLite store do the rest.

The last test runs the whole gateway (service, detectors, store, uplink) and checks the
alert at a subscriber on a real mosquitto.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from bthome_frames import SHELLY_KEY, SHELLY_MAC, SHELLY_PRESS, button, plain
from conftest import ROOT, run_cli

from drivers.ble.driver import BleDriver, BleOptions, power_cycle_adapter, recover_adapter
from drivers.ble.protocol import BTHOME_UUID
from gateway.clock import Clock
from gateway.detect.sensors import SensorEventDetector
from gateway.detect.supervision import SupervisionDetector
from gateway.errors import DeviceUnavailableError
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


@pytest.fixture
async def bleak_closed() -> AsyncIterator[None]:
    """Close bleak's per-loop BlueZ manager connection after the test.

    bleak keeps one D-Bus connection per event loop for the life of the loop (a gateway
    process has one loop, so it never matters there) with a task that watches it; a test
    loop ends after each test, so the connection is closed here, and that task ends.
    """
    yield
    from bleak.backends.bluezdbus import manager as bluez_manager

    loop = asyncio.get_running_loop()
    mgr = bluez_manager._global_instances.pop(loop, None)  # private: no public close exists
    bus = getattr(mgr, "_bus", None)
    if bus is not None:
        bus.disconnect()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(bus.wait_for_disconnect(), 5)
    for _ in range(5):  # let the watcher task see the disconnect and finish
        await asyncio.sleep(0)


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
    bluez: MockBlueZ, store: Store, bleak_closed: None
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
    bluez_no_monitor: MockBlueZ, caplog: pytest.LogCaptureFixture, bleak_closed: None
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
    bluez: MockBlueZ, store: Store, bleak_closed: None
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
        async with asyncio.timeout(30):  # generous: CI machines are shared and slow
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
            for i in range(300):
                bluez.push(DOOR.address, plain(bytes([0x00, 2, 0x2D, 0])), rssi=-60 - i % 5)
                await asyncio.sleep(0.1)

        repeater = asyncio.create_task(repeat())
        try:
            closed = await next_of(readings, ReadingKind.CONTACT, timeout=30)
        finally:
            repeater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await repeater
        assert closed.value is False
        async with asyncio.timeout(15):
            resolved = await driver.health.get()
    assert (resolved.id, resolved.state) == (health.id, AlertState.RESOLVED)
    store.set_alert_state(resolved.id, AlertState.RESOLVED)
    stored = store.alert(health.id)
    assert stored is not None
    assert stored.state is AlertState.RESOLVED


CONFIG = """
secrets_file = "secrets.toml"

[gateway]
id = "gw-test"
home = "home-test"

[storage]
path = "{db}"

[[rooms]]
id = "bedroom"

[[rooms]]
id = "entrance"

[[sensors]]
id = "btn1"
kind = "button"
transport = "ble"
address = "B4:35:22:F5:3D:A4"
room = "bedroom"
key = "btn1key"

[[sensors]]
id = "door1"
kind = "door"
transport = "ble"
address = "A4:C1:38:8D:18:B2"
room = "entrance"
"""


def write_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(CONFIG.format(db=tmp_path / "anxin.db"), encoding="utf-8")
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'[keys]\nbtn1key = "{SHELLY_KEY.hex()}"\n', encoding="utf-8")
    secrets.chmod(0o600)
    return cfg


def test_cli_scan_lists_nearby_devices(bluez: MockBlueZ, tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "ble",
            "scan",
            "--seconds",
            "2",
            "--json",
            "--config",
            str(cfg),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DBUS_SYSTEM_BUS_ADDRESS": bluez.bus.address},
    )
    try:
        deadline = time.monotonic() + 20
        i = 0
        while proc.poll() is None and time.monotonic() < deadline:
            i += 1
            bluez.push(SHELLY_MAC, SHELLY_PRESS, rssi=-50 - i % 3)
            bluez.push(DOOR.address, plain(bytes([0x01, 55, 0x2D, 0]), trigger=False), rssi=-70)
            bluez.push(
                "11:22:33:44:55:66", plain(bytes([0x00, i % 256, 0x01, 80, 0x21, 1])), rssi=-80
            )
            time.sleep(0.2)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    rows = {r["address"]: r for r in map(json.loads, out.splitlines())}
    assert set(rows) == {SHELLY_MAC, DOOR.address, "11:22:33:44:55:66"}
    btn = rows[SHELLY_MAC]
    assert (
        btn["model"],
        btn["battery_pct"],
        btn["encrypted"],
        btn["paired"],
        btn["sensor_id"],
    ) == ("BLU Button1", 100.0, True, True, "btn1")
    assert btn["rssi_dbm"] in (-50, -51, -52)
    door = rows[DOOR.address]
    assert (door["model"], door["battery_pct"], door["encrypted"], door["sensor_id"]) == (
        "BLU Door/Window",
        55.0,
        False,
        "door1",
    )
    motion = rows["11:22:33:44:55:66"]
    assert (motion["model"], motion["battery_pct"], motion["paired"], motion["rssi_dbm"]) == (
        "BLU Motion",
        80.0,
        False,
        -80,
    )
    assert list(rows) == [SHELLY_MAC, DOOR.address, "11:22:33:44:55:66"]  # strongest first


def test_cli_reset_counter(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    with Store(tmp_path / "anxin.db") as s:
        s.set_counter("bthome:" + SHELLY_MAC, 442)
    res = run_cli("ble", "reset-counter", "btn1", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    assert "442" in res.stdout
    with Store(tmp_path / "anxin.db") as s:
        assert s.advance_counter("bthome:" + SHELLY_MAC, 1)
    bad = run_cli("ble", "reset-counter", "nope", "--config", str(cfg))
    assert bad.returncode == 1
    assert "no BLE sensor 'nope'" in bad.stderr


async def test_default_adapter_recovery_ends_powered(bluez: MockBlueZ) -> None:
    """bluetooth-auto-recovery needs a PF_BLUETOOTH socket (none here); then the BlueZ power
    cycle runs. The adapter is left powered even if it was off before."""
    props = dbus.Interface(
        bluez.conn.get_object("org.bluez", "/org/bluez/hci0"), "org.freedesktop.DBus.Properties"
    )
    props.Set("org.bluez.Adapter1", "Powered", dbus.Boolean(False))
    assert not bluez.adapter_powered()
    assert await recover_adapter("hci0")
    assert bluez.adapter_powered()


async def test_power_cycle_of_missing_adapter_fails_cleanly(bluez: MockBlueZ) -> None:
    assert not await power_cycle_adapter("hci7", off_s=0)


async def test_missing_adapter_is_device_unavailable(bluez: MockBlueZ, bleak_closed: None) -> None:
    driver = BleDriver([DOOR], options=BleOptions(adapter="hci9"))
    with pytest.raises(DeviceUnavailableError, match="hci9"):
        await driver.open()
    await driver.close()


def test_cli_scan_without_adapter_says_so(bluez: MockBlueZ) -> None:
    res = run_cli(
        "ble",
        "scan",
        "--seconds",
        "0.5",
        "--adapter",
        "hci9",
        env={"DBUS_SYSTEM_BUS_ADDRESS": bluez.bus.address, "ANXIN_CONFIG": ""},
    )
    assert res.returncode == 1
    assert "anxin: error: cannot scan on hci9" in res.stderr


async def test_button_advert_reaches_a_mosquitto_subscriber(
    bluez: MockBlueZ, mosquitto: Any, tmp_path: Path, bleak_closed: None
) -> None:
    """The whole alarm path: advert on (mock) BlueZ → bleak → driver → detectors → store →
    uplink → a real mosquitto → a subscriber in the platform's place."""
    from gateway import assemble
    from gateway.config import (
        Config,
        GatewayConfig,
        RoomConfig,
        SecretsConfig,
        SensorConfig,
        StorageConfig,
        UplinkConfig,
    )
    from gateway.hil import Subscriber
    from gateway.service import Service, open_store

    cfg = Config(
        gateway=GatewayConfig(id="gw-ble", home="home-ble"),
        rooms=(RoomConfig(id="bedroom", kind="bedroom"),),
        sensors=(SensorConfig(id="btn1", kind=SensorKind.BUTTON, transport=Transport.BLE,
                              address=SHELLY_MAC, room="bedroom", key="btn1key"),),
        uplink=UplinkConfig(broker_url=mosquitto.url, reconnect_min_s=0.1, reconnect_max_s=0.5),
        storage=StorageConfig(path=str(tmp_path / "gw.db"), group_commit_ms=20),
        secrets=SecretsConfig(keys={"btn1key": SHELLY_KEY.hex()}),
    )
    clock = Clock(assume_synced=True)
    store = open_store(cfg)
    service = Service(cfg, detectors=assemble.build_detectors(cfg, store, clock),
                      uplink_factory=assemble.uplink_factory(cfg, clock), store=store, clock=clock)
    service.drivers = assemble.build_drivers(cfg, store, clock, on_health=service.submit_alert)
    sub = Subscriber(mosquitto.host, mosquitto.port, cfg.uplink.topic_root, cfg.gateway.id, ack=False)
    task = asyncio.create_task(service.run())
    try:
        async with asyncio.timeout(20):
            while not any(m["topic"].endswith("/status") for m in sub.snapshot()):
                await asyncio.sleep(0.05)
            bluez.push(SHELLY_MAC, SHELLY_PRESS, rssi=-60)
            while not (alerts := [m for m in sub.snapshot() if m["topic"].endswith("/alert")]):
                await asyncio.sleep(0.05)
    finally:
        service.request_stop()
        await asyncio.wait_for(task, 10)
        sub.close()
    payload = alerts[0]["payload"]
    assert alerts[0]["topic"] == "anxin/v1/gw-ble/alert"
    assert (payload["type"], payload["severity"], payload["state"]) == ("emergency_button", "critical", "raised")
    assert payload["sensor"] == {"id": "btn1", "kind": "button", "room": "bedroom"}
    assert payload["evidence"]["gesture"] == "press"
    assert (payload["gw"], payload["home"]) == ("gw-ble", "home-ble")
