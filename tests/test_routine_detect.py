"""Inactivity, routine rules and the learned profile on small synthetic logs with known answers."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import Stamp
from gateway.config import (
    Config,
    DetectionConfig,
    GatewayConfig,
    InactivityConfig,
    RoomConfig,
    RulesConfig,
    SensorConfig,
)
from gateway.detect.inactivity import KEY as INACT_KEY
from gateway.detect.inactivity import InactivityDetector
from gateway.detect.profile import (
    ASLEEP,
    AWAY,
    BIN_EDGES_MIN,
    HOME,
    MemoryLearned,
    QuietProfile,
    bin_of,
    context_keys,
    hour_of_week,
    in_window,
)
from gateway.detect.rules import RoutineRules
from gateway.model import Alert, AlertType, Reading, ReadingKind, SensorKind, Transport
from gateway.store import Store

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday; the home's zone is UTC in these tests


def make_cfg(inact: dict[str, Any] | None = None, rules: dict[str, Any] | None = None) -> Config:
    rooms = (
        RoomConfig(id="hall", kind="entrance"),
        RoomConfig(id="bedroom", kind="bedroom"),
        RoomConfig(id="kitchen", kind="kitchen"),
        RoomConfig(id="living", kind="living"),
    )

    def s(id_: str, kind: SensorKind, room: str) -> SensorConfig:
        return SensorConfig(id=id_, kind=kind, transport=Transport.REPLAY, address=id_, room=room)

    sensors = (
        s("front", SensorKind.DOOR, "hall"),
        s("bed", SensorKind.BED, "bedroom"),
        s("pir_bed", SensorKind.MOTION, "bedroom"),
        s("pir_kit", SensorKind.MOTION, "kitchen"),
        s("pir_liv", SensorKind.MOTION, "living"),
        s("fridge", SensorKind.APPLIANCE, "kitchen"),
    )
    det = DetectionConfig(
        inactivity=InactivityConfig(**(inact or {})), rules=RulesConfig(**(rules or {}))
    )
    return Config(
        gateway=GatewayConfig(id="gw", home="h", timezone="UTC"),
        rooms=rooms,
        sensors=sensors,
        detection=det,
    )


KIND = {
    "front": ReadingKind.CONTACT,
    "bed": ReadingKind.IN_BED,
    "pir_bed": ReadingKind.MOTION,
    "pir_kit": ReadingKind.MOTION,
    "pir_liv": ReadingKind.MOTION,
    "fridge": ReadingKind.APPLIANCE,
}


def rd(ts: datetime, sensor: str, value: bool = True) -> Reading:
    return Reading(sensor, KIND[sensor], value, ts, 0.0, "test", True)


class Run:
    """Feeds readings and ticks each minute, like the service; collects alerts."""

    def __init__(self, det: InactivityDetector | RoutineRules) -> None:
        self.det = det
        self.alerts: list[Alert] = []
        self.t: datetime | None = None

    def until(self, end: datetime) -> list[Alert]:
        new: list[Alert] = []
        t = self.t or end
        while t <= end:
            new += self.det.tick(Stamp(t, 0.0, "test", True))
            t += timedelta(minutes=1)
        self.t = t
        self.alerts += new
        return new

    def feed(self, readings: Iterable[Reading]) -> list[Alert]:
        new: list[Alert] = []
        for r in readings:
            if self.t is None:
                self.t = r.ts
            new += self.until(r.ts - timedelta(seconds=1))
            new += self.det.feed(r)
        self.alerts += new
        return new


def up(ts: datetime, sensor: str = "pir_kit") -> list[Reading]:
    """Getting out of bed: the pad goes empty a minute before ``sensor`` sees the person."""
    return [rd(ts - timedelta(minutes=1), "bed", False), rd(ts, sensor)]


def types(alerts: Sequence[Alert]) -> list[AlertType]:
    return [a.type for a in alerts]


# --------------------------------------------------------------------------- profile


def test_time_helpers() -> None:
    assert hour_of_week(T0, UTC) == 0  # type: ignore[arg-type]
    assert hour_of_week(T0 + timedelta(days=6, hours=23, minutes=59), UTC) == 167  # type: ignore[arg-type]
    from datetime import time

    assert in_window(23 * 60, time(22), time(6))
    assert in_window(3 * 60, time(22), time(6))
    assert not in_window(12 * 60, time(22), time(6))
    assert in_window(12 * 60, time(8), time(20))
    assert not in_window(20 * 60, time(8), time(20))
    assert bin_of(5.0) == 0
    assert bin_of(1.0) == 0
    assert BIN_EDGES_MIN[bin_of(100.0)] <= 100.0 < BIN_EDGES_MIN[bin_of(100.0) + 1]


def test_profile_learning_default_then_learned() -> None:
    cfg = InactivityConfig(learning_days=14, min_samples=30)
    prof = QuietProfile(cfg)
    # while learning: configured limits by time of day
    assert prof.limit(HOME, 10).minutes == cfg.day_limit_min
    assert prof.limit(HOME, 3).minutes == cfg.night_limit_min
    assert prof.limit(ASLEEP, 3).minutes == cfg.sleep_limit_min
    assert prof.limit(HOME, 10).source == "learning"
    # 20 days, every day four 30-minute quiet periods starting 10:00-12:00
    for d in range(20):
        for k in range(4):
            assert prof.add(HOME, (d % 7) * 24 + 10 + k % 2, 30.0)
    prof.seen(T0)
    prof.seen(T0 + timedelta(days=20))
    assert prof.total(HOME) == 80
    assert not prof.add(HOME, 10, 2.0)  # shorter than learn_min_gap_min: not learned
    assert not prof.add(AWAY, 10, 300.0)  # away is never learned
    lim = prof.limit(HOME, 10)
    assert lim.source == "learned"
    assert lim.samples == 80
    # all quiet periods were 30 min: the limit is the floor, whatever the tail says
    assert lim.quantile_min is not None
    assert 30 <= lim.quantile_min <= 35
    assert lim.minutes == cfg.min_limit_min
    # a home whose 10:00 quiet lasts 100-150 min gets a limit above what it has shown
    prof2 = QuietProfile(cfg)
    for d in range(20):
        for k, m in enumerate((100.0, 120.0, 150.0)):
            prof2.add(HOME, (d % 7) * 24 + 10 + k % 2, m)
    prof2.seen(T0)
    prof2.seen(T0 + timedelta(days=20))
    lim2 = prof2.limit(HOME, 10)
    assert 150 < lim2.minutes <= cfg.max_limit_min
    # an hour with too few quiet periods widens the pool, far hours fall back
    assert prof2.limit(HOME, 22).samples >= 30
    # round trip through JSON keeps the counts
    prof3 = QuietProfile(cfg)
    prof3.load_json(prof2.to_json())
    assert (prof3.counts[HOME] == prof2.counts[HOME]).all()
    assert prof3.limit(HOME, 10) == lim2


# --------------------------------------------------------------------------- inactivity


def test_inactivity_learning_limit_and_evidence() -> None:
    # the configured day limit while learning (the daytime cap is tested on its own below)
    det = InactivityDetector(make_cfg(inact={"day_busy_max_min": 0}), MemoryLearned())
    run = Run(det)
    t = T0 + timedelta(hours=10)
    run.feed([rd(t, "pir_kit"), rd(t + timedelta(minutes=1), "fridge")])
    last = t + timedelta(minutes=1)
    assert run.until(last + timedelta(minutes=179)) == []
    got = run.until(last + timedelta(minutes=181))
    assert types(got) == [AlertType.INACTIVITY]
    ev = got[0].evidence
    assert ev["last_activity_sensor"] == "fridge"
    assert ev["last_activity_room"] == "kitchen"
    assert ev["limit_min"] == 180.0
    assert ev["limit_source"] == "learning"
    assert ev["state"] == HOME
    assert ev["last_activity_ts"].startswith("2026-03-02T10:01")
    assert "history_days" in ev
    assert "history_quiet_periods" in ev
    # one alert per quiet period
    assert run.until(last + timedelta(hours=20)) == []
    # new activity, new quiet period: alarms again after the limit
    run.feed([rd(last + timedelta(hours=20, minutes=5), "pir_liv")])
    assert types(run.until(last + timedelta(hours=33))) == [AlertType.INACTIVITY]  # 06:06 + 12 h


def test_inactivity_away_never_alarms_and_blip_does_not_end_away() -> None:
    det = InactivityDetector(make_cfg(), MemoryLearned())
    run = Run(det)
    t = T0 + timedelta(hours=9)
    run.feed(
        [
            rd(t, "pir_kit"),
            rd(t + timedelta(minutes=2), "front"),
            rd(t + timedelta(minutes=2, seconds=5), "front", False),
        ]
    )
    assert det.tracker.last is not None
    assert det.tracker.last.state == AWAY
    assert run.until(t + timedelta(hours=5)) == []
    # a lone PIR blip while out (pet, glitch): still away
    run.feed([rd(t + timedelta(hours=5, minutes=1), "pir_kit")])
    assert det.tracker.last.state == AWAY
    assert run.until(t + timedelta(hours=20)) == []
    # coming home: door, then activity within minutes: home again, limits apply
    back = t + timedelta(hours=26)  # 11:00 the next day
    run.feed(
        [
            rd(back, "front"),
            rd(back + timedelta(seconds=5), "front", False),
            rd(back + timedelta(minutes=1), "pir_liv"),
        ]
    )
    assert det.tracker.last.state == HOME
    assert types(run.until(back + timedelta(hours=4))) == [AlertType.INACTIVITY]


def test_door_into_an_empty_home_is_a_return_once_something_inside_moves() -> None:
    """Out for hours, the front door opens (and closes): someone came back, or looked in and
    went again. Still away (no alarm, however long) until the first activity inside; that
    one activity is enough (a home fitted with contacts only may see little else of them)."""
    det = InactivityDetector(make_cfg(), MemoryLearned())
    run = Run(det)
    t = T0 + timedelta(hours=9)
    run.feed(
        [
            rd(t, "pir_kit"),
            rd(t + timedelta(minutes=1), "front"),
            rd(t + timedelta(minutes=1, seconds=4), "front", False),
        ]
    )
    assert det.tracker.last.state == AWAY
    back = t + timedelta(hours=3)
    run.feed([rd(back, "front"), rd(back + timedelta(seconds=4), "front", False)])
    assert det.tracker.last.state == AWAY
    assert det.tracker.arriving
    assert run.until(back + timedelta(hours=5)) == []  # nobody seen inside: no alarm
    inside = back + timedelta(hours=5, minutes=1)
    run.feed([rd(inside, "fridge")])  # one sensor, once: someone is in
    assert det.tracker.last.state == HOME
    assert not det.tracker.arriving
    got = run.until(inside + timedelta(hours=4))
    assert types(got) == [AlertType.INACTIVITY]
    assert got[0].evidence["last_activity_sensor"] == "fridge"
    # coming home and walking straight in: home at once (the passage rule does not apply)
    det3 = InactivityDetector(make_cfg(), MemoryLearned())
    run3 = Run(det3)
    run3.feed([rd(t, "pir_kit"), rd(t + timedelta(minutes=1), "front")])
    run3.feed([rd(back, "front"), rd(back + timedelta(seconds=30), "pir_liv")])
    assert det3.tracker.last.state == HOME
    run3.feed([rd(back + timedelta(minutes=40), "pir_liv")])
    assert det3.tracker.last.state == HOME
    # a second door soon after the first (someone else leaving a few minutes later): away
    det2 = InactivityDetector(make_cfg(), MemoryLearned())
    run2 = Run(det2)
    run2.feed(
        [
            rd(t, "pir_kit"),
            rd(t + timedelta(minutes=1), "front"),
            rd(t + timedelta(minutes=15), "front"),
        ]
    )
    assert det2.tracker.last.state == AWAY


def test_activity_just_after_the_front_door_is_part_of_going_out() -> None:
    """The hall light, a remote put down on the way out: activity within two minutes of the
    front door, then nothing for ten minutes, is a home left empty (no alarm), as the door
    alone would be. Activity later than that says someone stayed."""
    det = InactivityDetector(make_cfg(), MemoryLearned())
    run = Run(det)
    t = T0 + timedelta(hours=15)
    run.feed(
        [
            rd(t, "pir_liv"),
            rd(t + timedelta(minutes=1), "front"),
            rd(t + timedelta(minutes=1, seconds=20), "front", False),
            rd(t + timedelta(minutes=2), "pir_liv"),  # 40 s after the door closed
        ]
    )
    assert det.tracker.last.state == AWAY
    assert run.until(t + timedelta(hours=6)) == []
    # someone stayed: they are seen three minutes after the door, then fall still
    det2 = InactivityDetector(make_cfg(), MemoryLearned())
    run2 = Run(det2)
    run2.feed(
        [
            rd(t, "pir_liv"),
            rd(t + timedelta(minutes=1), "front"),
            rd(t + timedelta(minutes=4), "pir_kit"),
        ]
    )
    assert det2.tracker.last.state == HOME
    assert det2.tracker.last.context == "door"
    assert types(run2.until(t + timedelta(hours=4))) == [AlertType.INACTIVITY]


def test_inactivity_asleep_uses_sleep_limit() -> None:
    det = InactivityDetector(make_cfg(), MemoryLearned())
    run = Run(det)
    t = T0 + timedelta(hours=14)  # an afternoon nap: day limit would be 180 min
    run.feed([rd(t, "pir_bed"), rd(t + timedelta(minutes=1), "bed", True)])
    assert det.tracker.last.state == ASLEEP
    assert run.until(t + timedelta(minutes=600)) == []
    assert types(run.until(t + timedelta(minutes=722))) == [AlertType.INACTIVITY]


def test_inactivity_sticky_bed_overruled_by_activity_elsewhere() -> None:
    det = InactivityDetector(make_cfg(), MemoryLearned())
    run = Run(det)
    t = T0 + timedelta(hours=7)
    # the pad says occupied, but the person is in the kitchen: quiet at home, day limit
    run.feed([rd(t, "bed", True), rd(t + timedelta(minutes=30), "pir_kit")])
    assert det.tracker.last.state == ASLEEP  # one sensor, once: a stir, not yet up
    run.feed([rd(t + timedelta(minutes=33), "pir_kit")])  # still moving 3 min on: up
    assert det.tracker.last.state == HOME
    assert types(run.until(t + timedelta(minutes=33 + 181))) == [AlertType.INACTIVITY]


def synthetic_days(days: int, quiet_min: float = 40.0) -> list[Reading]:
    """A regular home: up at 07:00, active every ``quiet_min`` until 22:00, bed till 07:00."""
    out: list[Reading] = []
    for d in range(days):
        day = T0 + timedelta(days=d)
        t = day + timedelta(hours=7)
        out.append(rd(t - timedelta(minutes=1), "bed", False))
        while t < day + timedelta(hours=22):
            out.append(rd(t, "pir_kit" if (t.hour % 2) else "pir_liv"))
            t += timedelta(minutes=quiet_min)
        out.append(rd(day + timedelta(hours=22, minutes=5), "pir_bed"))
        out.append(rd(day + timedelta(hours=22, minutes=6), "bed", True))
    return out


def test_inactivity_learns_the_home_and_limits_follow() -> None:
    cfg = make_cfg(inact={"learning_days": 7, "min_limit_min": 30})
    det = InactivityDetector(cfg, MemoryLearned())
    run = Run(det)
    run.feed(synthetic_days(10))
    # no false alarm from a regular routine
    assert run.alerts == []
    lim = det.profile.limit(HOME, 10)
    assert lim.source == "learned"
    # the home's 40-minute quiet periods: limit above them, far below the 180-min default
    assert 40 < lim.minutes < 120
    # one night a day: nine finished nights are fewer than min_samples: the sleep limit
    asleep = det.profile.limit(ASLEEP, 22)
    assert asleep.source == "learning"
    assert asleep.samples == 9
    assert asleep.minutes == cfg.detection.inactivity.sleep_limit_min
    # the person stops at 10:30 on day 11: alarm within the learned limit
    stop = T0 + timedelta(days=10, hours=10, minutes=30)
    run.feed(up(stop))
    got = run.until(stop + timedelta(hours=3))
    assert types(got) == [AlertType.INACTIVITY]
    assert got[0].ts - stop <= timedelta(minutes=lim.minutes + 1)
    assert got[0].evidence["limit_source"] == "learned"


# --------------------------------------------------------------------------- rules


def rules_run(**rules: Any) -> tuple[RoutineRules, Run]:
    det = RoutineRules(make_cfg(rules={"not_up": False, **rules}), MemoryLearned())
    return det, Run(det)


def night_in_bed(run: Run, day: datetime) -> datetime:
    t = day + timedelta(hours=23)
    run.feed([rd(t, "pir_bed"), rd(t + timedelta(minutes=1), "bed", True)])
    return t + timedelta(minutes=1)


def test_bed_exit_no_return_fires_once_quiet() -> None:
    _det, run = rules_run(bed_exit_no_return_min=30, bed_exit_quiet_min=10)
    t = night_in_bed(run, T0)
    out = t + timedelta(hours=3)  # 02:01 gets up, goes to the kitchen, falls
    run.feed([rd(out, "bed", False), rd(out + timedelta(minutes=2), "pir_kit")])
    assert run.until(out + timedelta(minutes=29)) == []
    got = run.until(out + timedelta(minutes=31))
    assert types(got) == [AlertType.BED_EXIT_NO_RETURN]
    assert got[0].evidence["bed_exit_ts"].startswith("2026-03-03T02:01")
    assert run.until(out + timedelta(hours=3)) == []


def test_bed_exit_returns_or_chatter_or_busy_no_alarm() -> None:
    _det, run = rules_run(bed_exit_no_return_min=30, bed_exit_quiet_min=10)
    t = night_in_bed(run, T0)
    out = t + timedelta(hours=3)
    # toilet trip and back within 20 min
    run.feed(
        [
            rd(out, "bed", False),
            rd(out + timedelta(minutes=1), "pir_kit"),
            rd(out + timedelta(minutes=20), "bed", True),
        ]
    )
    # chatter: off 30 s, no getting up
    c = out + timedelta(hours=1)
    run.feed([rd(c, "bed", False), rd(c + timedelta(seconds=30), "bed", True)])
    # up at 04:00 and busy in the kitchen until 05:00, back to bed
    b = out + timedelta(hours=2)
    busy = [rd(b, "bed", False)] + [
        rd(b + timedelta(minutes=m), "pir_kit") for m in range(1, 60, 5)
    ]
    run.feed([*busy, rd(b + timedelta(minutes=61), "bed", True)])
    assert run.until(b + timedelta(hours=3)) == []
    # bed exit in the daytime: not this rule's business
    d = T0 + timedelta(days=1, hours=14)
    run.feed(
        [
            rd(d, "bed", True),
            rd(d + timedelta(minutes=40), "bed", False),
            rd(d + timedelta(minutes=41), "pir_kit"),
        ]
    )
    assert run.until(d + timedelta(hours=3)) == []


def test_not_up_configured_then_learned() -> None:
    det = RoutineRules(make_cfg(rules={"not_up_by": "09:00", "night_door": False}), MemoryLearned())
    run = Run(det)
    t = night_in_bed(run, T0)
    assert run.until(T0 + timedelta(days=1, hours=8, minutes=59)) == []
    got = run.until(T0 + timedelta(days=1, hours=9, minutes=1))
    assert types(got) == [AlertType.NOT_UP]
    assert got[0].evidence["not_up_by"] == "09:00"
    assert got[0].evidence["not_up_source"] == "configured"
    # up on time the next day: nothing
    run.feed(
        [
            rd(T0 + timedelta(days=2, hours=7), "bed", False),
            rd(T0 + timedelta(days=2, hours=7, minutes=1), "pir_kit"),
        ]
    )
    assert run.until(T0 + timedelta(days=2, hours=12)) == []
    # a week of getting up at 09:30: the not-up time moves to 10:30 (latest + 60 min)
    for d in range(3, 11):
        run.feed([rd(T0 + timedelta(days=d, hours=9, minutes=30), "pir_kit")])
    assert det.not_up_time_min() == (10 * 60 + 30, "learned")
    assert t < T0 + timedelta(days=1)


def test_not_up_a_toilet_trip_is_not_getting_up() -> None:
    """Up at 06:30 for the toilet and back to bed: not up. The alarm comes at the not-up
    time. The day after, 20 minutes out of the bedroom is up, learned from its start."""
    det, run = rules_run(not_up=True, not_up_by="09:00", night_door=False)
    night_in_bed(run, T0)
    d1 = T0 + timedelta(days=1)
    run.feed(
        [
            rd(d1 + timedelta(hours=6, minutes=30), "bed", False),
            rd(d1 + timedelta(hours=6, minutes=31), "pir_kit"),  # out of the bedroom
            rd(d1 + timedelta(hours=6, minutes=36), "pir_bed"),  # back after five minutes
            rd(d1 + timedelta(hours=6, minutes=37), "bed", True),
        ]
    )
    assert det.up_day is None
    assert det.up_start is None
    got = run.until(d1 + timedelta(hours=9, minutes=1))
    assert types(got) == [AlertType.NOT_UP]
    # the next morning: out at 07:10, kitchen, then quiet (sitting somewhere without a
    # sensor): after 20 minutes that is up, and 07:10 is the getting-up time
    d2 = T0 + timedelta(days=2)
    run.feed(
        [
            rd(d2 + timedelta(hours=7, minutes=9), "bed", False),
            rd(d2 + timedelta(hours=7, minutes=10), "pir_kit"),
        ]
    )
    assert run.until(d2 + timedelta(hours=7, minutes=29)) == []
    assert det.up_day is None  # not yet 20 minutes
    run.until(d2 + timedelta(hours=7, minutes=31))
    assert det.up_day == d2.date().isoformat()
    assert det.wake == [(d2.date().isoformat(), 7 * 60 + 10)]
    assert run.until(d2 + timedelta(hours=12)) == []


def test_not_up_out_of_the_bedroom_at_the_due_time_is_not_an_alarm() -> None:
    """Getting up a few minutes before the not-up time: not yet confirmed, but out of the
    bedroom now, so no alarm."""
    _det, run = rules_run(not_up=True, not_up_by="09:00", night_door=False)
    night_in_bed(run, T0)
    d1 = T0 + timedelta(days=1)
    run.feed(up(d1 + timedelta(hours=8, minutes=55)))
    assert run.until(d1 + timedelta(hours=12)) == []


def test_not_up_a_late_riser_moves_the_time_from_the_first_morning() -> None:
    det, run = rules_run(not_up=True, not_up_by="09:00", night_door=False)
    assert det.not_up_time_min() == (9 * 60, "configured")
    night_in_bed(run, T0)
    d1 = T0 + timedelta(days=1)
    run.feed(up(d1 + timedelta(hours=8)))  # up at 08:00: earlier than 09:00
    run.until(d1 + timedelta(hours=8, minutes=30))
    assert det.not_up_time_min() == (9 * 60, "configured")
    night_in_bed(run, d1)
    d2 = T0 + timedelta(days=2)
    run.feed(up(d2 + timedelta(hours=8, minutes=50)))  # 08:50 + 60 min
    run.until(d2 + timedelta(hours=9, minutes=30))
    assert det.not_up_time_min() == (9 * 60 + 50, "learned")
    night_in_bed(run, d2)
    d3 = T0 + timedelta(days=3)
    # 09:30 and still in bed is no alarm now; 09:51 is
    assert run.until(d3 + timedelta(hours=9, minutes=30)) == []
    assert types(run.until(d3 + timedelta(hours=9, minutes=51))) == [AlertType.NOT_UP]


def test_tracker_contexts_of_quiet() -> None:
    """busy (moving about), lone (one sensor alone), door (just after the front door), bed
    (a pad occupied)."""
    det = InactivityDetector(make_cfg(), MemoryLearned())
    t = T0 + timedelta(hours=10)
    det.feed(rd(t, "pir_kit"))
    assert det.tracker.last.context == "lone"
    det.feed(rd(t + timedelta(minutes=3), "fridge"))
    assert det.tracker.last.context == "busy"
    later = t + timedelta(hours=1)  # the kitchen's readings are older than 15 minutes
    det.feed(rd(later, "pir_liv"))
    assert det.tracker.last.context == "lone"
    det.feed(rd(later + timedelta(minutes=20), "pir_liv"))
    assert det.tracker.last.context == "lone"  # the same sensor again: still alone
    door = later + timedelta(minutes=30)
    det.feed(rd(door, "front"))
    det.feed(rd(door + timedelta(minutes=5), "pir_kit"))  # someone stayed in
    assert det.tracker.last.state == HOME
    assert det.tracker.last.context == "door"
    # the bed pad reads occupied; the person reaches for the light in the bedroom? asleep.
    # activity elsewhere while the pad still says occupied (a sticky pad): home, context bed
    bed = door + timedelta(hours=2)
    det.feed(rd(bed, "bed", True))
    assert det.tracker.last.state == ASLEEP
    assert det.tracker.last.context == ""
    det.feed(rd(bed + timedelta(minutes=30), "pir_liv"))
    assert det.tracker.last.state == ASLEEP  # a lone stir
    det.feed(rd(bed + timedelta(minutes=33), "pir_liv"))  # going on: someone is up
    assert det.tracker.last.state == HOME
    assert det.tracker.last.context == "bed"
    # the quiet periods were learned under their context and room keys
    ctx = det.profile.contexts[HOME]
    assert int(ctx["ctx:lone"].sum()) >= 2
    assert int(ctx["room:kitchen"].sum()) >= 1
    assert "ctx:door" in ctx


def test_not_up_not_when_away() -> None:
    _det, run = rules_run(not_up=True, not_up_by="09:00", night_door=False)
    run.feed(
        [rd(T0 + timedelta(hours=20), "pir_kit"), rd(T0 + timedelta(hours=20, minutes=1), "front")]
    )
    assert run.until(T0 + timedelta(days=1, hours=12)) == []


def test_night_door_after_sleep() -> None:
    _det, run = rules_run(night_door_grace_min=10)
    t = night_in_bed(run, T0)
    w = t + timedelta(hours=3, minutes=30)  # 02:31: up, out of the front door
    run.feed(
        [
            rd(w, "bed", False),
            rd(w + timedelta(minutes=1), "pir_kit"),
            rd(w + timedelta(minutes=3), "front", True),
            rd(w + timedelta(minutes=3, seconds=5), "front", False),
        ]
    )
    assert run.until(w + timedelta(minutes=12)) == []
    got = run.until(w + timedelta(minutes=14))
    assert AlertType.NIGHT_DOOR in types(got)
    ev = next(a for a in got if a.type is AlertType.NIGHT_DOOR).evidence
    assert ev["door_opened_ts"].startswith("2026-03-03T02:34")


def test_night_door_when_a_sensor_fires_between_two_openings() -> None:
    """Out of bed at night, the door opens, the hall (kitchen) sensor fires, the door opens
    again and nothing moves inside: still a night exit. The activity inside the passage
    makes the home `away` for the inactivity detector, not an empty home for this rule."""
    _det, run = rules_run(night_door_grace_min=10)
    t = night_in_bed(run, T0)
    w = t + timedelta(hours=4)
    run.feed(
        [
            rd(w, "bed", False),
            rd(w + timedelta(minutes=2), "front", True),
            rd(w + timedelta(minutes=2, seconds=30), "pir_kit"),
            rd(w + timedelta(minutes=3), "front", True),
            rd(w + timedelta(minutes=3, seconds=5), "front", False),
        ]
    )
    got = run.until(w + timedelta(minutes=15))
    assert types(got) == [AlertType.NIGHT_DOOR]


def test_night_door_no_alarm_coming_home_or_back_inside_or_daytime() -> None:
    _det, run = rules_run(night_door_grace_min=10)
    # out in the evening, home at 01:00: coming home is not wandering
    run.feed(
        [
            rd(T0 + timedelta(hours=19), "pir_kit"),
            rd(T0 + timedelta(hours=19, minutes=1), "front"),
            rd(T0 + timedelta(hours=25), "front"),
            rd(T0 + timedelta(hours=25, minutes=1), "pir_liv"),
        ]
    )
    assert run.until(T0 + timedelta(hours=26)) == []
    # after sleep, door opened at 03:00 but back inside within the grace
    t = night_in_bed(run, T0 + timedelta(days=1))
    w = t + timedelta(hours=4)
    run.feed(
        [
            rd(w, "bed", False),
            rd(w + timedelta(minutes=1), "front"),
            rd(w + timedelta(minutes=4), "pir_kit"),
        ]
    )
    assert run.until(w + timedelta(minutes=30)) == []
    # after sleep, door at 09:00: daytime
    d = T0 + timedelta(days=3, hours=9)
    run.feed([rd(d - timedelta(minutes=5), "bed", False), rd(d, "front")])
    assert run.until(d + timedelta(minutes=30)) == []


# --------------------------------------------------------------------------- restarts


def _store(path: Path) -> Store:
    return Store(path, budget_bytes=64 * 1024 * 1024, reserve_bytes=1024 * 1024).open()


def _counts(det: InactivityDetector) -> dict[str, Any]:
    """Everything learned: counts per hour, per context key, and the tracker's state."""
    return {
        "hours": {s: det.profile.counts[s].tolist() for s in det.profile.counts},
        "contexts": {
            s: {k: v.tolist() for k, v in sorted(per.items())}
            for s, per in det.profile.contexts.items()
        },
        "tracker": det.tracker.to_json(),
    }


@pytest.mark.parametrize("cut", [57, 211, 380])
def test_restart_neither_loses_nor_doubles(tmp_path: Path, cut: int) -> None:
    readings = synthetic_days(8)
    cfg = make_cfg(inact={"learning_days": 7})
    ref = InactivityDetector(cfg, MemoryLearned())
    for r in readings:
        ref.feed(r)

    db = tmp_path / "anxin.db"
    store = _store(db)
    det = InactivityDetector(cfg, store)
    det.restore()
    for r in readings[:cut]:
        det.feed(r)
    store.close()  # power cut between two readings

    store = _store(db)
    det2 = InactivityDetector(cfg, store)
    det2.restore()
    # the service may hand the last few readings again after a restart: not learned twice
    for r in readings[max(0, min(cut, len(readings)) - 5) :]:
        det2.feed(r)
    store.close()
    assert _counts(det2) == _counts(ref)
    assert det2.profile.total(HOME) == ref.profile.total(HOME) > 0


def test_restart_catches_up_from_stored_readings(tmp_path: Path) -> None:
    """Readings the store kept but the detector never persisted are learned on restore."""
    readings = synthetic_days(3)
    cfg = make_cfg()
    ref = InactivityDetector(cfg, MemoryLearned())
    for r in readings:
        ref.feed(r)
    store = _store(tmp_path / "a.db")
    det = InactivityDetector(cfg, store)
    cut = 40
    for r in readings[:cut]:
        det.feed(r)
    det.persist()
    store.add_readings(readings[cut : cut + 30])  # stored by the service, then power cut
    store.close()
    store = _store(tmp_path / "a.db")
    det2 = InactivityDetector(cfg, store)
    det2.restore()
    for r in readings[cut + 30 :]:
        det2.feed(r)
    store.close()
    assert _counts(det2) == _counts(ref)


def test_rules_state_survives_restart(tmp_path: Path) -> None:
    cfg = make_cfg(rules={"not_up": False, "bed_exit_quiet_min": 10})
    store = _store(tmp_path / "r.db")
    det = RoutineRules(cfg, store)
    run = Run(det)
    t = night_in_bed(run, T0)
    out = t + timedelta(hours=3)
    run.feed([rd(out, "bed", False), rd(out + timedelta(minutes=2), "pir_kit")])
    run.until(out + timedelta(minutes=5))  # exit confirmed and persisted
    store.close()
    store = _store(tmp_path / "r.db")
    det2 = RoutineRules(cfg, store)
    det2.restore()
    got = Run(det2)
    got.t = out + timedelta(minutes=6)
    assert types(got.until(out + timedelta(minutes=31))) == [AlertType.BED_EXIT_NO_RETURN]
    store.close()


def test_getting_up_stretch_survives_restart(tmp_path: Path) -> None:
    """Out of the bedroom at 07:10, restart at 07:15: up is confirmed at 07:30 from 07:10,
    and learned once."""
    cfg = make_cfg(rules={"not_up": True, "not_up_by": "09:00", "night_door": False})
    store = _store(tmp_path / "u.db")
    det = RoutineRules(cfg, store)
    run = Run(det)
    night_in_bed(run, T0)
    d1 = T0 + timedelta(days=1)
    run.feed(up(d1 + timedelta(hours=7, minutes=10)))
    store.close()
    store = _store(tmp_path / "u.db")
    det2 = RoutineRules(cfg, store)
    det2.restore()
    assert det2.up_start == (d1 + timedelta(hours=7, minutes=10)).timestamp()
    again = Run(det2)
    again.t = d1 + timedelta(hours=7, minutes=15)
    again.feed([rd(d1 + timedelta(hours=7, minutes=10), "pir_kit")])  # handed again
    assert again.until(d1 + timedelta(hours=12)) == []
    assert det2.wake == [(d1.date().isoformat(), 7 * 60 + 10)]
    store.close()


def test_reset_forgets(tmp_path: Path) -> None:
    store = _store(tmp_path / "x.db")
    det = InactivityDetector(make_cfg(), store)
    for r in synthetic_days(2):
        det.feed(r)
    assert store.learned(INACT_KEY) is not None
    det.reset()
    assert store.learned(INACT_KEY) is None
    assert det.profile.total(HOME) == 0
    store.close()


def test_config_fields_have_help() -> None:
    for cls in (InactivityConfig, RulesConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"


def test_profile_room_and_context_scale_the_hour_limit() -> None:
    """Quiet after the kitchen is short, after the living room long; quiet after a lone
    sensor longer than while busy: limits follow, by the pair's own factor when the pair is
    well seen, else by the product of the room's and the context's."""
    cfg = InactivityConfig(learning_days=7, min_samples=30, min_limit_min=10, margin=1.0)
    prof = QuietProfile(cfg)
    kitchen_busy = context_keys("kitchen", "busy")
    living_lone = context_keys("living", "lone")
    assert kitchen_busy == ("room:kitchen", "ctx:busy", "both:kitchen/busy")
    for d in range(14):
        for k in range(10):  # busy in the kitchen, now and then a long sit in the living room
            assert prof.add(HOME, (d % 7) * 24 + 14, 20.0 + k, kitchen_busy)
        for k in range(3):
            prof.add(HOME, (d % 7) * 24 + 14, 80.0 + 10 * k, living_lone)
    prof.seen(T0)
    prof.seen(T0 + timedelta(days=14))
    plain = prof.limit(HOME, 14)
    kitchen = prof.limit(HOME, 14, kitchen_busy)
    living = prof.limit(HOME, 14, living_lone)
    assert plain.factor is None
    assert kitchen.minutes < plain.minutes < living.minutes
    assert kitchen.factor is not None
    assert living.factor is not None
    assert kitchen.factor < 1 < living.factor
    assert kitchen.hour_limit_min == pytest.approx(plain.minutes, abs=0.1)
    # the room and context seen together often enough: their joint ratio of 90th percentiles
    assert kitchen.context == ("both:kitchen/busy",)
    q_all = prof._quantile(prof.counts[HOME].sum(axis=0))
    q_kit = prof._quantile(prof.contexts[HOME]["room:kitchen"])
    q_lone = prof._quantile(prof.contexts[HOME]["ctx:lone"])
    assert q_all is not None
    assert q_kit is not None
    assert q_lone is not None
    assert kitchen.factor == pytest.approx(max(0.5, q_kit / q_all), abs=1e-3)
    # a pair never seen together (lone in the kitchen): the product of the two factors
    kitchen_lone = prof.limit(HOME, 14, context_keys("kitchen", "lone"))
    assert kitchen_lone.context == ("room:kitchen", "ctx:lone")
    assert kitchen_lone.factor == pytest.approx(
        min(max(q_kit / q_all * q_lone / q_all, 0.5), 2.0), abs=1e-3
    )
    assert kitchen.minutes >= 0.5 * plain.minutes - 1e-6
    assert living.minutes <= 2.0 * plain.minutes + 1e-6
    # a room never seen, or too rarely seen (fewer than min_samples): the hour's limit
    assert prof.limit(HOME, 14, ("room:attic",)).minutes == plain.minutes
    hall = QuietProfile(cfg)
    hall.load_json(prof.to_json())
    for _ in range(5):
        hall.add(HOME, 14, 200.0, ("room:hall",))
    assert hall.limit(HOME, 14, ("room:hall",)).factor is None
    # tighter bounds are honoured
    narrow = QuietProfile(
        InactivityConfig(
            learning_days=7, min_samples=30, min_limit_min=10, margin=1.0, context_factor_min=0.9
        )
    )
    narrow.load_json(prof.to_json())
    assert narrow.limit(HOME, 14, kitchen_busy).factor == 0.9


def test_profile_reads_the_older_layout() -> None:
    """A store written before contexts (version 1, rooms by bare name) loads as room keys."""
    cfg = InactivityConfig()
    old = {
        "v": 1,
        "bins": len(BIN_EDGES_MIN) - 1,
        "counts": {HOME: [[14, 10, 3]], ASLEEP: []},
        "rooms": {HOME: {"kitchen": [[10, 3]]}, ASLEEP: {}},
        "first_ts": 0.0,
        "last_ts": 86400.0,
    }
    prof = QuietProfile(cfg)
    prof.load_json(old)
    assert prof.total(HOME) == 3
    assert int(prof.contexts[HOME]["room:kitchen"].sum()) == 3
    again = QuietProfile(cfg)
    again.load_json(prof.to_json())
    assert again.to_json() == prof.to_json()


def test_not_up_skipped_on_a_day_the_gateway_did_not_watch_the_morning() -> None:
    # Installed (or restarted) at 21:00, long after the not-up time; the first thing it hears
    # is the bed pad. It never saw the morning, so it must not claim they did not get up.
    _det, run = rules_run(not_up=True, not_up_by="09:00", night_door=False)
    start = T0 + timedelta(hours=21)
    run.feed([rd(start, "bed", False)])
    assert run.until(start + timedelta(minutes=30)) == []
    run.feed([rd(start + timedelta(minutes=40), "bed", True)])
    assert run.until(start + timedelta(hours=2)) == []
    # the next morning it has watched: a missed getting-up is reported as usual
    got = run.until(T0 + timedelta(days=1, hours=9, minutes=1))
    assert types(got) == [AlertType.NOT_UP]


# --------------------------------------------------------------------------- stirs, day cap


def test_a_lone_stir_while_asleep_is_not_getting_up() -> None:
    """A kitchen PIR that fires at sunrise while the pad says asleep (kasteren2010 house B
    does this most mornings): still asleep, no 90-minute inactivity alarm, no getting up
    learned. A second sensor soon after, or the same one going on, is someone up."""
    cfg = make_cfg(inact={"min_limit_min": 30}, rules={"not_up_by": "11:00", "night_door": False})
    inact = InactivityDetector(cfg, MemoryLearned())
    rules = RoutineRules(cfg, MemoryLearned())
    runs = [Run(inact), Run(rules)]

    def feed(rs: list[Reading]) -> None:
        for run in runs:
            run.feed(rs)

    def until(t: datetime) -> list[AlertType]:
        return [a for run in runs for a in types(run.until(t))]

    night = T0 + timedelta(hours=23)
    feed([rd(night, "pir_bed"), rd(night + timedelta(minutes=1), "bed", True)])
    blip = T0 + timedelta(days=1, hours=6, minutes=20)
    feed([rd(blip, "pir_kit"), rd(blip + timedelta(seconds=30), "pir_kit")])
    assert inact.tracker.last is not None
    assert inact.tracker.last.state == ASLEEP
    assert inact.tracker.stir is not None
    assert until(blip + timedelta(hours=3)) == []  # the day limit would have fired at 09:20
    assert rules.up_start is None
    assert rules.wake == []
    # up at 10:00: the pad, then the kitchen; home again, and getting up is learned
    feed(up(T0 + timedelta(days=1, hours=10)))
    assert inact.tracker.last.state == HOME
    assert inact.tracker.stir is None
    until(T0 + timedelta(days=1, hours=10, minutes=30))
    assert rules.wake == [((T0 + timedelta(days=1)).date().isoformat(), 10 * 60)]


def test_a_stir_ends_with_a_second_sensor_or_when_it_goes_on() -> None:
    det = InactivityDetector(make_cfg(), MemoryLearned())
    t = T0 + timedelta(hours=5)
    det.feed(rd(t, "bed", True))
    det.feed(rd(t + timedelta(minutes=40), "pir_kit"))
    assert det.tracker.last is not None
    assert det.tracker.last.state == ASLEEP
    det.feed(rd(t + timedelta(minutes=41), "fridge"))  # another sensor: someone is up
    assert det.tracker.last.state == HOME
    # asleep again; the same sensor still going 3 minutes after its first reading: up
    t2 = t + timedelta(hours=1)
    det.feed(rd(t2, "bed", True))
    det.feed(rd(t2 + timedelta(minutes=40), "pir_liv"))
    assert det.tracker.last.state == ASLEEP
    det.feed(rd(t2 + timedelta(minutes=41), "pir_liv"))
    assert det.tracker.last.state == ASLEEP
    det.feed(rd(t2 + timedelta(minutes=43), "pir_liv"))
    assert det.tracker.last.state == HOME
    # not a stir when anything else moved within 15 minutes (the pad as they got up)
    t3 = t2 + timedelta(hours=1)
    det.feed(rd(t3, "bed", True))
    det.feed(rd(t3 + timedelta(minutes=40), "bed", False))
    det.feed(rd(t3 + timedelta(minutes=44), "pir_kit"))
    assert det.tracker.last.state == HOME


def test_a_stir_survives_a_restart(tmp_path: Path) -> None:
    cfg = make_cfg()
    store = _store(tmp_path / "s.db")
    det = InactivityDetector(cfg, store)
    t = T0 + timedelta(hours=5)
    det.feed(rd(t, "bed", True))
    det.feed(rd(t + timedelta(minutes=40), "pir_kit"))
    det.persist()
    store.close()
    store = _store(tmp_path / "s.db")
    det2 = InactivityDetector(cfg, store)
    det2.restore()
    assert det2.tracker.stir is not None
    assert det2.tracker.stir.sensor_id == "pir_kit"
    det2.feed(rd(t + timedelta(minutes=41), "pir_kit"))  # the same stir, one minute on
    assert det2.tracker.last is not None
    assert det2.tracker.last.state == ASLEEP
    store.close()


def test_day_busy_cap_after_moving_about_or_a_door_not_after_a_lone_sensor() -> None:
    """In the day (07:00-20:00), quiet after someone moved about alarms after
    ``day_busy_max_min`` at most, learned or not; after a lone sensor (settled in a chair, a
    nap), in the evening, or asleep, the limit stands."""

    def first_alarm(start: datetime, readings: list[Reading]) -> Alert:
        det = InactivityDetector(make_cfg(inact={"day_busy_max_min": 105}), MemoryLearned())
        run = Run(det)
        run.feed(readings)
        got = run.until(start + timedelta(hours=13))
        assert types(got) == [AlertType.INACTIVITY]
        return got[0]

    t = T0 + timedelta(hours=10)
    busy = first_alarm(t, [rd(t, "pir_kit"), rd(t + timedelta(minutes=1), "fridge")])
    assert busy.evidence["context"] == "busy"
    assert busy.evidence["limit_min"] == 105.0
    assert busy.evidence["limit_source"] == "day_busy_max"
    assert busy.ts - (t + timedelta(minutes=1)) <= timedelta(minutes=106)
    came_in = [rd(t, "front"), rd(t + timedelta(seconds=5), "front", False)]
    door = first_alarm(t, [*came_in, rd(t + timedelta(minutes=5), "pir_liv")])
    assert door.evidence["context"] == "door"
    assert door.evidence["limit_min"] == 105.0
    lone = first_alarm(t, [rd(t, "pir_liv")])
    assert lone.evidence["context"] == "lone"
    assert lone.evidence["limit_min"] == 180.0  # the learning day limit
    evening = T0 + timedelta(hours=20, minutes=30)
    late = first_alarm(
        evening, [rd(evening, "pir_kit"), rd(evening + timedelta(minutes=1), "fridge")]
    )
    assert late.evidence["limit_min"] == 180.0
    nap = T0 + timedelta(hours=14)
    asleep = first_alarm(nap, [rd(nap, "pir_bed"), rd(nap + timedelta(minutes=1), "bed", True)])
    assert asleep.evidence["state"] == ASLEEP
    assert asleep.evidence["limit_min"] == 720.0
    # off: the learning limit again
    det = InactivityDetector(make_cfg(inact={"day_busy_max_min": 0}), MemoryLearned())
    run = Run(det)
    run.feed([rd(t, "pir_kit"), rd(t + timedelta(minutes=1), "fridge")])
    assert run.until(t + timedelta(minutes=170)) == []
