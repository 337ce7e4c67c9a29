"""The gateway's own health: power (UPS, under-voltage), disk, clock, temperature."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from pathlib import Path

import pytest
from uplink_helpers import Subscriber, make_config

from gateway.clock import Clock
from gateway.config import Config, GatewayConfig, HealthConfig, StorageConfig
from gateway.health import HealthMonitor, Probes
from gateway.model import Alert, AlertState, AlertType
from gateway.store import Store
from gateway.uplink import Uplink


class Sysfs:
    """A /sys tree with the files a Raspberry Pi with a UPS HAT has."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, rel: str, value: object) -> None:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"{value}\n")

    def ups(self, online: int, capacity: int) -> None:
        self.put("class/power_supply/ups-input/type", "Mains")
        self.put("class/power_supply/ups-input/online", online)
        self.put("class/power_supply/ups-battery/type", "Battery")
        self.put("class/power_supply/ups-battery/capacity", capacity)


class Recorder:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.raised: list[Alert] = []
        self.changes: list[tuple[str, AlertState]] = []

    async def raise_alert(self, alert: Alert) -> None:
        self.store.commit_alert(alert)
        self.raised.append(alert)

    async def change(self, alert_id: str, state: AlertState) -> None:
        self.store.set_alert_state(alert_id, state)
        self.changes.append((alert_id, state))


def monitor(tmp_path: Path, store: Store, rec: Recorder, *, synced: bool = True,
            **health: float) -> HealthMonitor:
    cfg = Config(gateway=GatewayConfig(id="gw", home="h"),
                 storage=StorageConfig(path=str(tmp_path / "db" / "anxin.db")),
                 health=replace(HealthConfig(), **health))
    return HealthMonitor(cfg, store, rec.raise_alert, rec.change,
                         clock=Clock(assume_synced=synced),
                         probes=Probes(sys=tmp_path / "sys", disk_path=tmp_path), clear_checks=1)


async def test_mains_lost_on_a_ups_raises_gateway_power_once_and_resolves(tmp_path: Path, store: Store) -> None:
    sys = Sysfs(tmp_path / "sys")
    sys.ups(online=1, capacity=97)
    rec = Recorder(store)
    mon = monitor(tmp_path, store, rec)
    await mon.check()
    assert rec.raised == []
    assert mon.snapshot()["power"] == "mains"
    sys.ups(online=0, capacity=88)  # the power cut
    await mon.check()
    await mon.check()
    (alert,) = rec.raised
    assert alert.type is AlertType.GATEWAY_POWER
    assert alert.evidence["on_battery"] is True
    assert alert.evidence["battery_pct"] == 88
    assert mon.snapshot()["power"] == "battery"
    sys.ups(online=1, capacity=80)
    await mon.check()
    assert rec.changes == [(alert.id, AlertState.RESOLVED)]
    assert store.open_alerts() == []


async def test_undervoltage_from_the_pi_firmware(tmp_path: Path, store: Store) -> None:
    sys = Sysfs(tmp_path / "sys")
    sys.put("class/hwmon/hwmon0/name", "cpu_thermal")
    sys.put("class/hwmon/hwmon1/name", "rpi_volt")
    sys.put("class/hwmon/hwmon1/in0_lcrit_alarm", 1)
    rec = Recorder(store)
    await monitor(tmp_path, store, rec).check()
    (alert,) = rec.raised
    assert (alert.type, alert.evidence["condition"]) == (AlertType.GATEWAY_POWER, "undervoltage")


async def test_temperature_has_hysteresis(tmp_path: Path, store: Store) -> None:
    sys = Sysfs(tmp_path / "sys")
    rec = Recorder(store)
    mon = monitor(tmp_path, store, rec)
    for milli, open_after in ((79000, False), (81500, True), (77000, True), (80500, True), (74000, False)):
        sys.put("class/thermal/thermal_zone0/temp", milli)
        await mon.check()
        assert bool(store.open_alerts()) is open_after, milli
    assert len(rec.raised) == 1
    assert rec.raised[0].evidence["cpu_temp_c"] == 81.5


async def test_disk_low_and_store_near_its_budget(tmp_path: Path, store: Store) -> None:
    rec = Recorder(store)
    mon = monitor(tmp_path, store, rec, disk_min_free_mb=1e12)  # more than any disk has
    await mon.check()
    (alert,) = rec.raised
    assert alert.type is AlertType.GATEWAY_HEALTH
    assert alert.evidence["component"] == "disk"
    assert isinstance(alert.evidence["free_mb"], float)


async def test_clock_never_synced_after_the_grace_period(tmp_path: Path, store: Store) -> None:
    rec = Recorder(store)
    mon = monitor(tmp_path, store, rec, synced=False, clock_grace_s=600)
    await mon.check()
    assert rec.raised == []  # right after boot NTP has not had its chance yet
    mon.started_mono = time.monotonic() - 700
    await mon.check()
    (alert,) = rec.raised
    assert alert.evidence["condition"] == "clock"
    assert alert.evidence["unsynced_s"] >= 700
    mon.clock = Clock(assume_synced=True)
    await mon.check()
    assert rec.changes == [(alert.id, AlertState.RESOLVED)]


async def test_a_restart_resolves_the_open_alert_instead_of_raising_it_again(tmp_path: Path, store: Store) -> None:
    sys = Sysfs(tmp_path / "sys")
    sys.ups(online=0, capacity=50)
    rec = Recorder(store)
    await monitor(tmp_path, store, rec).check()
    assert len(rec.raised) == 1
    rec2 = Recorder(store)
    mon2 = monitor(tmp_path, store, rec2)  # the gateway restarted, still on battery
    await mon2.check()
    assert rec2.raised == []
    sys.ups(online=1, capacity=55)
    await mon2.check()
    assert rec2.changes == [(rec.raised[0].id, AlertState.RESOLVED)]


async def test_a_machine_without_these_sensors_raises_nothing(tmp_path: Path, store: Store) -> None:
    rec = Recorder(store)
    mon = monitor(tmp_path, store, rec)
    await mon.check()
    assert rec.raised == []
    snap = mon.snapshot()
    assert (snap["power"], snap["battery_pct"], snap["undervoltage"], snap["cpu_temp_c"]) == (None, None, None, None)
    assert snap["disk_free_mb"] > 0


async def test_telemetry_carries_the_gateway_health_and_stays_valid(mosquitto, tmp_path: Path, store: Store) -> None:  # type: ignore[no-untyped-def]
    platform = Subscriber(mosquitto).start()
    try:
        rec = Recorder(store)
        mon = monitor(tmp_path, store, rec)
        Sysfs(tmp_path / "sys").ups(online=1, capacity=64)
        await mon.check()
        uplink = Uplink(make_config(mosquitto), store)
        uplink.gateway_health = mon.snapshot
        task = asyncio.create_task(uplink.run())
        try:
            deadline = time.monotonic() + 20
            while not platform.of("/telemetry"):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        finally:
            await uplink.close()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        tel = platform.of("/telemetry")[0]
        assert tel["gateway"]["power"] == "mains"
        assert tel["gateway"]["battery_pct"] == 64
        assert platform.validate_all() >= 1
    finally:
        platform.stop()


@pytest.mark.parametrize("value", ["garbage", ""])
def test_unreadable_sysfs_values_are_no_reading(tmp_path: Path, value: str) -> None:
    sys = Sysfs(tmp_path)
    sys.put("class/thermal/thermal_zone0/temp", value)
    assert Probes(sys=tmp_path).cpu_temp_c() is None


async def test_a_store_at_its_own_budget_is_not_a_fault(tmp_path: Path, store: Store) -> None:
    """The store prunes by design at its budget: months of history must not raise an alarm."""
    rec = Recorder(store)
    mon = monitor(tmp_path, store, rec)
    mon.cfg = replace(mon.cfg, storage=replace(mon.cfg.storage, budget_mb=0.01))  # store is "full"
    await mon.check()
    assert rec.raised == []
    assert mon.snapshot()["store_mb"] > 0.01


async def test_a_flickering_supply_raises_once_and_resolves_after_steady_checks(tmp_path: Path, store: Store) -> None:
    sys = Sysfs(tmp_path / "sys")
    sys.put("class/hwmon/hwmon0/name", "rpi_volt")
    rec = Recorder(store)
    mon = monitor(tmp_path, store, rec)
    mon.clear_checks = 3
    for alarm in (1, 0, 1, 0, 0, 1, 0, 0):  # on the edge: never three good checks in a row
        sys.put("class/hwmon/hwmon0/in0_lcrit_alarm", alarm)
        await mon.check()
    assert len(rec.raised) == 1
    assert rec.changes == []
    await mon.check()  # the third good check in a row
    assert rec.changes == [(rec.raised[0].id, AlertState.RESOLVED)]
