"""SensorEventDetector and SupervisionDetector (transport-agnostic), with a real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.clock import Stamp
from gateway.detect.sensors import SensorEventDetector
from gateway.detect.supervision import SupervisionDetector
from gateway.model import (
    AlertState,
    AlertType,
    Reading,
    ReadingKind,
    Sensor,
    SensorKind,
    Severity,
    Transport,
)
from gateway.store import Store

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
BTN = Sensor("btn1", SensorKind.BUTTON, Transport.BLE, "B4:35:22:F5:3D:A4", "bedroom", 3600.0)
SMOKE = Sensor("smoke1", SensorKind.SMOKE, Transport.SERIAL, "/dev/ttyUSB0", "kitchen", 600.0)


def stamp(s: float) -> Stamp:
    return Stamp(T0 + timedelta(seconds=s), 1000.0 + s, "boot-a", True)


def reading(
    sensor: str, kind: ReadingKind, value: object, s: float = 0.0, **extra: object
) -> Reading:
    return Reading.at(stamp(s), sensor, kind, value, extra=extra or None)


def test_button_gestures_raise_emergency_every_press() -> None:
    det = SensorEventDetector([BTN])
    for i, gesture in enumerate(["press", "double_press", "triple_press", "long_press"]):
        (alert,) = det.feed(reading("btn1", ReadingKind.BUTTON, gesture, i, button="button"))
        assert alert.type is AlertType.EMERGENCY_BUTTON
        assert alert.severity is Severity.CRITICAL
        assert alert.evidence["gesture"] == gesture
        assert alert.evidence["button"] == "button"
        assert (alert.sensor_id, alert.room, alert.sensor_kind) == (
            "btn1",
            "bedroom",
            SensorKind.BUTTON,
        )
        assert alert.ts == T0 + timedelta(seconds=i)
    assert det.feed(reading("btn1", ReadingKind.BUTTON, "hold_release")) == []


def test_hazards_alert_once_per_episode(store: Store) -> None:
    det = SensorEventDetector([SMOKE], store)
    for kind, type_ in [
        (ReadingKind.SMOKE, AlertType.SMOKE),
        (ReadingKind.GAS, AlertType.GAS),
        (ReadingKind.WATER_LEAK, AlertType.WATER_LEAK),
        (ReadingKind.TAMPER, AlertType.TAMPER),
    ]:
        (a,) = det.feed(reading("smoke1", kind, True))
        assert a.type is type_
        assert det.feed(reading("smoke1", kind, True, 5)) == []
        assert det.feed(reading("smoke1", kind, False, 6)) == []
        assert [x.type for x in det.feed(reading("smoke1", kind, True, 7))] == [type_]
    assert det.feed(reading("smoke1", ReadingKind.SMOKE, True, 8)) == []
    # A restart keeps the open episode: no second smoke alert for the same fire.
    det2 = SensorEventDetector([SMOKE], store)
    det2.restore()
    assert det2.feed(reading("smoke1", ReadingKind.SMOKE, True, 9)) == []


def test_low_battery_once_until_rearmed() -> None:
    det = SensorEventDetector([BTN], low_battery_pct=20)
    assert det.feed(reading("btn1", ReadingKind.BATTERY, 50)) == []
    (a,) = det.feed(reading("btn1", ReadingKind.BATTERY, 18))
    assert (a.type, a.severity, a.evidence["battery_pct"]) == (
        AlertType.LOW_BATTERY,
        Severity.INFO,
        18.0,
    )
    for level in (17, 19, 22, 18):  # jitter around the threshold: still one alert
        assert det.feed(reading("btn1", ReadingKind.BATTERY, level)) == []
    assert det.feed(reading("btn1", ReadingKind.BATTERY, 100)) == []  # new battery re-arms
    assert len(det.feed(reading("btn1", ReadingKind.BATTERY_LOW, True))) == 1
    assert det.feed(reading("btn1", ReadingKind.BATTERY_LOW, True)) == []


def test_unknown_sensor_still_names_itself() -> None:
    (a,) = SensorEventDetector([]).feed(reading("x9", ReadingKind.BUTTON, "press"))
    assert a.sensor_id == "x9"
    assert a.room is None


def test_supervision_offline_once_and_resolved(store: Store) -> None:
    det = SupervisionDetector([BTN, SMOKE], store)
    det.restore()
    assert det.tick(stamp(0)) == []
    det.feed(reading("smoke1", ReadingKind.RSSI, -70, 100, heartbeat=True))
    assert det.tick(stamp(601)) == []  # smoke1 heard at 100: silent 501 s < 600 s
    (a,) = det.tick(stamp(701))
    assert (a.type, a.sensor_id, a.severity) == (
        AlertType.SENSOR_OFFLINE,
        "smoke1",
        Severity.WARNING,
    )
    assert a.evidence["silent_s"] == 601.0
    assert a.evidence["expected_interval_s"] == 600.0
    store.commit_alert(a)
    assert det.tick(stamp(800)) == []  # once, not every tick
    # A restart does not raise it again.
    det2 = SupervisionDetector([BTN, SMOKE], store)
    det2.restore()
    assert det2.tick(stamp(900)) == []
    assert det2.tick(stamp(2000)) == []
    # Any reading (here a heartbeat) brings it back and resolves the alert in the store.
    det2.feed(reading("smoke1", ReadingKind.RSSI, -60, 2001, heartbeat=True))
    stored = store.alert(a.id)
    assert stored is not None
    assert stored.state is AlertState.RESOLVED
    assert det2.tick(stamp(2100)) == []
    # btn1 never spoke: offline one interval after this start-up (first tick at 900 s);
    # smoke1 is silent again since 2001 s.
    assert {x.sensor_id for x in det2.tick(stamp(4501))} == {"btn1", "smoke1"}


def test_sensors_without_interval_are_not_supervised() -> None:
    quiet = Sensor("q", SensorKind.OTHER, Transport.BLE, "AA:AA:AA:AA:AA:AA", "hall")
    det = SupervisionDetector([quiet])
    det.tick(stamp(0))
    assert det.tick(stamp(10**6)) == []


def test_supervision_link_down_is_not_a_sign_of_life() -> None:
    det = SupervisionDetector([SMOKE])
    assert det.tick(stamp(0)) == []
    det.feed(reading("smoke1", ReadingKind.RSSI, -70, 100, heartbeat=True))
    det.feed(reading("smoke1", ReadingKind.LINK, "down", 650))  # the receiver was unplugged
    (a,) = det.tick(stamp(701))  # offline one interval after the last real reading
    assert (a.type, a.sensor_id) == (AlertType.SENSOR_OFFLINE, "smoke1")


def test_open_episodes_survive_a_restart_and_rearm(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gateway.detect.base import OpenEpisodes

    path = tmp_path / "e.db"
    with Store(path) as s:
        eps = OpenEpisodes(s, "detect.test")
        assert eps.open("smoke-1/smoke")
        assert not eps.open("smoke-1/smoke")  # still on: no second alert
    with Store(path) as s:
        again = OpenEpisodes(s, "detect.test")
        again.restore()
        assert "smoke-1/smoke" in again
        assert again.close("smoke-1/smoke")
        assert not again.close("smoke-1/smoke")
    with Store(path) as s:
        third = OpenEpisodes(s, "detect.test")
        third.restore()
        assert third.open("smoke-1/smoke")  # re-armed: the next episode alerts
