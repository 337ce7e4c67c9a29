"""Replay a recorded session: JSON lines of readings, at real or accelerated speed.

The first driver: it lets the whole path (detectors, store, uplink) run without hardware,
for the demo, tests and rigs. One line per reading::

    {"offset_s": 12.5, "sensor": "btn1", "kind": "button", "value": "press"}
    {"ts": "2026-11-23T08:00:00Z", "sensor": "bed1", "kind": "in_bed", "value": false}

``offset_s`` is seconds from the start of the session; a line with only ``ts`` is placed
relative to the first ``ts``. ``unit`` and ``extra`` are optional. Readings are stamped when
they are emitted (the gateway's clock), unless ``keep_time`` is set, which keeps the
recorded ``ts`` (for evaluations that replay a real home's history). Blank lines and lines
starting with ``#`` are skipped; a malformed line is counted, logged with its bytes, and
skipped: a replay never stops on bad input.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from drivers.base import Driver
from gateway.clock import Clock, Stamp, parse_rfc3339
from gateway.errors import DeviceUnavailableError, FrameError
from gateway.model import Reading, ReadingKind

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReplayLine:
    """One parsed line of a session file."""

    offset_s: float | None
    ts: datetime | None
    sensor_id: str
    kind: ReadingKind
    value: Any
    unit: str | None
    extra: dict[str, Any]


def parse_line(raw: bytes) -> ReplayLine:
    """Parse one JSON line. Raises FrameError with the raw bytes when it is not valid."""
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FrameError(f"not JSON: {exc}", raw, protocol="replay") from None
    if not isinstance(obj, dict):
        raise FrameError("line is not a JSON object", raw, protocol="replay")
    sensor = obj.get("sensor")
    if not isinstance(sensor, str) or not sensor:
        raise FrameError("missing 'sensor'", raw, protocol="replay")
    try:
        kind = ReadingKind(str(obj.get("kind")))
    except ValueError:
        raise FrameError(f"unknown kind {obj.get('kind')!r}", raw, protocol="replay") from None
    offset = obj.get("offset_s")
    if offset is not None and (isinstance(offset, bool) or not isinstance(offset, int | float) or offset < 0):
        raise FrameError("'offset_s' must be a number >= 0", raw, protocol="replay")
    ts: datetime | None = None
    if obj.get("ts") is not None:
        try:
            ts = parse_rfc3339(str(obj["ts"]))
        except ValueError:
            raise FrameError(f"bad 'ts' {obj['ts']!r}", raw, protocol="replay") from None
    if offset is None and ts is None:
        raise FrameError("needs 'offset_s' or 'ts'", raw, protocol="replay")
    extra = obj.get("extra") or {}
    if not isinstance(extra, dict):
        raise FrameError("'extra' must be an object", raw, protocol="replay")
    unit = obj.get("unit")
    return ReplayLine(
        float(offset) if offset is not None else None, ts, sensor, kind, obj.get("value"),
        unit if isinstance(unit, str) else None, extra,
    )


class ReplayDriver(Driver):
    """Plays a session file. ``speed`` 10 plays ten times faster; 0 plays as fast as possible."""

    name = "replay"

    def __init__(
        self,
        path: str | Path,
        *,
        speed: float = 1.0,
        clock: Clock | None = None,
        keep_time: bool = False,
        sensors: frozenset[str] | None = None,
        start_at_epoch_s: float | None = None,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.speed = speed
        self.clock = clock or Clock()
        self.keep_time = keep_time
        self.sensors = sensors
        self.start_at_epoch_s = start_at_epoch_s
        self.finished = False

    async def open(self) -> None:
        if not self.path.is_file():
            raise DeviceUnavailableError(f"replay file {self.path} does not exist")

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        with self.path.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                stripped = raw.strip()
                if stripped and not stripped.startswith(b"#"):
                    yield lineno, stripped

    async def readings(self) -> AsyncIterator[Reading]:
        if self.start_at_epoch_s is not None:
            # A rig that shares this time base can measure latency from each line's offset.
            await asyncio.sleep(max(0.0, self.start_at_epoch_s - time.time()))
        start = time.monotonic()
        first_ts: datetime | None = None
        for lineno, raw in self._lines():
            try:
                line = parse_line(raw)
            except FrameError as err:
                self.stats.reject(err, f"{self.path}:{lineno}")
                continue
            if self.sensors is not None and line.sensor_id not in self.sensors:
                log.info("replay: ignoring unpaired sensor %s", line.sensor_id)
                continue
            offset = line.offset_s
            if offset is None:
                assert line.ts is not None
                first_ts = first_ts or line.ts
                offset = (line.ts - first_ts).total_seconds()
            if self.speed > 0:
                delay = start + offset / self.speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)
            stamp = self.clock.now()
            if self.keep_time and line.ts is not None:
                stamp = Stamp(line.ts, stamp.monotonic_s, stamp.boot_id, stamp.synced)
            self.stats.frames_ok += 1
            yield Reading.at(stamp, line.sensor_id, line.kind, line.value, unit=line.unit, extra=line.extra)
        self.finished = True
