"""The run loop: one asyncio loop running drivers, detectors, the store and the uplink.

Path of a reading: driver → every detector's ``feed`` → buffered for group commit. An alert
a detector returns is committed to the store with a full fsync *before* the uplink is woken
to send it, so nothing that was raised can be lost by a crash after this point.

Every long-running part is a supervised task: if it dies it is logged and restarted with
backoff. systemd is told READY once the store is open and the tasks run, WATCHDOG only while
the loop turns, the store answers and the uplink task lives, and STOPPING on shutdown.
SIGTERM or SIGINT stops the service within a few seconds with everything committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from drivers.base import Driver
from gateway import __version__
from gateway.backoff import Backoff
from gateway.clock import Clock
from gateway.config import Config
from gateway.detect.base import Detector
from gateway.health import HealthMonitor
from gateway.model import Alert, AlertState, Reading, ReadingKind
from gateway.notify.base import Notifier
from gateway.notify.channels import build_notifiers
from gateway.notify.daily import DailySummary
from gateway.store import MB, Store
from gateway.store.aio import AsyncStore
from gateway.supervise import TaskHealth, supervise
from gateway.systemd import SdNotifier, watchdog_interval_s

log = logging.getLogger(__name__)

SHUTDOWN_BUDGET_S = 5.0
MIN_TICK_REAL_S = 0.1
"""A rig clock running fast ticks detectors at most this often (real seconds)."""


class UplinkLike(Protocol):
    """What the service needs of the uplink (gateway.uplink.Uplink)."""

    async def run(self) -> None: ...

    def wake(self) -> None: ...

    def healthy(self) -> bool: ...

    async def close(self) -> None: ...

    # The gateway's own health for telemetry (set by the service when it watches it).
    gateway_health: Callable[[], dict[str, Any]] | None
    # The local notifiers it escalates to; the daily summary goes out through them too.
    notifiers: list[Notifier]


UplinkFactory = Callable[[Config, Store], UplinkLike]
AlertListener = Callable[[Alert], None]


@dataclass(slots=True)
class ServiceStats:
    readings: int = 0
    alerts: int = 0
    detector_errors: int = 0
    started_mono: float = field(default_factory=time.monotonic)


def open_store(cfg: Config) -> Store:
    s = cfg.storage
    return Store(
        s.path,
        budget_bytes=int(s.budget_mb * MB),
        reserve_bytes=int(s.reserve_mb * MB),
        readings_max_age=timedelta(days=s.readings_max_age_days),
        delivered_max_age=timedelta(days=s.delivered_max_age_days),
    )


class Service:
    """The gateway process. Build it with its parts, then ``await run()``."""

    def __init__(
        self,
        cfg: Config,
        *,
        drivers: Sequence[Driver] = (),
        detectors: Sequence[Detector] = (),
        uplink_factory: UplinkFactory | None = None,
        store: Store | None = None,
        clock: Clock | None = None,
        notifier: SdNotifier | None = None,
        tick_s: float = 1.0,
        prune_every_s: float = 600.0,
        stop_when_drivers_done: bool = False,
    ) -> None:
        self.cfg = cfg
        self.drivers = list(drivers)
        self.detectors = list(detectors)
        self.uplink_factory = uplink_factory
        self.store = store or open_store(cfg)
        self.clock = clock or Clock()
        self.notifier = notifier or SdNotifier()
        self.tick_s = tick_s
        self.prune_every_s = prune_every_s
        self.stop_when_drivers_done = stop_when_drivers_done
        self.stats = ServiceStats()
        self.health: dict[str, TaskHealth] = {}
        self.alert_listeners: list[AlertListener] = []
        self.uplink: UplinkLike | None = None
        self.astore: AsyncStore | None = None
        self._stop = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._last_touch: dict[str, float] = {}
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ control

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        await loop.run_in_executor(None, self.store.open)
        self.astore = AsyncStore(self.store, group_commit_ms=self.cfg.storage.group_commit_ms)
        try:
            await self.astore.call(self.store.sync_sensors, self.cfg.sensor_list())
            for det in self.detectors:
                det.restore()
            if self.uplink_factory is not None:
                self.uplink = self.uplink_factory(self.cfg, self.store)
            self._start_tasks()
            self.notifier.ready(f"anxin {__version__}: {len(self.drivers)} drivers")
            log.info(
                "gateway %s running: %d drivers, %d detectors, uplink %s",
                self.cfg.gateway.id, len(self.drivers), len(self.detectors),
                "on" if self.uplink else "off",
            )
            await self._wait_for_stop()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            await self._shutdown()

    async def _wait_for_stop(self) -> None:
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            if not self.stop_when_drivers_done or not self.drivers:
                await stop
                return
            drivers = [t for n, t in self._tasks.items() if n.startswith("driver:")]
            await asyncio.wait([stop, *drivers], return_when=asyncio.FIRST_COMPLETED)
            if not stop.done():
                await asyncio.wait([stop, asyncio.ensure_future(_all(drivers))],
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stop

    def _start_tasks(self) -> None:
        for i, drv in enumerate(self.drivers):
            self._spawn(f"driver:{drv.name}:{i}", lambda d=drv: self._pump(d))  # type: ignore[misc]
        self._spawn("ticker", self._ticker, restart_on_return=True)
        self._spawn("pruner", self._pruner, restart_on_return=True)
        if watchdog_interval_s() is not None:
            self._spawn("watchdog", self._watchdog, restart_on_return=True)
        if self.uplink is not None:
            self._spawn("uplink", self.uplink.run, restart_on_return=True)
        assert self.astore is not None
        if self.cfg.health.enabled:
            monitor = HealthMonitor(self.cfg, self.store, self.raise_alert, self._change_state,
                                    clock=self.clock, run_db=self.astore.call)
            if self.uplink is not None:
                self.uplink.gateway_health = monitor.snapshot
            self._spawn("health", monitor.run, restart_on_return=True)
        if self.cfg.notify.daily_summary_at is not None:
            # The uplink's notifiers when there is one: one modem and one apprise per gateway.
            notifiers = self.uplink.notifiers if self.uplink is not None else build_notifiers(self.cfg)
            channels = [n for n in notifiers if hasattr(n, "send_text")]
            daily = DailySummary(self.cfg, self.store, channels,  # type: ignore[arg-type]
                                 clock=self.clock, run_db=self.astore.call)
            self._spawn("daily-summary", daily.run, restart_on_return=True)

    def _spawn(self, name: str, factory: Callable[[], object], *, restart_on_return: bool = False) -> None:
        health = self.health.setdefault(name, TaskHealth(name))
        coro = supervise(
            name,
            factory,  # type: ignore[arg-type]
            health=health,
            restart_on_return=restart_on_return,
            backoff=Backoff(min_s=0.5, max_s=30.0),
        )
        self._tasks[name] = asyncio.create_task(coro, name=f"anxin:{name}")

    async def _shutdown(self) -> None:
        started = time.monotonic()
        self.notifier.stopping()
        log.info("stopping")
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_BUDGET_S / 2)
        self._tasks.clear()
        if self._background:
            await asyncio.wait(list(self._background), timeout=1.0)
        for drv in self.drivers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(drv.close(), 1.0)
        if self.uplink is not None:
            remaining = max(0.5, SHUTDOWN_BUDGET_S - 1.5 - (time.monotonic() - started))
            try:
                await asyncio.wait_for(self.uplink.close(), remaining)
            except (TimeoutError, OSError) as exc:
                log.warning("uplink did not close cleanly: %r", exc)
        if self.astore is not None:
            await self.astore.close()
        self.notifier.close()
        log.info("stopped in %.2f s; %d readings, %d alerts", time.monotonic() - started,
                 self.stats.readings, self.stats.alerts)

    # ------------------------------------------------------------------ the path

    async def _pump(self, driver: Driver) -> None:
        async with driver:
            async for reading in driver.readings():
                await self.handle_reading(reading)

    async def handle_reading(self, reading: Reading) -> None:
        """Feed one reading to every detector, commit any alert, buffer the reading."""
        assert self.astore is not None
        self.stats.readings += 1
        for det in self.detectors:
            # Each detector's alerts commit before the next detector runs: a slow one (the
            # routine detectors persist what they learn) never delays a button press.
            try:
                alerts = list(det.feed(reading))
            except Exception:
                self.stats.detector_errors += 1
                log.exception("detector %s failed on a reading from %s", det.name, reading.sensor_id)
                continue
            for alert in alerts:
                await self.raise_alert(alert)
        if reading.kind is not ReadingKind.ACCEL:
            # A pendant's raw 50 Hz stream is for the fall detector only: stored it would be
            # ~400k rows a day. A fall alert carries what the detector saw as its evidence.
            self.astore.add_reading(reading)
        self._maybe_touch(reading)

    async def raise_alert(self, alert: Alert) -> None:
        """Commit an alert durably, then wake the uplink and tell listeners."""
        assert self.astore is not None
        row = await self.astore.call(self.store.commit_alert, alert)
        self.stats.alerts += 1
        log.warning(
            "ALERT %s %s sensor=%s room=%s seq=%d",
            alert.severity.value, alert.type.value, alert.sensor_id, alert.room, row.seq,
            extra={"alert_id": alert.id},
        )
        if self.uplink is not None:
            self.uplink.wake()
        for listener in self.alert_listeners:
            try:
                listener(alert)
            except Exception:
                log.exception("alert listener failed")

    def submit_alert(self, alert: Alert) -> None:
        """Raise an alert from synchronous code (a driver's health callback) on the loop.

        A driver reports the same alert again in a later state (resolved when the BLE
        scanner recovers): that is recorded as a state change of the stored alert.
        """
        if alert.state is AlertState.RAISED:
            coro = self.raise_alert(alert)
        else:
            coro = self._change_state(alert.id, alert.state)
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _change_state(self, alert_id: str, state: AlertState) -> None:
        assert self.astore is not None
        await self.astore.call(self.store.set_alert_state, alert_id, state)
        if self.uplink is not None:
            self.uplink.wake()

    def _maybe_touch(self, reading: Reading) -> None:
        assert self.astore is not None
        last = self._last_touch.get(reading.sensor_id, -1e9)
        if reading.monotonic_s - last < 30.0:
            return
        self._last_touch[reading.sensor_id] = reading.monotonic_s
        battery = reading.value if reading.kind.value == "battery" else None
        rssi = reading.extra.get("rssi_dbm") if reading.extra else None
        task = asyncio.get_running_loop().create_task(
            self.astore.call(
                self.store.touch_sensor, reading.sensor_id, reading.ts, reading.monotonic_s,
                battery_pct=battery if isinstance(battery, int | float) else None,
                rssi_dbm=rssi if isinstance(rssi, int | float) else None,
            )
        )
        task.add_done_callback(_log_failure)

    async def _ticker(self) -> None:
        # tick_s is in the clock's time: on a HIL rig clock running 600x, detectors are ticked
        # every tick_s of its time but no more often than every MIN_TICK_REAL_S real seconds
        # (a minute of its time), so its hours of quiet pass in seconds.
        period = self.clock.real_s(self.tick_s)
        if period < self.tick_s:
            period = max(period, MIN_TICK_REAL_S)
        while True:
            await asyncio.sleep(period)
            stamp = self.clock.now()
            for det in self.detectors:
                try:
                    alerts = list(det.tick(stamp))
                except Exception:
                    self.stats.detector_errors += 1
                    log.exception("detector %s failed on tick", det.name)
                    continue
                for alert in alerts:
                    await self.raise_alert(alert)

    async def _pruner(self) -> None:
        assert self.astore is not None
        while True:
            await asyncio.sleep(self.prune_every_s)
            r, o = await self.astore.call(self.store.prune)
            if r or o:
                log.info("pruned %d readings and %d delivered messages", r, o)

    def healthy(self) -> bool:
        """Loop, store and uplink all alive (the store is probed separately, off the loop)."""
        uplink = self.health.get("uplink")
        return uplink is None or (uplink.running and (self.uplink is None or self.uplink.healthy()))

    async def _watchdog(self) -> None:
        interval = watchdog_interval_s() or 10.0
        assert self.astore is not None
        while True:
            await asyncio.sleep(interval)
            try:
                store_ok = await asyncio.wait_for(self.astore.call(self.store.healthy), interval)
            except TimeoutError:
                store_ok = False
            if store_ok and self.healthy():
                self.notifier.watchdog()
            else:
                log.error("watchdog withheld: store_ok=%s uplink_ok=%s", store_ok, self.healthy())


async def _all(tasks: Sequence[asyncio.Task[None]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background store call failed: %r", task.exception())
