"""Frames -> readings (pure): change-or-interval gating, 433 MHz pairing, repeats, debounce."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from drivers.serial import bedpad, ld2410, mr60
from drivers.serial.interpret import (
    BedPadInterpreter,
    LD2410Interpreter,
    MR60Interpreter,
    RadioInterpreter,
    interpreter_for,
)
from drivers.serial.rf433 import RadioEvent, parse_address
from gateway.clock import Stamp
from gateway.model import ReadingKind, Sensor, SensorKind, Transport

T0 = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)


def at(s: float) -> Stamp:
    return Stamp(T0 + timedelta(seconds=s), 1000.0 + s, "boot", True)


def port(kind: SensorKind = SensorKind.RADAR_PRESENCE, protocol: str = "ld2410") -> Sensor:
    return Sensor("dev", kind, Transport.SERIAL, "/dev/x", "bedroom",
                  options={"protocol": protocol})


def rf(sid: str, address: str, kind: SensorKind) -> Sensor:
    return Sensor(sid, kind, Transport.RF433, address, "living")


def report(state: ld2410.TargetState, still_cm: int = 100) -> ld2410.LD2410Report:
    return ld2410.LD2410Report(False, state, 0, 0, still_cm, 50, still_cm)


def kinds(readings: list) -> list[tuple[ReadingKind, object]]:  # type: ignore[type-arg]
    return [(r.kind, r.value) for r in readings]


def test_ld2410_emits_on_change_and_every_interval() -> None:
    it = LD2410Interpreter(port(), report_interval_s=60)
    assert kinds(it.frame(report(ld2410.TargetState.STILL), at(0))) == [
        (ReadingKind.OCCUPANCY, True), (ReadingKind.DISTANCE, 100)
    ]
    assert it.frame(report(ld2410.TargetState.STILL, 120), at(1)) == []  # within 30 cm
    assert kinds(it.frame(report(ld2410.TargetState.STILL, 200), at(2))) == [
        (ReadingKind.DISTANCE, 200)
    ]
    assert kinds(it.frame(report(ld2410.TargetState.STILL, 200), at(61))) == [
        (ReadingKind.OCCUPANCY, True)  # heartbeat for supervision; distance last sent at 2 s
    ]
    assert kinds(it.frame(report(ld2410.TargetState.NONE), at(62))) == [
        (ReadingKind.OCCUPANCY, False)
    ]
    assert it.frame(ld2410.LD2410Ack(0xFF, 0, b""), at(63)) == []


def test_mr60_fall_changes_are_never_held_back() -> None:
    it = MR60Interpreter(port(SensorKind.RADAR_FALL, "mr60fda2"))
    assert kinds(it.frame(mr60.FallStatus(0, True), at(0))) == [(ReadingKind.FALL, True)]
    assert it.frame(mr60.FallStatus(0, True), at(0.1)) == []
    assert kinds(it.frame(mr60.FallStatus(0, False), at(0.2))) == [(ReadingKind.FALL, False)]
    assert kinds(it.frame(mr60.FallStatus(0, True), at(0.3))) == [(ReadingKind.FALL, True)]
    assert it.frame(mr60.HeartRate(0, 0.0), at(1)) == []  # 0 = no measurement
    assert it.frame(mr60.TargetDistance(0, False, 50.0), at(1)) == []
    assert it.frame(mr60.MR60Frame(0, 0x0A04, b""), at(1)) == []


def test_bedpad_interpreter_debounces_and_reports_flags() -> None:
    it = BedPadInterpreter(port(SensorKind.BED, "bedpad"), enter_s=5, exit_s=10)
    st = bedpad.BedStatus
    out = it.frame(st(1, bedpad.BedState.IN, 900, False, False), at(0))
    assert kinds(out) == [(ReadingKind.IN_BED, True), (ReadingKind.BATTERY_LOW, False),
                          (ReadingKind.TAMPER, False)]
    assert it.frame(st(2, bedpad.BedState.OUT, 5, False, False), at(30)) == []
    assert it.tick(at(35)) == []
    (r,) = it.tick(at(40))
    assert (r.kind, r.value, r.extra["debounce_s"], r.extra["pressure"]) == (
        ReadingKind.IN_BED, False, 10, 5
    )
    assert kinds(it.frame(st(3, bedpad.BedState.OUT, 5, True, False), at(41))) == [
        (ReadingKind.BATTERY_LOW, True)
    ]
    assert it.frame(bedpad.BedFault(4, bedpad.FaultCode.SHORT_CIRCUIT), at(42)) == []
    assert kinds(it.frame(st(5, bedpad.BedState.OUT, 5, True, False), at(101))) == [
        (ReadingKind.IN_BED, False), (ReadingKind.BATTERY_LOW, True), (ReadingKind.TAMPER, False)
    ]  # the once-a-minute heartbeat supervision counts on


def ev(protocol: str, device_id: str, **kw: object) -> RadioEvent:
    return RadioEvent("rflink", protocol, device_id, **kw)  # type: ignore[arg-type]


def test_radio_kind_decides_what_a_code_means() -> None:
    it = RadioInterpreter([
        rf("cord", "rflink:ev1527:0a", SensorKind.PULL_CORD),
        rf("door", "rflink:ev1527:0b", SensorKind.DOOR),
        rf("pir", "rflink:ev1527:0c", SensorKind.MOTION),
        rf("gas", "rflink:ev1527:0d", SensorKind.GAS),
        rf("leak", "rflink:ev1527:0e:02", SensorKind.WATER_LEAK),
    ])
    press = [(ReadingKind.BUTTON, "press")]
    assert kinds(it.frame(ev("ev1527", "0a", active=True), at(0))) == press
    assert it.frame(ev("ev1527", "0a", active=False), at(0.1)) == []  # a cord's "off" is no call
    closed = [(ReadingKind.CONTACT, False)]
    assert kinds(it.frame(ev("ev1527", "0b", active=False), at(0))) == closed
    assert kinds(it.frame(ev("ev1527", "0c", active=True), at(0))) == [(ReadingKind.MOTION, True)]
    assert kinds(it.frame(ev("ev1527", "0d", active=True), at(0))) == [(ReadingKind.GAS, True)]
    # the switch-specific address matches only that switch
    assert kinds(it.frame(ev("ev1527", "0e", switch="02", active=True), at(0))) == [
        (ReadingKind.WATER_LEAK, True)
    ]
    assert it.frame(ev("ev1527", "0e", switch="03", active=True), at(0)) == []


def test_radio_repeats_are_one_reading_and_frame_flags_win() -> None:
    it = RadioInterpreter([rf("btn", "rflink:ev1527:0a", SensorKind.BUTTON),
                           rf("smk", "rflink:fa20rf:97", SensorKind.OTHER)], repeat_window_s=2.0)
    press = ev("ev1527", "0a", active=True)
    assert len(it.frame(press, at(0))) == 1
    assert it.frame(press, at(0.5)) == []
    assert it.frame(press, at(1.9)) == []  # each repeat extends the burst
    assert len(it.frame(press, at(4.0))) == 1  # a second press is a second call
    smoke = ev("fa20rf", "97", active=True, alarm="smoke", battery_low=True, tamper=False)
    assert kinds(it.frame(smoke, at(0))) == [
        (ReadingKind.SMOKE, True), (ReadingKind.BATTERY_LOW, True), (ReadingKind.TAMPER, False)
    ]
    panic = ev("fa20rf", "97", active=True, alarm="panic")
    assert kinds(it.frame(panic, at(10))) == [(ReadingKind.BUTTON, "press")]


def test_unpaired_devices_are_listed_not_read_and_the_list_is_bounded() -> None:
    it = RadioInterpreter([])
    it.max_unpaired = 3
    for i in range(5):
        assert it.frame(ev("ev1527", f"{i:02x}", active=True), at(i)) == []
    assert it.frame(ev("ev1527", "04", active=True), at(9)) == []
    assert list(it.unpaired) == ["rflink:ev1527:02", "rflink:ev1527:03", "rflink:ev1527:04"]
    assert it.unpaired["rflink:ev1527:04"].count == 2


def test_addresses_parse_and_interpreters_are_chosen_by_protocol() -> None:
    assert parse_address("RFLink:EV1527:0A1B2C") == ("rflink", "ev1527", "0a1b2c", None)
    assert parse_address("rtl433:honeywell-security:39809:8") == (
        "rtl433", "honeywell-security", "39809", "8"
    )
    assert parse_address("/dev/ttyUSB0") is None
    assert parse_address("rflink::01") is None
    assert isinstance(interpreter_for("rtl433", port()), RadioInterpreter)
    assert isinstance(interpreter_for("mr60bha2", port()), MR60Interpreter)
