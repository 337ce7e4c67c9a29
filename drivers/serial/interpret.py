"""Decoded frames -> :class:`gateway.model.Reading`, per protocol. No I/O.

Radars report about ten times a second; the store does not need that. Each interpreter
emits a reading when its value changes and repeats it every ``report_interval_s`` (the
heartbeat supervision's last-seen relies on). 433 MHz transmitters repeat each code
several times per press; one press is one reading (``repeat_window_s``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.clock import Stamp, rfc3339
from gateway.model import JsonValue, Reading, ReadingKind, Sensor, SensorKind

from . import bedpad, ld2410, mr60
from .rf433 import RadioEvent, parse_address

log = logging.getLogger(__name__)


class _Gate:
    """Change-or-interval filter keyed by (sensor, kind)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: dict[tuple[str, ReadingKind], tuple[JsonValue, float]] = {}

    def passes(self, sensor_id: str, kind: ReadingKind, value: JsonValue, now_s: float,
               *, tolerance: float = 0.0) -> bool:
        key = (sensor_id, kind)
        prev = self._last.get(key)
        if prev is not None and now_s - prev[1] < self.interval_s:
            old = prev[0]
            same = (
                abs(float(old) - float(value)) <= tolerance
                if isinstance(old, int | float) and isinstance(value, int | float)
                and not isinstance(value, bool) and not isinstance(old, bool)
                else old == value
            )
            if same:
                return False
        self._last[key] = (value, now_s)
        return True


class Interpreter:
    """Base: ``frame(obj, stamp) -> readings``; ``tick(stamp) -> readings`` for timers."""

    def __init__(self, sensor: Sensor, report_interval_s: float = 60.0) -> None:
        self.sensor = sensor
        self.gate = _Gate(report_interval_s)

    def frame(self, obj: object, stamp: Stamp) -> list[Reading]:  # pragma: no cover - abstract
        raise NotImplementedError

    def tick(self, stamp: Stamp) -> list[Reading]:
        return []

    def _emit(self, stamp: Stamp, kind: ReadingKind, value: JsonValue, *, unit: str | None = None,
              extra: Mapping[str, JsonValue] | None = None, tolerance: float = 0.0,
              sensor_id: str | None = None) -> list[Reading]:
        sid = sensor_id or self.sensor.id
        if not self.gate.passes(sid, kind, value, stamp.monotonic_s, tolerance=tolerance):
            return []
        return [Reading.at(stamp, sid, kind, value, unit=unit, extra=extra)]


class LD2410Interpreter(Interpreter):
    """Presence per room: OCCUPANCY (bool) and DISTANCE (cm) to the nearest target."""

    distance_tolerance_cm = 30.0

    def frame(self, obj: object, stamp: Stamp) -> list[Reading]:
        if not isinstance(obj, ld2410.LD2410Report):
            return []
        extra = {
            "target": obj.target_state.name.lower(),
            "moving_distance_cm": obj.moving_distance_cm,
            "moving_energy": obj.moving_energy,
            "still_distance_cm": obj.still_distance_cm,
            "still_energy": obj.still_energy,
        }
        out = self._emit(stamp, ReadingKind.OCCUPANCY, obj.presence, extra=extra)
        if obj.presence:
            out += self._emit(stamp, ReadingKind.DISTANCE, obj.distance_cm, unit="cm",
                              tolerance=self.distance_tolerance_cm)
        return out


class MR60Interpreter(Interpreter):
    """MR60FDA2: FALL and OCCUPANCY. MR60BHA2: HEART_RATE, BREATHING, DISTANCE, OCCUPANCY."""

    def frame(self, obj: object, stamp: Stamp) -> list[Reading]:
        if isinstance(obj, mr60.FallStatus):
            # A fall is never held back by the interval: every change goes through.
            return self._emit(stamp, ReadingKind.FALL, obj.fall)
        if isinstance(obj, mr60.Presence):
            return self._emit(stamp, ReadingKind.OCCUPANCY, obj.present)
        if isinstance(obj, mr60.HeartRate) and obj.beats_per_min > 0:
            return self._emit(stamp, ReadingKind.HEART_RATE, round(obj.beats_per_min, 1),
                              unit="bpm", tolerance=5.0)
        if isinstance(obj, mr60.BreathRate) and obj.breaths_per_min > 0:
            return self._emit(stamp, ReadingKind.BREATHING, round(obj.breaths_per_min, 1),
                              unit="rpm", tolerance=3.0)
        if isinstance(obj, mr60.TargetDistance) and obj.valid:
            return self._emit(stamp, ReadingKind.DISTANCE, round(obj.distance_cm, 1), unit="cm",
                              tolerance=30.0)
        return []


class BedPadInterpreter(Interpreter):
    """IN_BED from the debounced pad state; BATTERY_LOW and TAMPER on change."""

    def __init__(self, sensor: Sensor, report_interval_s: float = 60.0, *,
                 enter_s: float = 5.0, exit_s: float = 10.0) -> None:
        super().__init__(sensor, report_interval_s)
        self.debouncer = bedpad.BedDebouncer(enter_s, exit_s)
        self.last_status: bedpad.BedStatus | None = None

    def frame(self, obj: object, stamp: Stamp) -> list[Reading]:
        if isinstance(obj, bedpad.BedFault):
            log.warning("%s: bed pad reports fault %s", self.sensor.id, obj.code.name)
            return []
        if not isinstance(obj, bedpad.BedStatus):
            return []
        self.last_status = obj
        out: list[Reading] = []
        changed = self.debouncer.feed(obj.state, stamp.monotonic_s)
        if changed is not None:
            out += self._in_bed(stamp, changed)
        elif self.debouncer.state is not None:
            out += self._emit(stamp, ReadingKind.IN_BED, self.debouncer.state,
                              extra={"pressure": obj.pressure})
        out += self._emit(stamp, ReadingKind.BATTERY_LOW, obj.battery_low)
        out += self._emit(stamp, ReadingKind.TAMPER, obj.tamper)
        return out

    def tick(self, stamp: Stamp) -> list[Reading]:
        changed = self.debouncer.tick(stamp.monotonic_s)
        return self._in_bed(stamp, changed) if changed is not None else []

    def _in_bed(self, stamp: Stamp, value: bool) -> list[Reading]:
        # Forget the gate's memory so a confirmed change is always emitted.
        self.gate._last.pop((self.sensor.id, ReadingKind.IN_BED), None)
        extra: dict[str, JsonValue] = {"debounce_s": self.debouncer.enter_s if value
                                       else self.debouncer.exit_s}
        if self.last_status is not None:
            extra["pressure"] = self.last_status.pressure
        return self._emit(stamp, ReadingKind.IN_BED, value, extra=extra)


_STATE_KIND = {
    SensorKind.DOOR: ReadingKind.CONTACT,
    SensorKind.MOTION: ReadingKind.MOTION,
    SensorKind.OCCUPANCY: ReadingKind.MOTION,
    SensorKind.SMOKE: ReadingKind.SMOKE,
    SensorKind.GAS: ReadingKind.GAS,
    SensorKind.WATER_LEAK: ReadingKind.WATER_LEAK,
    SensorKind.TOILET: ReadingKind.TOILET,
    SensorKind.APPLIANCE: ReadingKind.APPLIANCE,
}
_ALARM_KIND = {
    "smoke": ReadingKind.SMOKE,
    "gas": ReadingKind.GAS,
    "water_leak": ReadingKind.WATER_LEAK,
}
_PRESS_KINDS = frozenset({SensorKind.BUTTON, SensorKind.PULL_CORD})


@dataclass(slots=True)
class UnpairedDevice:
    """A 433 MHz device heard but not in the config: listed for pairing, never an alarm."""

    address: str
    count: int
    first_seen: str
    last_seen: str
    sample: dict[str, Any] = field(default_factory=dict)


class RadioInterpreter:
    """433 MHz events -> readings of the paired sensors (matched by address)."""

    max_unpaired = 256

    def __init__(self, sensors: Iterable[Sensor], *, repeat_window_s: float = 2.0) -> None:
        self.by_address: dict[str, Sensor] = {}
        for s in sensors:
            parts = parse_address(s.address)
            if parts is not None:
                self.by_address[s.address.strip().lower()] = s
        self.repeat_window_s = repeat_window_s
        self.unpaired: OrderedDict[str, UnpairedDevice] = OrderedDict()
        self._recent: dict[tuple[str, bool | None, str | None], float] = {}

    def match(self, event: RadioEvent) -> Sensor | None:
        return self.by_address.get(event.address) or self.by_address.get(event.device_address)

    def frame(self, obj: object, stamp: Stamp) -> list[Reading]:
        if not isinstance(obj, RadioEvent):
            return []
        sensor = self.match(obj)
        if sensor is None:
            self._note_unpaired(obj, stamp)
            return []
        key = (sensor.id, obj.active, obj.alarm)
        last = self._recent.get(key)
        self._recent[key] = stamp.monotonic_s
        if last is not None and stamp.monotonic_s - last < self.repeat_window_s:
            return []  # the same transmission repeated by the transmitter
        if len(self._recent) > 4 * self.max_unpaired:
            self._recent.clear()
        return self._readings(sensor, obj, stamp)

    def tick(self, stamp: Stamp) -> list[Reading]:
        return []

    def _readings(self, sensor: Sensor, ev: RadioEvent, stamp: Stamp) -> list[Reading]:
        extra: dict[str, JsonValue] = {"address": ev.address}
        out: list[Reading] = []

        def add(kind: ReadingKind, value: JsonValue, unit: str | None = None) -> None:
            out.append(Reading.at(stamp, sensor.id, kind, value, unit=unit, extra=extra))

        if ev.alarm == "panic":
            add(ReadingKind.BUTTON, "press")
        elif ev.alarm in _ALARM_KIND:
            add(_ALARM_KIND[ev.alarm], True)
        elif ev.active is not None:
            if sensor.kind in _PRESS_KINDS:
                if ev.active:
                    add(ReadingKind.BUTTON, "press")
            elif sensor.kind in _STATE_KIND:
                add(_STATE_KIND[sensor.kind], ev.active)
            else:
                add(ReadingKind.MOTION, ev.active)
        if ev.battery_low is not None:
            add(ReadingKind.BATTERY_LOW, ev.battery_low)
        if ev.battery_pct is not None:
            add(ReadingKind.BATTERY, ev.battery_pct, "%")
        if ev.tamper is not None:
            add(ReadingKind.TAMPER, ev.tamper)
        return out

    def _note_unpaired(self, ev: RadioEvent, stamp: Stamp) -> None:
        now = rfc3339(stamp.wall)
        entry = self.unpaired.get(ev.address)
        if entry is None:
            log.info("433 MHz device not paired: %s (add it to [[sensors]] to use it)", ev.address)
            entry = UnpairedDevice(ev.address, 0, now, now, dict(ev.fields))
            self.unpaired[ev.address] = entry
            while len(self.unpaired) > self.max_unpaired:
                self.unpaired.popitem(last=False)
        entry.count += 1
        entry.last_seen = now
        self.unpaired.move_to_end(ev.address)


def interpreter_for(protocol: str, sensor: Sensor, radio_sensors: Iterable[Sensor] = (),
                    **options: float) -> Interpreter | RadioInterpreter:
    """The interpreter for a port speaking ``protocol`` whose device is ``sensor``."""
    interval = float(options.get("report_interval_s", 60.0))
    if protocol == "ld2410":
        return LD2410Interpreter(sensor, interval)
    if protocol in ("mr60fda2", "mr60bha2"):
        return MR60Interpreter(sensor, interval)
    if protocol == "bedpad":
        return BedPadInterpreter(sensor, interval, enter_s=float(options.get("enter_s", 5.0)),
                                 exit_s=float(options.get("exit_s", 10.0)))
    if protocol in ("rflink", "rtl433"):
        window = float(options.get("repeat_window_s", 2.0))
        return RadioInterpreter(radio_sensors, repeat_window_s=window)
    raise KeyError(protocol)
