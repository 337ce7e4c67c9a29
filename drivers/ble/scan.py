"""One-off scan for installers: which BTHome devices are near, and are they paired?"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from drivers.ble.driver import ScannerFactory, bleak_scanner
from drivers.ble.protocol import BTHOME_UUID, decode, parse_bindkey
from gateway.errors import DeviceUnavailableError, FrameError
from gateway.model import Sensor, Transport


@dataclass(frozen=True, slots=True)
class ScanResult:
    """One device heard during a scan, as the installer sees it."""

    address: str
    name: str
    model: str
    rssi_dbm: int | None
    battery_pct: float | None
    encrypted: bool
    paired_as: str | None
    decoded: bool
    adverts: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": self.address, "name": self.name, "model": self.model,
            "rssi_dbm": self.rssi_dbm, "battery_pct": self.battery_pct,
            "encrypted": self.encrypted, "paired": self.paired_as is not None,
            "sensor_id": self.paired_as, "decoded": self.decoded, "adverts": self.adverts,
        }


@dataclass(slots=True)
class _Seen:
    name: str = ""
    rssi: int | None = None
    raw: bytes = b""
    adverts: int = 0
    model: str = ""
    battery: float | None = None
    decoded: bool = False


async def scan(
    seconds: float,
    *,
    adapter: str = "hci0",
    sensors: Iterable[Sensor] = (),
    keys: Mapping[str, str] | None = None,
    scanner_factory: ScannerFactory | None = None,
) -> list[ScanResult]:
    """Listen (active scanning, to get names) for ``seconds``; strongest signal first."""
    paired = {s.address.upper(): s for s in sensors if s.transport is Transport.BLE}
    keys = keys or {}
    seen: dict[str, _Seen] = {}

    def detected(device: Any, adv: Any) -> None:
        raw = adv.service_data.get(BTHOME_UUID)
        if raw is None:
            return
        mac = str(device.address).upper()
        entry = seen.setdefault(mac, _Seen())
        entry.adverts += 1
        entry.name = adv.local_name or entry.name
        entry.rssi = adv.rssi
        entry.raw = bytes(raw)
        _try_decode(mac, entry, paired.get(mac), keys)

    scanner = (scanner_factory or bleak_scanner)(detected, "active", adapter)
    try:
        await scanner.start()
    except Exception as exc:
        raise DeviceUnavailableError(f"cannot scan on {adapter}: {exc}") from exc
    try:
        await asyncio.sleep(seconds)
    finally:
        await scanner.stop()
    results = [
        ScanResult(
            address=mac, name=e.name, model=e.model, rssi_dbm=e.rssi, battery_pct=e.battery,
            encrypted=bool(e.raw[:1] and e.raw[0] & 1),
            paired_as=paired[mac].id if mac in paired else None,
            decoded=e.decoded, adverts=e.adverts,
        )
        for mac, e in seen.items()
    ]
    return sorted(results, key=lambda r: -(r.rssi_dbm if r.rssi_dbm is not None else -999))


def _try_decode(mac: str, entry: _Seen, sensor: Sensor | None, keys: Mapping[str, str]) -> None:
    key = None
    if sensor is not None and sensor.key_ref and sensor.key_ref in keys:
        try:
            key = parse_bindkey(keys[sensor.key_ref])
        except FrameError:
            key = None
    try:
        frame = decode(entry.raw, mac, bindkey=key, name=entry.name)
    except FrameError:
        return  # encrypted without our key, or garbage: still listed, not decoded
    entry.decoded = True
    entry.model = frame.model or entry.model
    battery = frame.measurement("battery")
    if battery is not None and isinstance(battery.value, int | float):
        entry.battery = float(battery.value)
