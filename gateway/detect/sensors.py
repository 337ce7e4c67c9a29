"""Immediate alarms from what a sensor says about itself or the home.

Transport-agnostic: it reads only :class:`gateway.model.Reading` kinds, so BLE (BTHome),
serial and 433 MHz sensors all feed it.

* ``button`` press, double, triple or long press -> ``emergency_button`` (critical), every
  time: de-duplication of one press is the driver's (packet id), and a second press is a
  second call for help.
* ``smoke`` / ``gas`` / ``water_leak`` true -> that alert (critical), once per episode: it
  re-arms when the sensor reports false again.
* ``tamper`` true -> ``tamper`` once per episode.
* ``battery_low`` true, or ``battery`` below ``low_battery_pct`` -> ``low_battery`` once;
  re-armed when ``battery_low`` goes false or the level rises ``rearm_margin_pct`` above
  the threshold (a new battery), not on every advertisement.

Open episodes are kept in the store (learned state), so a restart does not raise them again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.clock import Stamp
from gateway.detect.base import OpenEpisodes
from gateway.model import Alert, AlertType, Reading, ReadingKind, Sensor
from gateway.store import Store

log = logging.getLogger(__name__)

ALARM_GESTURES = frozenset(
    {"press", "double_press", "triple_press", "long_press", "long_double_press",
     "long_triple_press", "hold_press"}
)
"""``hold_release`` ends a hold that already alarmed, so it is not a new call."""

EPISODE_KINDS = {
    ReadingKind.SMOKE: AlertType.SMOKE,
    ReadingKind.GAS: AlertType.GAS,
    ReadingKind.WATER_LEAK: AlertType.WATER_LEAK,
    ReadingKind.TAMPER: AlertType.TAMPER,
}
LEARNED_KEY = "detect.sensor_events"


class SensorEventDetector:
    """Buttons, hazards, tamper and battery: readings in, alerts out."""

    name = "sensor_events"

    def __init__(
        self,
        sensors: Iterable[Sensor],
        store: Store | None = None,
        *,
        low_battery_pct: float = 20.0,
        rearm_margin_pct: float = 10.0,
    ) -> None:
        self.sensors = {s.id: s for s in sensors}
        self.store = store
        self.low_battery_pct = low_battery_pct
        self.rearm_margin_pct = rearm_margin_pct
        self._open = OpenEpisodes(store, LEARNED_KEY)  # "sensor_id/alert_type" episodes

    def restore(self) -> None:
        self._open.restore()

    def feed(self, reading: Reading) -> Sequence[Alert]:
        kind = reading.kind
        if kind is ReadingKind.BUTTON:
            if reading.value in ALARM_GESTURES:
                return [self._alert(AlertType.EMERGENCY_BUTTON, reading, gesture=reading.value,
                                    button=reading.extra.get("button"))]
            return []
        if kind in EPISODE_KINDS:
            return self._episode(EPISODE_KINDS[kind], reading, bool(reading.value))
        if kind is ReadingKind.BATTERY_LOW:
            return self._episode(AlertType.LOW_BATTERY, reading, bool(reading.value))
        if kind is ReadingKind.BATTERY and isinstance(reading.value, int | float):
            level = float(reading.value)
            if level < self.low_battery_pct:
                return self._episode(AlertType.LOW_BATTERY, reading, True, battery_pct=level)
            if level >= self.low_battery_pct + self.rearm_margin_pct:
                return self._episode(AlertType.LOW_BATTERY, reading, False)
        return []

    def tick(self, now: Stamp) -> Sequence[Alert]:
        return []

    def _episode(
        self, type_: AlertType, reading: Reading, on: bool, **evidence: Any
    ) -> list[Alert]:
        key = f"{reading.sensor_id}/{type_.value}"
        if not on:
            if self._open.close(key):
                log.info("%s: %s cleared", reading.sensor_id, type_.value)
            return []
        if not self._open.open(key):
            return []
        return [self._alert(type_, reading, **evidence)]

    def _alert(self, type_: AlertType, reading: Reading, **evidence: Any) -> Alert:
        stamp = Stamp(reading.ts, reading.monotonic_s, reading.boot_id, reading.clock_synced)
        ev = {"reading": reading.kind.value, "value": reading.value, **evidence}
        ev = {k: v for k, v in ev.items() if v is not None}
        sensor = self.sensors.get(reading.sensor_id)
        alert = Alert.raise_(type_, stamp, sensor=sensor, evidence=ev)
        if sensor is None:
            alert = dataclasses.replace(alert, sensor_id=reading.sensor_id)
        return alert
