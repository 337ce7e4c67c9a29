"""Inactivity: quiet at home for longer than this home is ever quiet at this hour.

Every activity reading ends a quiet period; its length is learned under the state the home
was in when it began (``home`` or ``asleep``; ``away`` is not learned and never alarms) and
the local hour of the week it began in, and under the room and context of the activity
before it (see :mod:`gateway.detect.profile`). The limit for the quiet period now running
is the hour's learned limit (a high quantile times a margin, or the tail fitted to aim at
``target_fa_per_day``) times the learned factor of that room and context, within the
configured minimum and maximum (and, in the day, after someone moved about or came in, at
most ``day_busy_max_min``); while the home has less than
``learning_days`` of history, the configured day, night and sleep limits apply. One alert
per quiet period; its evidence names the last activity, the limit and the history behind it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from gateway.clock import Stamp
from gateway.config import Config, parse_hhmm
from gateway.detect.profile import (
    AWAY,
    HOME,
    Activity,
    HomeTracker,
    LearnedStore,
    Limit,
    QuietProfile,
    bedroom_rooms_of,
    context_keys,
    find_entrance_door,
    hour_of_week,
    in_window,
    local_minutes,
)
from gateway.model import ACTIVITY_KINDS, Alert, AlertType, Reading, Sensor

KEY = "routine.inactivity"
DAY_BUSY = "day_busy_max"
"""Limit source: the learned limit was longer than ``day_busy_max_min`` and was cut to it."""
DAY_BUSY_CONTEXTS = ("busy", "door")
"""Quiet after someone moved about, or came through the front door: in the day, never left
longer than ``day_busy_max_min``. Quiet after a lone sensor (someone settled in a chair, a
nap) or with a bed pad occupied keeps its learned limit."""
PERSIST_EVERY = timedelta(minutes=10)


def keys_of(a: Activity) -> tuple[str, ...]:
    """The context keys a quiet period after this activity is learned and judged under."""
    return context_keys(a.room or a.sensor_id, a.context)


class InactivityDetector:
    name = "inactivity"

    def __init__(
        self, cfg: Config, store: LearnedStore, *, sensors: Mapping[str, Sensor] | None = None
    ) -> None:
        self.cfg = cfg.detection.inactivity
        self.tz = cfg.gateway.tz
        self.store = store
        self.sensors = (
            dict(sensors) if sensors is not None else {s.id: s for s in cfg.sensor_list()}
        )
        room_kinds = {r.id: r.kind for r in cfg.rooms}
        self.tracker = HomeTracker(
            self.sensors,
            entrance_door=find_entrance_door(
                self.sensors, room_kinds, cfg.detection.rules.entrance_door
            ),
            bedroom_rooms=bedroom_rooms_of(room_kinds),
            bed_debounce_s=self.cfg.bed_debounce_s,
        )
        self.profile = QuietProfile(self.cfg)
        self.day_busy_from = parse_hhmm(self.cfg.day_busy_from)
        self.day_busy_to = parse_hhmm(self.cfg.day_busy_to)
        self.alarmed_for: float | None = None
        self._persisted_at: datetime | None = None
        self._dirty = False

    # ------------------------------------------------------------------ state

    def restore(self) -> None:
        if self.load():
            self._catch_up()

    def load(self) -> bool:
        """Load learned state without replaying anything (read-only); False if none."""
        data = self.store.learned(KEY)
        if not data:
            return False
        self.profile.load_json(data["profile"])
        self.tracker.load_json(data["tracker"])
        self.alarmed_for = data.get("alarmed_for")
        return True

    def _catch_up(self) -> None:
        """Replay readings the store holds after the persisted cursor (they were never learned)."""
        between = getattr(self.store, "readings_between", None)
        last = self.tracker.last
        if between is None or last is None:
            return
        for r in between(last.ts, datetime.max.replace(tzinfo=last.ts.tzinfo), ACTIVITY_KINDS):
            self.feed(r)

    def persist(self) -> None:
        self.store.put_learned(
            KEY,
            {
                "profile": self.profile.to_json(),
                "tracker": self.tracker.to_json(),
                "alarmed_for": self.alarmed_for,
            },
        )
        self._persisted_at = self.tracker.last.ts if self.tracker.last else None
        self._dirty = False

    def reset(self) -> None:
        self.store.delete_learned(KEY)
        self.profile = QuietProfile(self.cfg)
        self.tracker.load_json({})
        self.alarmed_for = None

    # ------------------------------------------------------------------ detector

    def feed(self, reading: Reading) -> Sequence[Alert]:
        if not self.cfg.enabled or reading.kind not in ACTIVITY_KINDS:
            return ()
        prev = self.tracker.last
        if prev is not None and reading.ts < prev.ts:
            return ()  # already learned (replayed after a restart) or out of order
        act = self.tracker.observe(reading)
        if act is None:
            return ()
        learned = False
        upto = self.profile.last_ts
        self.profile.seen(act.ts)
        if prev is not None and act.ts > prev.ts and (upto is None or act.ts.timestamp() > upto):
            minutes = (act.ts - prev.ts).total_seconds() / 60.0
            learned = self.profile.add(
                prev.state, hour_of_week(prev.ts, self.tz), minutes, keys_of(prev)
            )
        self._dirty = True
        if (
            learned
            or prev is None
            or self._persisted_at is None
            or act.ts - self._persisted_at >= PERSIST_EVERY
        ):
            self.persist()
        return ()

    def current_limit(self) -> Limit | None:
        last = self.tracker.last
        if last is None or last.state == AWAY:
            return None
        lim = self.profile.limit(last.state, hour_of_week(last.ts, self.tz), keys_of(last))
        cap = self.cfg.day_busy_max_min
        if (
            cap > 0
            and lim.minutes > cap
            and last.state == HOME
            and last.context in DAY_BUSY_CONTEXTS
            and in_window(local_minutes(last.ts, self.tz), self.day_busy_from, self.day_busy_to)
        ):
            return replace(lim, minutes=cap, source=DAY_BUSY)
        return lim

    def deadline(self) -> datetime | None:
        """When the running quiet period will alarm (None: away, or already alarmed)."""
        last = self.tracker.last
        lim = self.current_limit()
        if last is None or lim is None or self.alarmed_for == last.ts.timestamp():
            return None
        return last.ts + timedelta(minutes=lim.minutes)

    def tick(self, now: Stamp) -> Sequence[Alert]:
        due = self.deadline()
        if due is None or now.wall < due:
            return ()
        last = self.tracker.last
        lim = self.current_limit()
        assert last is not None
        assert lim is not None
        self.alarmed_for = last.ts.timestamp()
        self.persist()
        return (self._alert(now, last, lim),)

    def _alert(self, now: Stamp, last: Activity, lim: Limit) -> Alert:
        quiet_min = (now.wall - last.ts).total_seconds() / 60.0
        evidence: dict[str, Any] = {
            "state": last.state,
            "last_activity_ts": last.ts.astimezone(self.tz).isoformat(),
            "last_activity_sensor": last.sensor_id,
            "last_activity_room": last.room,
            "quiet_min": round(quiet_min, 1),
            "limit_min": round(lim.minutes, 1),
            "limit_source": lim.source,
            "history_days": round(lim.history_days, 1),
            "history_quiet_periods": lim.samples,
            "percentile": self.cfg.percentile,
            "margin": self.cfg.margin,
        }
        if lim.quantile_min is not None:
            evidence["usual_longest_min"] = round(lim.quantile_min, 1)
        if last.context:
            evidence["context"] = last.context
        if lim.factor is not None:
            evidence["hour_limit_min"] = lim.hour_limit_min
            evidence["context_factor"] = lim.factor
            evidence["context_keys"] = list(lim.context)
        if lim.hours:
            evidence["hours_pooled"] = lim.hours
        return Alert.raise_(
            AlertType.INACTIVITY,
            now,
            sensor=self.sensors.get(last.sensor_id),
            evidence=evidence,
            room=last.room or None,
        )

    def snapshot(self) -> dict[str, Any]:
        """Plain data for `anxin routine show`."""
        last = self.tracker.last
        lim = self.current_limit()
        return {
            "last": last.to_json() if last else None,
            "limit_min": lim.minutes if lim else None,
            "limit_source": lim.source if lim else None,
            "history_days": self.profile.history_days,
        }
