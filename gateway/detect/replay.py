"""Replay an ambient event log (the shared ``events.csv`` format) through the routine
detectors, and score them with the project's protocol (``anxin routine eval``).

Protocol: activity is any event of any sensor; the first 7 days learn and are not scored;
scoring runs from day 8 to the end of the labels. False alarms: every alert the detectors
raise over the untouched log in the scored days, per scored day. Injected emergencies: for
each seed and scored day, one random moment 08:00-20:00 at which the labels say someone is
home; every later event that day is deleted; the delay is the time to the first alert,
cut at midnight (a miss counts as infinite in the median and p90).

Each injection is replayed from the detectors' own persisted state at the moment of the
injection in the untouched run (persist, then a fresh detector restores it: the restart
path): the log up to that moment is the same in both runs, and the detectors are causal.
A consequence, said plainly: the learned state on later days is the untouched run's, so
emergencies of earlier days are never learned as normal quiet.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from gateway.clock import Stamp
from gateway.config import (
    Config,
    GatewayConfig,
    RoomConfig,
    RulesConfig,
    SensorConfig,
    default_config,
)
from gateway.detect.inactivity import InactivityDetector
from gateway.detect.profile import LearnedStore, MemoryLearned
from gateway.detect.rules import RoutineRules
from gateway.errors import ConfigError
from gateway.model import Alert, Reading, ReadingKind, Sensor, SensorKind, Transport

KIND_OF_TYPE = {
    "door": (SensorKind.DOOR, ReadingKind.CONTACT),
    "motion": (SensorKind.MOTION, ReadingKind.MOTION),
    "bed": (SensorKind.BED, ReadingKind.IN_BED),
    "toilet": (SensorKind.TOILET, ReadingKind.TOILET),
    "appliance": (SensorKind.APPLIANCE, ReadingKind.APPLIANCE),
    "other": (SensorKind.OTHER, ReadingKind.CONTACT),
}
"""events.csv sensor_type -> (sensor kind, reading kind). "other" are cupboards, switches,
chairs: a contact (open/used) is the nearest reading."""

AWAY_WORDS = ("leav", "going out", "go out", "out of home")
SCORE_FROM_DAY = 8
TICK = timedelta(minutes=1)


def _room_guess(sensor_id: str, stype: str, description: str) -> tuple[str, str]:
    """(room id, room kind) from a sensor's name and description."""
    text = f"{sensor_id} {description}".lower()
    if stype == "door" and ("front" in text or "house door" in text or "house_door" in text):
        return "entrance", "entrance"
    if stype == "bed" or "bedroom" in text or "wardrobe" in text or "dresser" in text:
        return "bedroom", "bedroom"
    if any(
        w in text for w in ("toilet", "bathroom", "shower", "water closet", "water_closet", "flush")
    ):
        return "bathroom", "bathroom"
    if any(
        w in text
        for w in (
            "kitchen",
            "fridge",
            "freezer",
            "microwave",
            "stove",
            "toaster",
            "cupboard",
            "drawer",
            "dish",
            "tap",
            "gootsteen",
            "pans",
            "plates",
        )
    ):
        return "kitchen", "kitchen"
    if any(w in text for w in ("couch", "tv", "chair", "piano")):
        return "living", "living"
    return "other", "other"


@dataclass(slots=True)
class Home:
    """One home's log, readings built once."""

    name: str
    tz: ZoneInfo
    sensors: dict[str, Sensor]
    room_kinds: dict[str, str]
    readings: list[Reading]
    times: np.ndarray[Any, np.dtype[np.float64]]  # epoch seconds of readings
    labels_end: datetime
    away: list[tuple[float, float]]  # intervals when everybody is out (labels)
    first_day: date
    entrance: str = ""
    config: Config = field(default_factory=default_config)


def _parse_local(text: str, tz: ZoneInfo) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz).astimezone(UTC)


def load_home(path: Path, tz: ZoneInfo, base: Config | None = None) -> Home:
    events = path / "events.csv"
    if not events.is_file():
        raise ConfigError(f"no events.csv in {path}", path=str(path))
    descriptions: dict[str, tuple[str, str]] = {}
    sensors_csv = path / "sensors.csv"
    if sensors_csv.is_file():
        with sensors_csv.open(newline="") as f:
            for row in csv.DictReader(f):
                descriptions[row["sensor_id"]] = (row["sensor_type"], row.get("description", ""))
    readings: list[Reading] = []
    sensors: dict[str, Sensor] = {}
    room_kinds: dict[str, str] = {}
    with events.open(newline="") as f:
        for row in csv.DictReader(f):
            sid, stype = row["sensor_id"], row["sensor_type"]
            if sid not in sensors:
                room, rkind = _room_guess(sid, stype, descriptions.get(sid, (stype, ""))[1])
                skind = KIND_OF_TYPE.get(stype, (SensorKind.OTHER, ReadingKind.CONTACT))[0]
                sensors[sid] = Sensor(sid, skind, Transport.REPLAY, sid, room)
                room_kinds[room] = rkind
            rkind_r = KIND_OF_TYPE.get(stype, (SensorKind.OTHER, ReadingKind.CONTACT))[1]
            ts = _parse_local(row["ts"], tz)
            readings.append(
                Reading(sid, rkind_r, row["value"].strip() == "1", ts, 0.0, "replay", True)
            )
    if not readings:
        raise ConfigError(f"{events} holds no events", path=str(events))
    away, labels_end = _labels(path / "activities.csv", tz, readings[-1].ts)
    entrance = next((s.id for s in sensors.values() if room_kinds.get(s.room) == "entrance"), "")
    base = base or default_config()
    rules = base.detection.rules
    if not rules.entrance_door and entrance:
        rules = RulesConfig(**{**_fields(rules), "entrance_door": entrance})
    cfg = Config(
        gateway=GatewayConfig(id=base.gateway.id, home=path.name, timezone=str(tz.key)),
        rooms=tuple(RoomConfig(id=r, kind=k) for r, k in sorted(room_kinds.items())),
        sensors=tuple(
            SensorConfig(
                id=s.id, kind=s.kind, transport=s.transport, address=s.address, room=s.room
            )
            for s in sensors.values()
        ),
        detection=type(base.detection)(
            inactivity=base.detection.inactivity, rules=rules, fall=base.detection.fall
        ),
    )
    return Home(
        name=path.name,
        tz=tz,
        sensors=sensors,
        room_kinds=room_kinds,
        readings=readings,
        times=np.array([r.ts.timestamp() for r in readings]),
        labels_end=labels_end,
        away=away,
        first_day=readings[0].ts.astimezone(tz).date(),
        entrance=entrance,
        config=cfg,
    )


def _fields(obj: Any) -> dict[str, Any]:
    return {k: getattr(obj, k) for k in obj.__slots__}


def _merge(iv: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for s, e in sorted(iv):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _intersect(
    a: list[tuple[float, float]], b: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _labels(
    path: Path, tz: ZoneInfo, fallback_end: datetime
) -> tuple[list[tuple[float, float]], datetime]:
    """Intervals when every resident is out, and the end of the labels."""
    if not path.is_file():
        return [], fallback_end
    per: dict[str, list[tuple[float, float]]] = {}
    residents: set[str] = set()
    end = None
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            s = _parse_local(row["start"], tz)
            e = _parse_local(row["end"], tz)
            who = row.get("resident") or ""
            residents.add(who)
            end = e if end is None else max(end, e)
            if any(w in row["label"].lower() for w in AWAY_WORDS):
                per.setdefault(who, []).append((s.timestamp(), e.timestamp()))
    if not residents:
        return [], fallback_end
    away: list[tuple[float, float]] | None = None
    for who in residents:
        mine = _merge(per.get(who, []))
        away = mine if away is None else _intersect(away, mine)
    return away or [], end or fallback_end


# --------------------------------------------------------------------------- replay


def build_detectors(
    cfg: Config, sensors: dict[str, Sensor], store: LearnedStore
) -> list[InactivityDetector | RoutineRules]:
    """The routine detectors the gateway runs, in its order."""
    return [
        InactivityDetector(cfg, store, sensors=sensors),
        RoutineRules(cfg, store, sensors=sensors),
    ]


def _stamp(ts: datetime) -> Stamp:
    return Stamp(ts, 0.0, "replay", True)


class Replayer:
    """Feeds readings in order and ticks once a minute, as the service does."""

    def __init__(
        self, cfg: Config, sensors: dict[str, Sensor], store: LearnedStore | None = None
    ) -> None:
        self.cfg = cfg
        self.sensors = sensors
        self.store: LearnedStore = store if store is not None else MemoryLearned()
        self.dets = build_detectors(cfg, sensors, self.store)
        for d in self.dets:
            d.restore()
        self.next_tick: datetime | None = None

    def tick_until(self, ts: datetime, *, inclusive: bool = False) -> list[Alert]:
        out: list[Alert] = []
        if self.next_tick is None:
            self.next_tick = ts.replace(second=0, microsecond=0) + TICK
            return out
        while self.next_tick < ts or (inclusive and self.next_tick == ts):
            stamp = _stamp(self.next_tick)
            for d in self.dets:
                out.extend(d.tick(stamp))
            self.next_tick += TICK
        return out

    def feed(self, r: Reading) -> list[Alert]:
        out = self.tick_until(r.ts)
        for d in self.dets:
            out.extend(d.feed(r))
        return out

    def fork(self) -> Replayer:
        """A copy through the restart path: persist, then new detectors restore it."""
        for d in self.dets:
            d.persist()
        mem = MemoryLearned()
        assert isinstance(self.store, MemoryLearned)
        mem.data = dict(self.store.data)  # JSON text: nothing shared
        other = Replayer(self.cfg, self.sensors, mem)
        other.next_tick = self.next_tick
        return other


@dataclass(frozen=True, slots=True)
class EvalResult:
    home: str
    days: int
    false_alarms: int
    false_alarms_by_type: dict[str, int]
    injected: int
    detected: int
    delays_min: list[float]

    def summary(self) -> dict[str, Any]:
        d = np.array(self.delays_min, dtype=float) if self.delays_min else np.array([math.inf])
        med = float(np.median(d)) if self.delays_min else math.inf
        p90 = float(np.quantile(d, 0.9, method="higher")) if self.delays_min else math.inf
        return {
            "home": self.home,
            "days": self.days,
            "false_alarms": self.false_alarms,
            "false_alarms_per_day": round(self.false_alarms / self.days, 3) if self.days else None,
            "false_alarms_by_type": self.false_alarms_by_type,
            "injected": self.injected,
            "detected": self.detected,
            "delay_median_min": round(med, 1) if math.isfinite(med) else None,
            "delay_p90_min": round(p90, 1) if math.isfinite(p90) else None,
        }


def _day_start(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def injection_moments(home: Home, days: Sequence[date], seed: int) -> dict[date, datetime]:
    """One random moment 08:00-20:00 per day at which the labels say someone is home."""
    rng = np.random.default_rng(seed)
    out: dict[date, datetime] = {}
    for day in days:
        lo = _day_start(day, home.tz) + timedelta(hours=8)
        hi = _day_start(day, home.tz) + timedelta(hours=20)
        free = [(lo.timestamp(), hi.timestamp())]
        for a, b in home.away:
            nxt = []
            for s, e in free:
                if b <= s or a >= e:
                    nxt.append((s, e))
                    continue
                if a > s:
                    nxt.append((s, a))
                if b < e:
                    nxt.append((b, e))
            free = nxt
        total = sum(e - s for s, e in free)
        u = float(rng.uniform(0, 1))
        if total <= 0:
            continue
        x = u * total
        for s, e in free:
            if x < e - s:
                out[day] = datetime.fromtimestamp(s + x, UTC)
                break
            x -= e - s
    return out


def evaluate(home: Home, seeds: int = 20) -> EvalResult:
    tz = home.tz
    day8 = home.first_day + timedelta(days=SCORE_FROM_DAY - 1)
    last_day = (home.labels_end - timedelta(microseconds=1)).astimezone(tz).date()
    days = [day8 + timedelta(days=i) for i in range((last_day - day8).days + 1)]
    if not days:
        raise ConfigError(f"{home.name}: fewer than {SCORE_FROM_DAY} days of log", path=home.name)
    score_from = _day_start(day8, tz)
    score_to = _day_start(last_day + timedelta(days=1), tz)
    injections: list[tuple[datetime, int]] = []
    for seed in range(seeds):
        for m in injection_moments(home, days, seed).values():
            injections.append((m, seed))
    injections.sort()
    rep = Replayer(home.config, home.sensors)
    alerts: list[Alert] = []
    delays: list[float] = []
    detected = 0
    k = 0
    for r in [*home.readings, None]:
        ts = r.ts if r is not None else score_to
        while k < len(injections) and injections[k][0] < ts:
            m = injections[k][0]
            alerts += rep.tick_until(m, inclusive=True)
            delay = _run_injection(rep.fork(), m, tz)
            delays.append(delay)
            detected += math.isfinite(delay)
            k += 1
        if r is None:
            alerts += rep.tick_until(score_to)
        elif r.ts < score_to:
            alerts += rep.feed(r)
    scored = [a for a in alerts if score_from <= a.ts < score_to]
    by_type: dict[str, int] = {}
    for a in scored:
        by_type[a.type.value] = by_type.get(a.type.value, 0) + 1
    return EvalResult(home.name, len(days), len(scored), by_type, len(injections), detected, delays)


def _run_injection(rep: Replayer, moment: datetime, tz: ZoneInfo) -> float:
    local = moment.astimezone(tz)
    midnight = (
        local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    ).astimezone(UTC)
    while rep.next_tick is not None and rep.next_tick <= midnight:
        stamp = _stamp(rep.next_tick)
        for d in rep.dets:
            if d.tick(stamp):
                return (rep.next_tick - moment).total_seconds() / 60.0
        rep.next_tick += TICK
    return math.inf
