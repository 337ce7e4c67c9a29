"""Build the gateway's parts from the config: which drivers, which detectors, which uplink.

Kept apart from the service so that tests, the demo and HIL rigs can assemble a gateway
with the same parts as production and swap only the edges.
"""

from __future__ import annotations

from pathlib import Path

from drivers.base import Driver
from drivers.replay import ReplayDriver
from gateway.clock import Clock
from gateway.config import Config
from gateway.detect.base import Detector
from gateway.service import UplinkFactory
from gateway.store import Store


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
) -> list[Driver]:
    """Drivers for the configured sensors, plus a replay of a recorded session if asked."""
    drivers: list[Driver] = []
    if replay is not None:
        paired = frozenset(s.id for s in cfg.sensors) or None
        drivers.append(
            ReplayDriver(replay, speed=replay_speed, clock=clock, keep_time=replay_keep_time, sensors=paired,
                         start_at_epoch_s=replay_start_at)
        )
    return drivers


def build_detectors(cfg: Config, store: Store, clock: Clock) -> list[Detector]:
    """Every detector the config enables, in the order they see each reading."""
    return []


def uplink_factory(cfg: Config) -> UplinkFactory | None:
    return None
