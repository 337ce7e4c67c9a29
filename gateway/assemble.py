"""Build the gateway's parts from the config: which drivers, which detectors, which uplink.

Kept apart from the service so that tests, the demo and HIL rigs can assemble a gateway
with the same parts as production and swap only the edges.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from drivers.base import Driver
from drivers.replay import ReplayDriver
from gateway.clock import Clock
from gateway.config import Config
from gateway.detect.base import Detector
from gateway.model import Alert, SensorKind, Transport
from gateway.notify.channels import build_notifiers
from gateway.service import UplinkFactory
from gateway.store import Store
from gateway.uplink import Uplink


def build_drivers(
    cfg: Config,
    store: Store,
    clock: Clock,
    *,
    replay: Path | None = None,
    replay_speed: float = 1.0,
    replay_keep_time: bool = False,
    replay_start_at: float | None = None,
    hardware: bool = True,
    on_health: Callable[[Alert], None] | None = None,
    ble: bool = True,
    serial: bool = True,
) -> list[Driver]:
    """Drivers for the configured sensors, plus a replay of a recorded session if asked.

    ``hardware=False`` opens no BLE adapter or serial port (replays, tests, the demo).
    ``ble=False`` / ``serial=False`` leave out only that transport (HIL rigs that emulate
    one kind of hardware). ``on_health`` receives gateway-health alerts a driver raises about itself.
    """
    drivers: list[Driver] = []
    sensors = cfg.sensor_list()
    use_ble, use_serial = hardware and ble, hardware and serial
    if use_ble and any(s.transport is Transport.BLE and s.kind is not SensorKind.PENDANT for s in sensors):
        from drivers.ble.driver import BleDriver

        drivers.append(BleDriver.from_config(cfg, store=store, clock=clock, on_health=on_health))
    if use_ble:
        from drivers.ble.pendant import PendantDriver

        drivers.extend(
            PendantDriver(s, clock=clock)
            for s in sensors
            if s.transport is Transport.BLE and s.kind is SensorKind.PENDANT
        )
    if use_serial and any(s.transport in (Transport.SERIAL, Transport.RF433) for s in sensors):
        from drivers.serial.driver import build_serial_drivers

        drivers.extend(build_serial_drivers(sensors, clock))
    if replay is not None:
        paired = frozenset(s.id for s in cfg.sensors) or None
        drivers.append(
            ReplayDriver(replay, speed=replay_speed, clock=clock, keep_time=replay_keep_time, sensors=paired,
                         start_at_epoch_s=replay_start_at)
        )
    return drivers


def build_detectors(cfg: Config, store: Store, clock: Clock) -> list[Detector]:
    """Every detector the config enables, in the order they see each reading."""
    from gateway.detect.inactivity import InactivityDetector
    from gateway.detect.radar import RadarFallDetector
    from gateway.detect.rules import RoutineRules
    from gateway.detect.sensors import SensorEventDetector
    from gateway.detect.supervision import SupervisionDetector

    sensors = cfg.sensor_list()
    detectors: list[Detector] = [
        SensorEventDetector(sensors, store),
        SupervisionDetector(sensors, store),
        RadarFallDetector(sensors, store),
        RoutineRules(cfg, store),
    ]
    if cfg.detection.inactivity.enabled:
        detectors.append(InactivityDetector(cfg, store))
    if cfg.detection.fall.enabled and any(s.kind is SensorKind.PENDANT for s in sensors):
        from gateway.detect.fall import FallDetector

        detectors.append(FallDetector(cfg.detection.fall, store, cfg.sensor))
    return detectors


def uplink_factory(cfg: Config, clock: Clock | None = None) -> UplinkFactory:
    """The MQTT uplink, escalating to the local notifiers (log line, SMS, apprise)."""

    def make(c: Config, store: Store) -> Uplink:
        return Uplink(c, store, clock=clock, notifiers=build_notifiers(c))

    return make
