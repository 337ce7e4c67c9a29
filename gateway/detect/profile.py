"""What a home normally looks like: the shared state tracker and the learned quiet profile.

:class:`HomeTracker` follows the readings and says, at any moment, where the last activity
was and what the home is doing: ``away`` (the last thing that happened was the front door,
or activity within two minutes of it, and nothing moved inside since; a door into an empty
home stays ``away`` until something inside moves), ``asleep`` (someone lies on a bed pad
and the last activity came from the bed or the bedroom; a pad that sticks "occupied" after
the person got up is overruled by activity elsewhere), or ``home`` (quiet and at home).
Quiet at home also has a context: ``door``, ``bed``, ``lone`` or ``busy``
(:meth:`HomeTracker.context_of`).

:class:`QuietProfile` learns, per state and per local hour of the week in which a quiet
period began, how long quiet periods last in this home, and per state how long they last
after each room, each context and each (room, context) pair. Counts go into fixed
log-spaced bins, so learning is a sum of integers: incremental, cheap to store, and a
restart neither loses nor doubles anything (the store holds the counts together with the
time of the last activity they include). The hour's limit pools the same hour and its two
neighbours over every day of the week: two to four weeks give only two to four samples per
hour of the week, and daily routine dominates weekly routine in older people's homes. A
context factor (the pair's ratio of 90th percentiles to the state's, else the product of
the room's and the context's) scales it: where the person is and what they were doing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np

from gateway.config import InactivityConfig
from gateway.model import ACTIVITY_KINDS, Reading, ReadingKind, Sensor, SensorKind

HOME = "home"
ASLEEP = "asleep"
AWAY = "away"
STATES = (HOME, ASLEEP)
"""States whose quiet periods are learned (away has no inactivity limit)."""

AWAY_CONFIRM = timedelta(minutes=10)
"""Nothing inside this long after the front door: the home is empty."""
RETURN_WINDOW = timedelta(minutes=30)
PASSAGE = timedelta(minutes=2)
"""Front-door events this close together are one passage (open, close), and activity this
soon after the front door is part of going out (the hall light, a remote put down)."""
RETURN_AFTER = timedelta(minutes=60)
"""The front door after this long with nothing inside since it last closed: a return."""
RECENT = timedelta(minutes=15)
"""How far back the context of a quiet period looks (see :meth:`HomeTracker.context_of`)."""
STIR = timedelta(minutes=2)
"""While asleep, one sensor alone for this long, with nothing else within :data:`RECENT`
before it, is a stir (see :meth:`HomeTracker._is_stir`), not someone up."""

CONTEXTS = ("busy", "lone", "door", "bed")
QUIET_Q = 0.9
"""Context factors compare this quantile of the context's quiet periods with the state's."""

N_BINS = 48
BIN_EDGES_MIN = np.geomspace(5.0, 2880.0, N_BINS + 1)
"""Quiet-period bins, 5 min to 48 h, each about 14 % wider than the last."""


class LearnedStore(Protocol):
    """The part of :class:`gateway.store.Store` detectors use for learned state."""

    def learned(self, name: str) -> Any | None: ...

    def put_learned(self, name: str, value: Any) -> None: ...

    def delete_learned(self, prefix: str = "") -> int: ...


class MemoryLearned:
    """A LearnedStore in memory (replays, tests). Values go through JSON, as in the store."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.writes = 0

    def learned(self, name: str) -> Any | None:
        text = self.data.get(name)
        return json.loads(text) if text is not None else None

    def put_learned(self, name: str, value: Any) -> None:
        self.writes += 1
        self.data[name] = json.dumps(value)

    def delete_learned(self, prefix: str = "") -> int:
        gone = [k for k in self.data if k.startswith(prefix)]
        for k in gone:
            del self.data[k]
        return len(gone)


def hour_of_week(ts: datetime, tz: ZoneInfo) -> int:
    """0 = Monday 00:00-01:00 local time, 167 = Sunday 23:00-24:00."""
    local = ts.astimezone(tz)
    return local.weekday() * 24 + local.hour


def local_minutes(ts: datetime, tz: ZoneInfo) -> float:
    local = ts.astimezone(tz)
    return local.hour * 60 + local.minute + local.second / 60


def in_window(minutes: float, start: time, end: time) -> bool:
    """Whether a local time of day (minutes) lies in [start, end), windows may wrap midnight."""
    s = start.hour * 60 + start.minute
    e = end.hour * 60 + end.minute
    if s <= e:
        return s <= minutes < e
    return minutes >= s or minutes < e


def bin_of(minutes: float) -> int:
    idx = int(np.searchsorted(BIN_EDGES_MIN, minutes, side="right")) - 1
    return min(N_BINS - 1, max(0, idx))


# --------------------------------------------------------------------------- tracker


@dataclass(frozen=True, slots=True)
class Activity:
    """The last activity seen: when, which sensor, which room, and the state it left."""

    ts: datetime
    sensor_id: str
    room: str
    state: str
    context: str = ""
    """What the home looked like when it went quiet (see :meth:`HomeTracker.context_of`)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "ts": self.ts.timestamp(),
            "sensor": self.sensor_id,
            "room": self.room,
            "state": self.state,
            "context": self.context,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Activity:
        return cls(
            datetime.fromtimestamp(float(data["ts"]), UTC),
            str(data["sensor"]),
            str(data["room"]),
            str(data["state"]),
            str(data.get("context", "")),
        )


class HomeTracker:
    """Where the last activity was, the beds (debounced), and the home's state."""

    def __init__(
        self,
        sensors: Mapping[str, Sensor],
        *,
        entrance_door: str,
        bedroom_rooms: frozenset[str],
        bed_debounce_s: float,
    ) -> None:
        self.sensors = sensors
        self.entrance_door = entrance_door
        self.bedroom_rooms = bedroom_rooms
        self.bed_debounce = timedelta(seconds=bed_debounce_s)
        self.last: Activity | None = None
        self.away_confirmed = False
        self.candidate: Activity | None = None
        self.last_asleep_ts: datetime | None = None
        self.bed_raw: dict[str, bool] = {}
        self.bed_off_since: dict[str, datetime] = {}
        self.recent: dict[str, datetime] = {}
        """Each sensor's latest activity within :data:`RECENT` (for the context)."""
        self.door_ts: datetime | None = None
        self.arriving = False
        """The front door opened into an empty home and nothing inside has moved since."""
        self.stir: Activity | None = None
        """The first reading of a lone stir while asleep (see :data:`STIR`)."""

    def is_bed(self, reading: Reading) -> bool:
        s = self.sensors.get(reading.sensor_id)
        return reading.kind is ReadingKind.IN_BED or (s is not None and s.kind is SensorKind.BED)

    def room_of(self, sensor_id: str) -> str:
        s = self.sensors.get(sensor_id)
        return s.room if s is not None else ""

    def in_bed(self, now: datetime, sensor_id: str | None = None) -> bool:
        """Someone on a pad now; an 'off' shorter than the debounce still counts as in bed."""
        ids = [sensor_id] if sensor_id is not None else list(self.bed_raw)
        for sid in ids:
            if self.bed_raw.get(sid):
                return True
            off = self.bed_off_since.get(sid)
            if off is not None and now - off < self.bed_debounce:
                return True
        return False

    def state_after(self, reading: Reading) -> str:
        if reading.sensor_id == self.entrance_door:
            # someone left (or came in): the next minutes tell which
            return AWAY
        room = self.room_of(reading.sensor_id)
        if self.is_bed(reading):
            # on the pad: asleep. Off it with nothing after: pads drop out under a sleeper
            # far more often than someone collapses at the bedside, so still asleep; the
            # next activity anywhere else says they are up.
            return ASLEEP
        if room in self.bedroom_rooms and self.in_bed(reading.ts):
            return ASLEEP
        return HOME

    def observe(self, reading: Reading) -> Activity | None:
        """Take one reading; return the new last activity if it is one, else None."""
        if reading.kind not in ACTIVITY_KINDS:
            return None
        if self.is_bed(reading):
            on = bool(reading.value)
            if self.bed_raw.get(reading.sensor_id) and not on:
                self.bed_off_since[reading.sensor_id] = reading.ts
                self.last_asleep_ts = reading.ts  # in bed until now
            self.bed_raw[reading.sensor_id] = on
        state = self.state_after(reading)
        last = self.last
        if reading.sensor_id == self.entrance_door:
            if (
                last is not None
                and last.sensor_id == self.entrance_door
                and (reading.ts - last.ts <= PASSAGE)
            ):
                state = last.state  # the same passage (open, close)
            elif last is not None and last.state == AWAY and reading.ts - last.ts >= RETURN_AFTER:
                # the door opens into an empty home: someone came back, or looked in and went
                # again. Still away until the first activity inside says someone is in.
                self.arriving = True
            if not self.arriving:
                self.away_confirmed = False
            self.candidate = None
        elif self.arriving:
            self.arriving = False  # the first activity inside after a door into an empty home
            self.away_confirmed = False
            self.candidate = None
        elif (
            last is not None
            and last.state == AWAY
            and not self.away_confirmed
            and self._in_passage(last.ts)
            and (reading.ts - last.ts >= AWAY_CONFIRM)
        ):
            self.away_confirmed = True  # nothing inside for a while after the door: they left
        elif (
            last is not None
            and last.state == AWAY
            and not self.away_confirmed
            and self._in_passage(reading.ts)
        ):
            # the hall light, a remote put down, a second person's last steps: still going out
            state = AWAY
        if self.away_confirmed and reading.sensor_id != self.entrance_door:
            # out, and something stirs without the door opening: a glitch, a pet, or a
            # missed door event. Two different sensors within RETURN_WINDOW say someone is in.
            cand = self.candidate
            if (
                cand is not None
                and cand.sensor_id != reading.sensor_id
                and (reading.ts - cand.ts <= RETURN_WINDOW)
            ):
                self.away_confirmed = False
                self.candidate = None
            else:
                if cand is None or reading.ts - cand.ts > RETURN_WINDOW:
                    self.candidate = Activity(reading.ts, reading.sensor_id, "", AWAY)
                state = AWAY
        if state == HOME and self._is_stir(reading):
            state = ASLEEP
            if self.stir is None:
                self.stir = Activity(reading.ts, reading.sensor_id, "", ASLEEP)
        else:
            self.stir = None
        if state == ASLEEP:
            self.last_asleep_ts = reading.ts
        if reading.sensor_id == self.entrance_door:
            self.door_ts = reading.ts
        self.recent[reading.sensor_id] = reading.ts
        self.recent = {k: v for k, v in self.recent.items() if reading.ts - v <= RECENT}
        act = Activity(
            reading.ts,
            reading.sensor_id,
            self.room_of(reading.sensor_id),
            state,
            self.context_of(reading, state),
        )
        self.last = act
        return act

    def _is_stir(self, reading: Reading) -> bool:
        """A lone stir while asleep: a PIR that sees the morning sun or a pet, a sensor
        glitch. One sensor, within :data:`STIR` of its first reading, with nothing else
        within :data:`RECENT` before it (not even the bed pad, which someone getting out of
        bed moves). The home stays asleep; the next reading of another sensor, or this one
        going on past :data:`STIR`, says someone is up. The same idea as a lone event while
        away (it takes two sensors to say someone is in)."""
        last = self.last
        if last is None or last.state != ASLEEP:
            return False
        if any(
            sid != reading.sensor_id and reading.ts - ts <= RECENT
            for sid, ts in self.recent.items()
        ):
            return False
        stir = self.stir
        return stir is None or (
            stir.sensor_id == reading.sensor_id and reading.ts - stir.ts <= STIR
        )

    def _in_passage(self, ts: datetime) -> bool:
        """Within :data:`PASSAGE` after the front door went."""
        return self.door_ts is not None and ts - self.door_ts <= PASSAGE

    def context_of(self, reading: Reading, state: str) -> str:
        """Which kind of quiet is beginning, for quiet at home.

        ``door``: the front door went within :data:`RECENT` (someone may have just left, or
        come in); ``bed``: a bed pad reads occupied (back in bed after the toilet, or a pad
        that sticks); ``lone``: one sensor alone in :data:`RECENT` (a sitter shifting on a
        chair, or a sensor stirring in an empty home); ``busy``: anything else, someone moving
        about. Each context learns its own quiet periods.
        """
        if state != HOME:
            return ""
        if self.door_ts is not None and reading.ts - self.door_ts <= RECENT:
            return "door"
        if self.in_bed(reading.ts):
            return "bed"
        if len(self.recent) <= 1:
            return "lone"
        return "busy"

    def to_json(self) -> dict[str, Any]:
        return {
            "away_confirmed": self.away_confirmed,
            "candidate": self.candidate.to_json() if self.candidate else None,
            "last_asleep_ts": self.last_asleep_ts.timestamp() if self.last_asleep_ts else None,
            "last": self.last.to_json() if self.last else None,
            "bed_raw": dict(self.bed_raw),
            "bed_off_since": {k: v.timestamp() for k, v in self.bed_off_since.items()},
            "recent": {k: v.timestamp() for k, v in self.recent.items()},
            "door_ts": self.door_ts.timestamp() if self.door_ts else None,
            "arriving": self.arriving,
            "stir": self.stir.to_json() if self.stir else None,
        }

    def load_json(self, data: Mapping[str, Any]) -> None:
        self.last = Activity.from_json(data["last"]) if data.get("last") else None
        self.away_confirmed = bool(data.get("away_confirmed", False))
        self.candidate = Activity.from_json(data["candidate"]) if data.get("candidate") else None
        sl = data.get("last_asleep_ts")
        self.last_asleep_ts = datetime.fromtimestamp(float(sl), UTC) if sl is not None else None
        self.bed_raw = {str(k): bool(v) for k, v in data.get("bed_raw", {}).items()}
        self.bed_off_since = {
            str(k): datetime.fromtimestamp(float(v), UTC)
            for k, v in data.get("bed_off_since", {}).items()
        }
        self.recent = {
            str(k): datetime.fromtimestamp(float(v), UTC)
            for k, v in data.get("recent", {}).items()
        }
        self.arriving = bool(data.get("arriving", False))
        self.stir = Activity.from_json(data["stir"]) if data.get("stir") else None
        dt = data.get("door_ts")
        self.door_ts = datetime.fromtimestamp(float(dt), UTC) if dt is not None else None


def bedroom_rooms_of(room_kinds: Mapping[str, str]) -> frozenset[str]:
    return frozenset(r for r, k in room_kinds.items() if k == "bedroom")


def find_entrance_door(
    sensors: Mapping[str, Sensor], room_kinds: Mapping[str, str], configured: str
) -> str:
    """The configured front door, else the first door sensor in an entrance room, else ''."""
    if configured:
        return configured
    for s in sensors.values():
        if s.kind is SensorKind.DOOR and room_kinds.get(s.room) == "entrance":
            return s.id
    return ""


# --------------------------------------------------------------------------- profile


@dataclass(frozen=True, slots=True)
class Limit:
    """The inactivity limit that applies to a quiet period, and where it comes from."""

    minutes: float
    source: str  # "learned" or "learning"
    samples: int
    history_days: float
    quantile_min: float | None
    hour_limit_min: float | None = None
    """The limit of the hour alone, before the context factor."""
    factor: float | None = None
    """How much longer (or shorter) quiet lasts after this room and in this context than in
    any (see :meth:`QuietProfile.factor`); None when no context had enough history."""
    context: tuple[str, ...] = ()
    """The context keys whose history the factor rests on (``room:kitchen``, ``ctx:busy``)."""
    hours: int = 0
    """How many hours of the day were pooled around this one (1 + 2 x the width)."""


Counts = np.ndarray[Any, np.dtype[np.int64]]


def context_keys(room: str, context: str) -> tuple[str, ...]:
    """The keys a quiet period is also counted under: its room, its context, the pair."""
    keys = [f"room:{room}"] if room else []
    if context:
        keys.append(f"ctx:{context}")
    if room and context:
        keys.append(f"both:{room}/{context}")
    return tuple(keys)


class QuietProfile:
    """Counts of quiet-period lengths per state and hour of the week, and per state and
    context key; limits from them."""

    def __init__(self, cfg: InactivityConfig) -> None:
        self.cfg = cfg
        self.counts: dict[str, Counts] = {
            s: np.zeros((168, N_BINS), dtype=np.int64) for s in STATES
        }
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.contexts: dict[str, dict[str, Counts]] = {s: {} for s in STATES}
        self._cache: dict[tuple[str, int, tuple[str, ...]], Limit] = {}

    # learning -----------------------------------------------------------------

    def add(self, state: str, how: int, minutes: float, keys: tuple[str, ...] = ()) -> bool:
        """Learn one finished quiet period. Returns True if it changed the counts."""
        if state not in self.counts or minutes < self.cfg.learn_min_gap_min:
            return False
        b = bin_of(minutes)
        self.counts[state][how, b] += 1
        for key in keys:
            arr = self.contexts[state].get(key)
            if arr is None:
                arr = self.contexts[state][key] = np.zeros(N_BINS, dtype=np.int64)
            arr[b] += 1
        self._cache.clear()
        return True

    def seen(self, ts: datetime) -> None:
        t = ts.timestamp()
        if self.first_ts is None:
            self.first_ts = t
        self.last_ts = t if self.last_ts is None else max(self.last_ts, t)

    @property
    def history_days(self) -> float:
        if self.first_ts is None or self.last_ts is None:
            return 0.0
        return (self.last_ts - self.first_ts) / 86400.0

    # limits -------------------------------------------------------------------

    def pooled(self, state: str, how: int, width: int = 1) -> Counts:
        """Counts of the same hour of day +-``width`` hours, over every day of the week."""
        hour = how % 24
        hours = sorted({(hour + d) % 24 for d in range(-width, width + 1)})
        rows = [day * 24 + h for day in range(7) for h in hours]
        out: Counts = self.counts[state][rows].sum(axis=0)
        return out

    def _bounds(self, state: str, hour: int) -> tuple[float, float, float]:
        """(limit while learning, lowest, highest) for a state at an hour of the day."""
        cfg = self.cfg
        if state == ASLEEP:
            return cfg.sleep_limit_min, cfg.sleep_min_limit_min, cfg.sleep_limit_min
        default = cfg.day_limit_min if 7 <= hour < 22 else cfg.night_limit_min
        return default, cfg.min_limit_min, cfg.max_limit_min

    def limit(self, state: str, how: int, keys: tuple[str, ...] = ()) -> Limit:
        """The limit for quiet that began in ``state`` at hour of week ``how``, after
        activity with these context keys."""
        ck = (state, how, keys)
        hit = self._cache.get(ck)
        if hit is None:
            hit = self._cache[ck] = self._limit(state, how, keys)
        return hit

    def _limit(self, state: str, how: int, keys: tuple[str, ...]) -> Limit:
        cfg = self.cfg
        days = self.history_days
        default, lo, hi = self._bounds(state, how % 24)
        if days < cfg.learning_days or state not in self.counts:
            return Limit(min(max(default, lo), hi), "learning", 0, days, None)
        # widen the hours pooled until there are enough quiet periods (a smoother that
        # adapts to how busy the home is at this hour)
        width = 1
        counts = self.pooled(state, how, width)
        while int(counts.sum()) < cfg.min_samples and width < 12:
            width += 1
            counts = self.pooled(state, how, width)
        n = int(counts.sum())
        if n < cfg.min_samples:
            return Limit(min(max(default, lo), hi), "learning", n, days, None)
        cum = np.cumsum(counts)
        idx = int(np.searchsorted(cum, math.ceil(cfg.percentile * n)))
        q = float(BIN_EDGES_MIN[min(idx + 1, N_BINS)])  # the bin's upper edge: conservative
        share = (2 * width + 1) / 24.0  # the part of the day these hours are
        tail = self._tail_limit(counts, n, n / max(days, 1.0), self.cfg.target_fa_per_day * share)
        hour_limit = max(q * cfg.margin, tail)
        factor, used = self.factor(state, keys)
        minutes = hour_limit * (factor if factor is not None else 1.0)
        return Limit(
            min(max(minutes, lo), hi),
            "learned",
            n,
            days,
            q,
            round(hour_limit, 1),
            round(factor, 3) if factor is not None else None,
            used,
            2 * width + 1,
        )

    def factor(self, state: str, keys: tuple[str, ...]) -> tuple[float | None, tuple[str, ...]]:
        """How much longer (or shorter) quiet lasts after this room in this context than
        after anything: the ratio of :data:`QUIET_Q` quantiles, within the configured
        bounds. The room and context seen together at least ``min_samples`` times: their
        own ratio; else the product of the room's and the context's ratios (a log-additive
        model: room and context are learned apart when the pair is rare). A key with fewer
        than ``min_samples`` quiet periods counts as 1; none: None."""
        everything = self._quantile(self.counts[state].sum(axis=0))
        if everything is None:
            return None, ()
        factor = 1.0
        used: list[str] = []
        joint = [k for k in keys if k.startswith("both:")]
        if joint:
            arr = self.contexts[state].get(joint[0])
            mine = self._quantile(arr) if arr is not None else None
            if mine is not None:
                keys = ()
                factor = mine / everything
                used.append(joint[0])
        for key in [k for k in keys if not k.startswith("both:")]:
            arr = self.contexts[state].get(key)
            mine = self._quantile(arr) if arr is not None else None
            if mine is not None:
                factor *= mine / everything
                used.append(key)
        if not used:
            return None, ()
        lo, hi = self.cfg.context_factor_min, self.cfg.context_factor_max
        return min(max(factor, lo), hi), tuple(used)

    def _quantile(self, counts: Counts) -> float | None:
        """The :data:`QUIET_Q` quantile of binned quiet periods (bin's geometric middle)."""
        n = int(counts.sum())
        if n < self.cfg.min_samples:
            return None
        idx = int(np.searchsorted(np.cumsum(counts), QUIET_Q * n))
        return float(np.sqrt(BIN_EDGES_MIN[idx] * BIN_EDGES_MIN[idx + 1]))

    @staticmethod
    def _tail_limit(counts: Counts, n: int, per_day: float, target: float) -> float:
        """The length beyond which quiet periods come ``target`` times a day, from an
        exponential tail fitted to the longest fifth of them (``per_day`` of them a day)."""
        k = max(5, n // 5)
        mids = np.sqrt(BIN_EDGES_MIN[:-1] * BIN_EDGES_MIN[1:])
        values = np.repeat(mids, counts)  # ascending
        top = values[-k:]
        u = float(top[0])
        beta = max(float(np.mean(top - u)), 1.0)
        s_target = target / max(per_day, 1e-9)
        s_u = k / n
        if s_target >= s_u:
            return u
        return u + beta * math.log(s_u / s_target)

    # persistence --------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        sparse: dict[str, list[list[int]]] = {}
        for s, arr in self.counts.items():
            hs, bs = np.nonzero(arr)
            sparse[s] = [
                list(x) for x in zip(hs.tolist(), bs.tolist(), arr[hs, bs].tolist(), strict=True)
            ]
        contexts = {
            s: {k: [[int(b), int(arr[b])] for b in np.nonzero(arr)[0]] for k, arr in per.items()}
            for s, per in self.contexts.items()
        }
        return {
            "v": 2,
            "bins": N_BINS,
            "counts": sparse,
            "contexts": contexts,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
        }

    def load_json(self, data: Mapping[str, Any]) -> None:
        version = data.get("v")
        if version not in (1, 2) or data.get("bins") != N_BINS:
            return
        for s in STATES:
            arr = np.zeros((168, N_BINS), dtype=np.int64)
            for h, b, c in data.get("counts", {}).get(s, []):
                arr[int(h), int(b)] = int(c)
            self.counts[s] = arr
            per: dict[str, Counts] = {}
            # version 1 kept rooms only, under their bare names
            stored = data.get("contexts" if version == 2 else "rooms", {}).get(s, {})
            for key, pairs in stored.items():
                k_arr = np.zeros(N_BINS, dtype=np.int64)
                for b, c in pairs:
                    k_arr[int(b)] = int(c)
                per[str(key) if version == 2 else f"room:{key}"] = k_arr
            self.contexts[s] = per
        self.first_ts = data.get("first_ts")
        self.last_ts = data.get("last_ts")
        self._cache.clear()

    def total(self, state: str) -> int:
        return int(self.counts[state].sum())
