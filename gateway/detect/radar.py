"""Radar falls: a ``fall`` reading from a fall radar (Seeed MR60FDA2) -> ``fall_radar``.

The radar decides that someone fell; the gateway raises the alert at once (critical) with
what the radar saw around it as evidence: the distance and presence it last reported.
One alert per fall: the episode stays open while the radar keeps reporting the fall and
re-arms when it reports ``fall = false`` (the person got up or was helped) or when the
radar comes back after a power cycle (``link`` ``up``), since its state was lost then.
Open episodes are kept in the store, so a gateway restart does not raise the same fall
again. Pendant falls (accelerometer model) are another detector's; the care platform
sees both types and may correlate them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.clock import Stamp, rfc3339
from gateway.detect.base import OpenEpisodes
from gateway.model import Alert, AlertType, Reading, ReadingKind, Sensor
from gateway.store import Store

log = logging.getLogger(__name__)
LEARNED_KEY = "detect.radar_fall"


class RadarFallDetector:
    """``fall`` true -> ``fall_radar`` (critical), once per fall."""

    name = "radar_fall"

    def __init__(self, sensors: Iterable[Sensor], store: Store | None = None) -> None:
        self.sensors = {s.id: s for s in sensors}
        self.store = store
        self._open = OpenEpisodes(store, LEARNED_KEY)
        self._distance: dict[str, tuple[Any, str | None]] = {}
        self._occupied: dict[str, bool] = {}

    def restore(self) -> None:
        self._open.restore()

    def feed(self, reading: Reading) -> Sequence[Alert]:
        sid = reading.sensor_id
        kind = reading.kind
        if kind is ReadingKind.DISTANCE:
            self._distance[sid] = (reading.value, reading.unit)
        elif kind is ReadingKind.OCCUPANCY:
            self._occupied[sid] = bool(reading.value)
        elif kind is ReadingKind.LINK and reading.value == "up" and sid in self._open:
            self._close(sid, "radar restarted")
        elif kind is ReadingKind.FALL:
            if reading.value is True:
                return self._fall(reading)
            if sid in self._open:
                self._close(sid, "radar reports no fall")
        return []

    def tick(self, now: Stamp) -> Sequence[Alert]:
        return []

    def _close(self, sid: str, why: str) -> None:
        self._open.close(sid)
        log.info("%s: radar fall episode closed (%s)", sid, why)

    def _fall(self, reading: Reading) -> list[Alert]:
        sid = reading.sensor_id
        if not self._open.open(sid):
            return []
        evidence: dict[str, Any] = {
            "reading": reading.kind.value,
            "value": True,
            "reading_ts": rfc3339(reading.ts),
            **dict(reading.extra),
        }
        if "distance_cm" not in evidence and sid in self._distance:
            value, unit = self._distance[sid]
            if unit in (None, "cm"):
                evidence["distance_cm"] = value
        if sid in self._occupied:
            evidence["occupied"] = self._occupied[sid]
        sensor = self.sensors.get(sid)
        if sensor is not None and sensor.model:
            evidence["model"] = sensor.model
        stamp = Stamp(reading.ts, reading.monotonic_s, reading.boot_id, reading.clock_synced)
        alert = Alert.raise_(AlertType.FALL_RADAR, stamp, sensor=sensor, evidence=evidence)
        if sensor is None:
            alert = dataclasses.replace(alert, sensor_id=sid)
        log.warning("%s: radar reports a fall: %s", sid, evidence)
        return [alert]
