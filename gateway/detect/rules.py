"""Routine rules: a bed left at night and not re-entered, not up in the morning, the front
door opened at night.

* ``bed_exit_no_return``: a bed pad occupied at least ``bed_min_occupied_min`` goes empty
  (for longer than the debounce) in the night window and no pad in the same room is
  occupied again within ``bed_exit_no_return_min``; it alarms once the home has also been
  quiet ``bed_exit_quiet_min`` (someone busy in the kitchen at 3 a.m. is not lying on the
  floor), not after the night window ends plus the same minutes, and not when the front door
  was the last activity (they went out: that is ``night_door``'s business).
* ``not_up``: by the not-up time the person has not been up since the night ended, is not
  out of the bedroom right now, and the home is not away. Up means outside the bed and the
  bedroom for 20 minutes on end: a toilet trip and back to bed is not getting up. The
  not-up time is ``not_up_by``, moved later to the latest getting-up time seen (the start
  of that stretch, last 28 days) plus ``not_up_margin_min``, never later than
  ``not_up_latest``.
* ``night_door``: the front door opens in its window (``night_door_start`` to
  ``night_door_end``, the deep night: evening outings and early starts are routine) while
  someone was home and had been in bed, or all was quiet, within
  ``night_door_after_sleep_min``, and nothing moves inside within ``night_door_grace_min``.

Settings are per home: each gateway's config is one home's. State lives in the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any

from gateway.clock import Stamp
from gateway.config import Config, parse_hhmm
from gateway.detect.profile import (
    AWAY,
    Activity,
    HomeTracker,
    LearnedStore,
    bedroom_rooms_of,
    find_entrance_door,
    in_window,
    local_minutes,
)
from gateway.model import ACTIVITY_KINDS, Alert, AlertType, Reading, Sensor

KEY = "routine.rules"
WAKE_HISTORY_DAYS = 28
WAKE_MIN_DAYS = 7
PERSIST_EVERY_S = 600.0
UP_CONFIRM_S = 20 * 60.0
"""Out of the bedroom this long after the night: up (a toilet trip and back to bed is not)."""


def _hhmm(minutes: float) -> str:
    return f"{int(minutes) // 60:02d}:{int(minutes) % 60:02d}"


def _ts(x: float) -> datetime:
    return datetime.fromtimestamp(x, UTC)


class RoutineRules:
    name = "routine_rules"

    def __init__(
        self, cfg: Config, store: LearnedStore, *, sensors: Mapping[str, Sensor] | None = None
    ) -> None:
        self.cfg = cfg.detection.rules
        self.icfg = cfg.detection.inactivity
        self.tz = cfg.gateway.tz
        self.store = store
        self.sensors = (
            dict(sensors) if sensors is not None else {s.id: s for s in cfg.sensor_list()}
        )
        room_kinds = {r.id: r.kind for r in cfg.rooms}
        self.bedrooms = bedroom_rooms_of(room_kinds)
        self.entrance = find_entrance_door(self.sensors, room_kinds, self.cfg.entrance_door)
        self.tracker = HomeTracker(
            self.sensors,
            entrance_door=self.entrance,
            bedroom_rooms=self.bedrooms,
            bed_debounce_s=self.icfg.bed_debounce_s,
        )
        self.night_start = parse_hhmm(self.cfg.night_start)
        self.night_end = parse_hhmm(self.cfg.night_end)
        self.door_start = parse_hhmm(self.cfg.night_door_start)
        self.door_end = parse_hhmm(self.cfg.night_door_end)
        self.debounce = timedelta(seconds=self.icfg.bed_debounce_s)
        self._clear()

    def _clear(self) -> None:
        self.bed_on_since: dict[str, float] = {}
        self.bed_off_at: dict[str, float] = {}
        self.exits: dict[str, float] = {}  # bed sensor -> exit ts, pending
        self.door_at: float | None = None
        self.up_day: str | None = None
        self.up_start: float | None = None
        self.fired_not_up: str | None = None
        self.wake: list[tuple[str, float]] = []
        self._persisted_t = 0.0
        self._dirty = False
        self.last_nonbed_t = 0.0
        # Stream time of the first tick since this process started. A rule that has not
        # watched the morning cannot say the person did not get up: a gateway (re)started
        # after the not-up time skips that day's check instead of alarming at once.
        self.watching_since: float | None = None

    # ------------------------------------------------------------------ state

    def restore(self) -> None:
        data = self.store.learned(KEY)
        if not data:
            return
        self.tracker.load_json(data["tracker"])
        self.bed_on_since = dict(data.get("bed_on_since", {}))
        self.bed_off_at = dict(data.get("bed_off_at", {}))
        self.exits = dict(data.get("exits", {}))
        self.door_at = data.get("door_at")
        self.up_day = data.get("up_day")
        self.up_start = data.get("up_start")
        self.fired_not_up = data.get("fired_not_up")
        self.wake = [(str(d), float(m)) for d, m in data.get("wake", [])]
        self.last_nonbed_t = float(data.get("last_nonbed_t", 0.0))

    def persist(self) -> None:
        last = self.tracker.last
        self._persisted_t = last.ts.timestamp() if last else 0.0
        self._dirty = False
        self.store.put_learned(
            KEY,
            {
                "tracker": self.tracker.to_json(),
                "bed_on_since": self.bed_on_since,
                "bed_off_at": self.bed_off_at,
                "exits": self.exits,
                "door_at": self.door_at,
                "up_day": self.up_day,
                "up_start": self.up_start,
                "fired_not_up": self.fired_not_up,
                "wake": [list(w) for w in self.wake],
                "last_nonbed_t": self.last_nonbed_t,
            },
        )

    def reset(self) -> None:
        self.store.delete_learned(KEY)
        self._clear()
        self.tracker.load_json({})

    # ------------------------------------------------------------------ helpers

    def _local_day(self, ts: datetime) -> date:
        return ts.astimezone(self.tz).date()

    def _night_end_after(self, ts: datetime) -> datetime:
        local = ts.astimezone(self.tz)
        end = local.replace(
            hour=self.night_end.hour, minute=self.night_end.minute, second=0, microsecond=0
        )
        if end <= local:
            end = (local + timedelta(days=1)).replace(
                hour=self.night_end.hour, minute=self.night_end.minute, second=0, microsecond=0
            )
        return end.astimezone(UTC)

    def is_night(self, ts: datetime) -> bool:
        return in_window(local_minutes(ts, self.tz), self.night_start, self.night_end)

    def not_up_time_min(self) -> tuple[float, str]:
        """The not-up time (local minutes) and whether it is configured or learned.

        The latest getting-up time seen plus the margin, never earlier than ``not_up_by``
        nor later than ``not_up_latest``. It only ever moves the configured time later, so
        it applies from the first morning seen: a late riser is not woken by an alarm in
        the first week."""
        base = parse_hhmm(self.cfg.not_up_by)
        latest = parse_hhmm(self.cfg.not_up_latest)
        base_m = base.hour * 60 + base.minute
        latest_m = latest.hour * 60 + latest.minute
        if not self.wake:
            return float(base_m), "configured"
        learned = max(m for _, m in self.wake) + self.cfg.not_up_margin_min
        due = float(min(max(base_m, learned), max(base_m, latest_m)))
        raised = due > base_m
        return due, "learned" if raised or len(self.wake) >= WAKE_MIN_DAYS else "configured"

    def _from_sleep(self, prev: Activity | None, ts: datetime, empty: bool) -> bool:
        """Someone was home and had been in bed (or all was quiet) shortly before ``ts``.
        ``empty``: the home was known empty (out, or a door into an empty home with nobody
        seen yet); ``away`` that is only a passage under way (the door, a light, the door
        again) is someone going out."""
        if prev is None or (prev.state == AWAY and empty):
            return False
        window = self.cfg.night_door_after_sleep_min * 60
        if window <= 0:
            return True
        asleep = self.tracker.last_asleep_ts
        if asleep is not None and ts.timestamp() - asleep.timestamp() <= window:
            return True
        return ts.timestamp() - prev.ts.timestamp() >= window

    def _confirm_up(self, t: float) -> bool:
        """Outside the bedroom for :data:`UP_CONFIRM` since the night ended: up, and the
        getting-up time (the start of that stretch) is learned. True if it changed."""
        start = self.up_start
        if start is None or t - start < UP_CONFIRM_S:
            return False
        day = self._local_day(_ts(start)).isoformat()
        if self.up_day == day:
            return False
        self.up_day = day
        minutes = local_minutes(_ts(start), self.tz)
        latest = parse_hhmm(self.cfg.not_up_latest)
        if minutes <= latest.hour * 60 + latest.minute:
            self.wake = [*self.wake, (day, minutes)][-WAKE_HISTORY_DAYS:]
        return True

    def _tick_up(self, now: datetime) -> bool:
        """Confirm a getting-up stretch that has lasted; drop one from an earlier day."""
        if self.up_start is None:
            return False
        if self._local_day(_ts(self.up_start)) != self._local_day(now):
            self.up_start = None  # a stretch from yesterday is no getting up today
            return True
        return self._confirm_up(now.timestamp())

    def _room(self, sensor_id: str) -> str:
        s = self.sensors.get(sensor_id)
        return s.room if s else ""

    # ------------------------------------------------------------------ detector

    def feed(self, reading: Reading) -> Sequence[Alert]:
        if reading.kind not in ACTIVITY_KINDS:
            return ()
        prev = self.tracker.last
        if prev is not None and reading.ts < prev.ts:
            return ()
        is_bed = self.tracker.is_bed(reading)
        empty = self.tracker.away_confirmed or self.tracker.arriving
        self.tracker.observe(reading)
        t = reading.ts.timestamp()
        sid = reading.sensor_id
        changed = False
        important = False
        if is_bed or (sid != self.entrance and self._room(sid) in self.bedrooms):
            # back in the bedroom: a stretch outside it long enough was getting up; a short
            # one (the toilet, a drink) was not
            important = self._confirm_up(t) or important
            changed = changed or self.up_start is not None
            self.up_start = None
        if is_bed:
            changed = True
            if reading.value:
                self.bed_off_at.pop(sid, None)
                self.bed_on_since.setdefault(sid, t)
                room = self._room(sid)
                for other in list(self.exits):  # back in a bed in the same room
                    if other == sid or self._room(other) == room:
                        del self.exits[other]
                        important = True
            else:
                self.bed_off_at[sid] = t
        elif sid == self.entrance:
            if (
                reading.value
                and in_window(local_minutes(reading.ts, self.tz), self.door_start, self.door_end)
                and self._from_sleep(prev, reading.ts, empty)
            ):
                self.door_at = t
                important = True
        else:
            self.last_nonbed_t = t
            if self.door_at is not None:
                self.door_at = None
                important = True
            room = self._room(sid)
            if room not in self.bedrooms and self.tracker.stir is None:  # a stir is no getting up
                day = self._local_day(reading.ts).isoformat()
                minutes = local_minutes(reading.ts, self.tz)
                end_m = self.night_end.hour * 60 + self.night_end.minute
                if self.up_day != day and minutes >= end_m and self.up_start is None:
                    self.up_start = t  # out of the bedroom after the night: up, if it lasts
                    important = True
                important = self._confirm_up(t) or important
        self._maybe_persist(reading.ts.timestamp(), important, changed)
        return ()

    def _maybe_persist(self, t: float, important: bool, changed: bool) -> None:
        """Persist what matters at once; debounce-level detail at most every 10 minutes."""
        self._dirty = self._dirty or changed
        if important or (self._dirty and t - self._persisted_t >= PERSIST_EVERY_S):
            self.persist()

    def tick(self, now: Stamp) -> Sequence[Alert]:
        out: list[Alert] = []
        t = now.wall.timestamp()
        if self.watching_since is None:
            self.watching_since = t
        last = self.tracker.last
        changed = False
        important = False
        # bed exits confirmed after the debounce
        for sid, off in list(self.bed_off_at.items()):
            if t - off >= self.debounce.total_seconds():
                del self.bed_off_at[sid]
                since = self.bed_on_since.pop(sid, off)
                changed = True
                if off - since >= self.cfg.bed_min_occupied_min * 60 and self.is_night(_ts(off)):
                    self.exits[sid] = off
                    important = True
        for sid, off in list(self.exits.items()):
            n = self.cfg.bed_exit_no_return_min * 60
            expire = self._night_end_after(_ts(off)).timestamp() + n
            if t > expire or (last is not None and last.state == AWAY):
                del self.exits[sid]
                important = True
                continue
            quiet = t - last.ts.timestamp() if last else t - off
            up = self.last_nonbed_t > off  # something outside the bed moved: they got up
            if up and t - off >= n and quiet >= self.cfg.bed_exit_quiet_min * 60:
                del self.exits[sid]
                important = True
                out.append(self._bed_alert(now, sid, off, last.ts.timestamp() if last else off))
        door = self.door_at
        if (
            self.cfg.night_door
            and door is not None
            and t - door >= self.cfg.night_door_grace_min * 60
        ):
            out.append(self._door_alert(now, door))
            self.door_at = None
            important = True
        important = self._tick_up(now.wall) or important
        if self.cfg.not_up and last is not None:
            local = now.wall.astimezone(self.tz)
            day = local.date().isoformat()
            due_m, source = self.not_up_time_min()
            m = local.hour * 60 + local.minute
            midnight = datetime.combine(local.date(), dtime(0), tzinfo=self.tz)
            watched = self.watching_since <= (midnight + timedelta(minutes=due_m)).timestamp()
            up_now = self.up_start is not None  # out of the bedroom, not yet for long
            if m >= due_m and watched and not up_now and day not in (self.up_day, self.fired_not_up):
                self.fired_not_up = day
                important = True
                if last.state != AWAY:
                    out.append(self._not_up_alert(now, due_m, source))
        self._maybe_persist(t, important or bool(out), changed)
        return out

    # ------------------------------------------------------------------ alerts

    def _iso(self, x: float) -> str:
        return _ts(x).astimezone(self.tz).isoformat()

    def _last_evidence(self) -> dict[str, Any]:
        last = self.tracker.last
        if last is None:
            return {}
        return {
            "last_activity_ts": last.ts.astimezone(self.tz).isoformat(),
            "last_activity_sensor": last.sensor_id,
            "last_activity_room": last.room,
        }

    def _bed_alert(self, now: Stamp, sid: str, off: float, last_t: float) -> Alert:
        return Alert.raise_(
            AlertType.BED_EXIT_NO_RETURN,
            now,
            sensor=self.sensors.get(sid),
            evidence={
                "bed_exit_ts": self._iso(off),
                "out_of_bed_min": round((now.wall.timestamp() - off) / 60, 1),
                "limit_min": self.cfg.bed_exit_no_return_min,
                "quiet_min": round((now.wall.timestamp() - last_t) / 60, 1),
                "night": f"{self.cfg.night_start}-{self.cfg.night_end}",
                **self._last_evidence(),
            },
        )

    def _door_alert(self, now: Stamp, at: float) -> Alert:
        return Alert.raise_(
            AlertType.NIGHT_DOOR,
            now,
            sensor=self.sensors.get(self.entrance),
            evidence={
                "door_opened_ts": self._iso(at),
                "grace_min": self.cfg.night_door_grace_min,
                "window": f"{self.cfg.night_door_start}-{self.cfg.night_door_end}",
                **self._last_evidence(),
            },
        )

    def _not_up_alert(self, now: Stamp, due_m: float, source: str) -> Alert:
        return Alert.raise_(
            AlertType.NOT_UP,
            now,
            evidence={
                "not_up_by": f"{int(due_m) // 60:02d}:{int(due_m) % 60:02d}",
                "not_up_source": source,
                "wake_history_days": len(self.wake),
                "latest_usual_wake": _hhmm(max(m for _, m in self.wake)) if self.wake else None,
                **self._last_evidence(),
            },
        )
