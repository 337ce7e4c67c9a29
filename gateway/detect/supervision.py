"""Supervision: a sensor silent for longer than its expected interval is ``sensor_offline``.

Last-seen is taken from *any* reading of the sensor, not only from readings whose value
changed: BlueZ passes on an advertisement only when a property changed (unless duplicates
are requested), so the BLE driver emits an ``rssi`` heartbeat reading for a sensor whose
payload stays the same; serial drivers emit their readings or a ``link`` reading. Either
counts here.

One alert per outage: raised once when the silence passes ``expected_interval_s``, and
resolved in the store (``Store.set_alert_state``) when the sensor is heard again. Open
outages are kept in the store, so a restart neither forgets nor repeats them. Silence is
measured on the monotonic clock from the last reading or from start-up (a grace period of
one interval after a restart).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from gateway.clock import Stamp, rfc3339
from gateway.model import Alert, AlertState, AlertType, Reading, ReadingKind, Sensor
from gateway.store import Store

log = logging.getLogger(__name__)
LEARNED_KEY = "detect.supervision"


class SupervisionDetector:
    """Raises ``sensor_offline`` once per outage; clears it when the sensor returns."""

    name = "supervision"

    def __init__(self, sensors: Iterable[Sensor], store: Store | None = None) -> None:
        self.sensors = {s.id: s for s in sensors if s.expected_interval_s}
        self.store = store
        self.last_seen: dict[str, float] = {}
        self.last_seen_ts: dict[str, str] = {}
        self.offline: dict[str, str] = {}  # sensor id -> open alert id
        self._start: float | None = None

    def restore(self) -> None:
        if self.store is None:
            return
        saved = self.store.learned(LEARNED_KEY)
        if isinstance(saved, dict):
            self.offline = {str(k): str(v) for k, v in saved.get("offline", {}).items()}

    def _save(self) -> None:
        if self.store is not None:
            self.store.put_learned(LEARNED_KEY, {"offline": self.offline})

    def feed(self, reading: Reading) -> Sequence[Alert]:
        sid = reading.sensor_id
        if sid not in self.sensors:
            return []
        if reading.kind is ReadingKind.LINK and reading.value == "down":
            # A driver saying the device is gone is not a sign of life from it.
            return []
        self.last_seen[sid] = reading.monotonic_s
        self.last_seen_ts[sid] = rfc3339(reading.ts)
        alert_id = self.offline.pop(sid, None)
        if alert_id is not None:
            self._save()
            log.info("%s is back; resolving sensor_offline %s", sid, alert_id)
            if self.store is not None:
                self.store.set_alert_state(alert_id, AlertState.RESOLVED, note="sensor heard again")
        return []

    def tick(self, now: Stamp) -> Sequence[Alert]:
        if self._start is None:
            self._start = now.monotonic_s
        out: list[Alert] = []
        for sid, sensor in self.sensors.items():
            if sid in self.offline:
                continue
            interval = float(sensor.expected_interval_s or 0)
            last = self.last_seen.get(sid, self._start)
            silent = now.monotonic_s - last
            if silent <= interval:
                continue
            alert = Alert.raise_(
                AlertType.SENSOR_OFFLINE,
                now,
                sensor=sensor,
                evidence={
                    "silent_s": round(silent, 1),
                    "expected_interval_s": interval,
                    "last_seen_ts": self.last_seen_ts.get(sid),
                },
            )
            self.offline[sid] = alert.id
            out.append(alert)
        if out:
            self._save()
        return out
