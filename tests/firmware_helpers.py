"""Shared bits of the firmware tests: emulated boards and the gateway's BLE driver."""

from __future__ import annotations

from pathlib import Path

from drivers.ble.driver import Advert, BleDriver, BleOptions
from firmware_stubs.host import Board, HostAdvert
from gateway.clock import Clock
from gateway.model import Sensor, SensorKind, Transport
from gateway.store import Store

KEY_HEX = "3f8d6ac1b2e94f07a5c6d8e1f2031425"
BUTTON_MAC = "A4:C1:38:F0:00:01"
DOOR_MAC = "A4:C1:38:F0:00:02"
BUTTON = Sensor("button-bedside", SensorKind.BUTTON, Transport.BLE, BUTTON_MAC, "bedroom", 3600.0, "btnkey")
DOOR = Sensor("door-front", SensorKind.DOOR, Transport.BLE, DOOR_MAC, "hall", 900.0)
DOOR_KEYED = Sensor("door-front", SensorKind.DOOR, Transport.BLE, DOOR_MAC, "hall", 900.0, "doorkey")
KEYS = {"btnkey": KEY_HEX, "doorkey": KEY_HEX}


def board(flash: Path, mac: str, config: str = "", battery_uv: int = 1_600_000) -> Board:
    b = Board(flash, mac=mac)
    if config:
        (b.flash / "config.py").write_text(config)
    b.set_adc_uv(4, battery_uv)  # 1.6 V at the divider: 3.2 V, 60 % between 2.9 and 3.4 V
    return b


def advert(a: HostAdvert, rssi: int = -58) -> Advert:
    """A firmware advert as bleak would hand it to the driver (monotonic = board time)."""
    return Advert(a.mac, a.name, rssi, dict(a.service_data), 1000.0 + a.t_ms / 1000)


def ble_driver(sensors: list[Sensor], store: Store | None = None) -> BleDriver:
    return BleDriver(sensors, KEYS, store=store, clock=Clock(assume_synced=True), options=BleOptions())
