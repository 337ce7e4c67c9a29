"""RadarFallDetector: fall readings -> one fall_radar alert per fall, kept across restarts."""

from __future__ import annotations

from gateway.clock import Clock
from gateway.detect.radar import RadarFallDetector
from gateway.model import AlertType, Reading, ReadingKind, Sensor, SensorKind, Severity, Transport
from gateway.store import Store

RADAR = Sensor("radar-bath", SensorKind.RADAR_FALL, Transport.SERIAL, "loop://radar", "bathroom",
               60.0, model="MR60FDA2", options={"protocol": "mr60fda2"})
CLOCK = Clock(assume_synced=True)


def r(kind: ReadingKind, value: object, sensor: str = "radar-bath", **extra: object) -> Reading:
    unit = "cm" if kind is ReadingKind.DISTANCE else None
    return Reading.at(CLOCK.now(), sensor, kind, value, unit=unit, extra=extra or None)


def test_fall_raises_one_critical_alert_with_evidence() -> None:
    d = RadarFallDetector([RADAR])
    assert d.feed(r(ReadingKind.OCCUPANCY, True)) == []
    assert d.feed(r(ReadingKind.DISTANCE, 140.5)) == []
    (alert,) = d.feed(r(ReadingKind.FALL, True))
    assert alert.type is AlertType.FALL_RADAR
    assert alert.severity is Severity.CRITICAL
    assert (alert.sensor_id, alert.room, alert.sensor_kind) == (
        "radar-bath", "bathroom", SensorKind.RADAR_FALL
    )
    ev = dict(alert.evidence)
    assert ev.pop("reading_ts")
    assert ev == {"reading": "fall", "value": True, "distance_cm": 140.5, "occupied": True,
                  "model": "MR60FDA2"}


def test_repeated_fall_reports_are_one_episode_rearmed_by_clear() -> None:
    d = RadarFallDetector([RADAR])
    assert len(d.feed(r(ReadingKind.FALL, True))) == 1
    assert d.feed(r(ReadingKind.FALL, True)) == []
    assert d.feed(r(ReadingKind.FALL, False)) == []
    assert len(d.feed(r(ReadingKind.FALL, True))) == 1


def test_link_up_rearms_after_radar_restart() -> None:
    d = RadarFallDetector([RADAR])
    assert len(d.feed(r(ReadingKind.FALL, True))) == 1
    assert d.feed(r(ReadingKind.LINK, "down")) == []
    assert d.feed(r(ReadingKind.LINK, "up")) == []
    assert len(d.feed(r(ReadingKind.FALL, True))) == 1


def test_extra_from_the_reading_is_kept_and_unknown_sensor_still_alarms() -> None:
    d = RadarFallDetector([])
    (alert,) = d.feed(r(ReadingKind.FALL, True, sensor="radar-x", distance_cm=90))
    assert alert.sensor_id == "radar-x"
    assert alert.evidence["distance_cm"] == 90


def test_other_readings_and_other_sensors_do_not_alarm() -> None:
    d = RadarFallDetector([RADAR])
    for kind, value in [(ReadingKind.BUTTON, "press"), (ReadingKind.SMOKE, True),
                        (ReadingKind.FALL, False), (ReadingKind.HEART_RATE, 70.0)]:
        assert d.feed(r(kind, value)) == []
    assert d.tick(CLOCK.now()) == []


def test_open_episode_survives_restart(store: Store) -> None:
    d = RadarFallDetector([RADAR], store)
    d.restore()
    assert len(d.feed(r(ReadingKind.FALL, True))) == 1
    again = RadarFallDetector([RADAR], store)
    again.restore()
    assert again.feed(r(ReadingKind.FALL, True)) == []
    assert again.feed(r(ReadingKind.FALL, False)) == []
    third = RadarFallDetector([RADAR], store)
    third.restore()
    assert len(third.feed(r(ReadingKind.FALL, True))) == 1
