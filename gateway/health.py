"""The gateway watching itself: power, disk, clock and temperature.

DESIGN.md: "the gateway reports its own power, disk and clock health". A gateway on a UPS
HAT that lost mains keeps working for hours and then dies without a word; a disk filling
up ends in a store that refuses readings; a clock that never synced stamps every alert
with a wrong time. Each condition raises one alert when it starts (``gateway_power`` for
power, ``gateway_health`` for the others) and resolves it when it ends, with hysteresis so
a value hovering at a threshold does not flap. Open alerts survive a restart: the monitor
picks them up from the store instead of raising them again.

Everything is read from sysfs, the files the kernel keeps current on a Raspberry Pi:
- ``/sys/class/power_supply/*/{type,online,capacity}``: a UPS HAT's battery driver and
  its mains/USB input (the gateway runs on battery when the input is offline);
- ``/sys/class/hwmon/hwmon*/name == rpi_volt``, ``in0_lcrit_alarm``: the Pi firmware's
  under-voltage flag (a weak supply corrupts SD cards);
- ``/sys/class/thermal/thermal_zone0/temp``: the SoC temperature in m°C;
- free space of the filesystem holding the database (``os.statvfs``). The store reaching
  its own budget is not a fault: it prunes the oldest readings by design (docs/storage.md);
  its size goes into telemetry only;
- the kernel's NTP sync flag (``adjtimex``) through :class:`gateway.clock.Clock`.
A file that does not exist (a Pi without a UPS, a PC) means "no such sensor", never an
alert.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.clock import Clock
from gateway.config import Config
from gateway.model import Alert, AlertState, AlertType, JsonValue
from gateway.store import Store

log = logging.getLogger(__name__)

RaiseAlert = Callable[[Alert], Awaitable[None]]
ChangeState = Callable[[str, AlertState], Awaitable[None]]
RunDb = Callable[..., Awaitable[Any]]


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the probes read, once; also what telemetry carries as ``gateway``."""

    on_battery: bool | None = None  # None: no UPS seen
    battery_pct: int | None = None
    undervoltage: bool | None = None
    cpu_temp_c: float | None = None
    disk_free_mb: float | None = None
    store_mb: float | None = None
    clock_synced: bool = True
    unsynced_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "power": (None if self.on_battery is None else "battery" if self.on_battery else "mains"),
            "battery_pct": self.battery_pct,
            "undervoltage": self.undervoltage,
            "cpu_temp_c": self.cpu_temp_c,
            "disk_free_mb": None if self.disk_free_mb is None else round(self.disk_free_mb, 1),
            "store_mb": None if self.store_mb is None else round(self.store_mb, 1),
            "clock_synced": self.clock_synced,
        }


@dataclass
class Probes:
    """Reads the machine. ``sys`` is a root to read sysfs under (tests point it at a tree)."""

    sys: Path = Path("/sys")
    disk_path: Path = Path("/var/lib/anxin")

    def power(self) -> tuple[bool | None, int | None]:
        """(on battery, battery %) from the power_supply class; (None, None) without a UPS."""
        base = self.sys / "class" / "power_supply"
        try:
            supplies = sorted(base.iterdir())
        except OSError:
            return None, None
        inputs: list[bool] = []
        capacity: int | None = None
        for s in supplies:
            kind = _read(s / "type")
            if kind in ("Mains", "USB"):
                online = _read_int(s / "online")
                if online is not None:
                    inputs.append(online == 1)
            elif kind == "Battery":
                capacity = _read_int(s / "capacity")
        if not inputs:
            return None, capacity
        return (not any(inputs)), capacity

    def undervoltage(self) -> bool | None:
        base = self.sys / "class" / "hwmon"
        try:
            mons = sorted(base.iterdir())
        except OSError:
            return None
        for m in mons:
            if _read(m / "name") == "rpi_volt":
                alarm = _read_int(m / "in0_lcrit_alarm")
                return None if alarm is None else alarm == 1
        return None

    def cpu_temp_c(self) -> float | None:
        milli = _read_int(self.sys / "class" / "thermal" / "thermal_zone0" / "temp")
        return None if milli is None else round(milli / 1000.0, 1)

    def disk_free_mb(self) -> float | None:
        path = self.disk_path
        while not path.exists() and path != path.parent:
            path = path.parent
        try:
            st = os.statvfs(path)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize / 1e6


@dataclass
class _Condition:
    key: str
    type: AlertType
    alert: Alert | None = None
    good_checks: int = 0


@dataclass
class HealthMonitor:
    cfg: Config
    store: Store
    raise_alert: RaiseAlert
    change_state: ChangeState
    clock: Clock = field(default_factory=Clock)
    probes: Probes | None = None
    # How store calls run: the service passes its store thread; default a worker thread.
    run_db: RunDb = asyncio.to_thread
    started_mono: float = field(default_factory=time.monotonic)
    last: Snapshot = field(default_factory=Snapshot)
    _conds: dict[str, _Condition] = field(default_factory=dict)
    _restored: bool = False
    # An open condition resolves only after this many good checks in a row: a supply on
    # the edge of under-voltage, or mains that flickers back, must not raise and resolve an
    # alert every 30 s.
    clear_checks: int = 5

    def __post_init__(self) -> None:
        if self.probes is None:
            self.probes = Probes(disk_path=Path(self.cfg.storage.path).parent)
        for key, type_ in (("mains", AlertType.GATEWAY_POWER), ("undervoltage", AlertType.GATEWAY_POWER),
                           ("disk", AlertType.GATEWAY_HEALTH), ("clock", AlertType.GATEWAY_HEALTH),
                           ("temperature", AlertType.GATEWAY_HEALTH)):
            self._conds[key] = _Condition(key, type_)

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.cfg.health.interval_s)

    def snapshot(self) -> dict[str, Any]:
        return self.last.as_dict()

    def read(self, size: int | None) -> Snapshot:
        """Read every probe (blocking: sysfs and statvfs); ``size`` is the store's, in bytes."""
        assert self.probes is not None
        on_battery, pct = self.probes.power()
        synced = self.clock.synced()
        return Snapshot(
            on_battery=on_battery,
            battery_pct=pct,
            undervoltage=self.probes.undervoltage(),
            cpu_temp_c=self.probes.cpu_temp_c(),
            disk_free_mb=self.probes.disk_free_mb(),
            store_mb=None if size is None else size / 1e6,
            clock_synced=synced,
            unsynced_s=0.0 if synced else time.monotonic() - self.started_mono,
        )

    async def check(self) -> None:
        if not self._restored:
            self._restore(await self.run_db(self.store.open_alerts))
            self._restored = True
        size = await self.run_db(self.store.size_bytes)
        snap = await asyncio.to_thread(self.read, size)
        self.last = snap
        h = self.cfg.health
        disk_low = snap.disk_free_mb is not None and snap.disk_free_mb < h.disk_min_free_mb
        disk_ok = snap.disk_free_mb is None or snap.disk_free_mb > 1.5 * h.disk_min_free_mb
        hot = snap.cpu_temp_c is not None and snap.cpu_temp_c >= h.temp_max_c
        cool = snap.cpu_temp_c is None or snap.cpu_temp_c < h.temp_max_c - 5
        late = not snap.clock_synced and snap.unsynced_s >= h.clock_grace_s
        await self._set("mains", snap.on_battery is True, snap.on_battery is not True,
                        {"component": "power", "on_battery": True, "battery_pct": snap.battery_pct})
        await self._set("undervoltage", snap.undervoltage is True, snap.undervoltage is not True,
                        {"component": "power", "undervoltage": True})
        await self._set("disk", disk_low, disk_ok,
                        {"component": "disk", "free_mb": _r(snap.disk_free_mb),
                         "store_mb": _r(snap.store_mb), "budget_mb": self.cfg.storage.budget_mb,
                         "min_free_mb": h.disk_min_free_mb})
        await self._set("temperature", hot, cool,
                        {"component": "temperature", "cpu_temp_c": snap.cpu_temp_c,
                         "max_c": h.temp_max_c})
        await self._set("clock", late, snap.clock_synced,
                        {"component": "clock", "unsynced_s": round(snap.unsynced_s)})

    async def _set(self, key: str, bad: bool, good: bool, evidence: dict[str, JsonValue]) -> None:
        cond = self._conds[key]
        cond.good_checks = cond.good_checks + 1 if good else 0
        if bad and cond.alert is None:
            evidence = {**evidence, "condition": key}
            cond.alert = Alert.raise_(cond.type, self.clock.now(), evidence=evidence)
            log.warning("gateway health: %s (%s)", key, evidence)
            await self.raise_alert(cond.alert)
        elif cond.alert is not None and cond.good_checks >= self.clear_checks:
            alert_id, cond.alert = cond.alert.id, None
            log.warning("gateway health: %s is back to normal", key)
            await self.change_state(alert_id, AlertState.RESOLVED)

    def _restore(self, open_alerts: list[Alert]) -> None:
        """Open health alerts from before a restart are ours to resolve, not to raise again."""
        for alert in open_alerts:
            key = alert.evidence.get("condition") if alert.type in (
                AlertType.GATEWAY_POWER, AlertType.GATEWAY_HEALTH) else None
            if isinstance(key, str) and key in self._conds and self._conds[key].alert is None:
                self._conds[key].alert = alert


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
