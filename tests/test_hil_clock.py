"""The HIL rig clock: a scaled wall and monotonic time for the gateway process, taken from
ANXIN_RIG_CLOCK_*, followed by every time-based part (stamps, ticks, supervision, the
store's own stamps, escalation), refused under systemd and by `anxin config check`; and
scenarios written in scenario time ("02:10"), judged against budgets in scenario time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway import clock as clock_mod
from gateway.clock import (
    RIG_CLOCK_ANCHOR,
    RIG_CLOCK_SPEED,
    RIG_CLOCK_START,
    Clock,
    ScaledClock,
    Stamp,
    rig_clock_from_env,
    utc_now,
)
from gateway.errors import ConfigError
from gateway.hil import Result, _judge, _write_session, load_scenario, rig_clock_env
from gateway.model import Alert, AlertState, AlertType, Reading, ReadingKind, Sensor, SensorKind, Transport
from tests.conftest import ROOT, run_cli

START = datetime.fromisoformat("2026-03-02T02:00:00+08:00")


class FakeTime:
    """Stands in for the ``time`` module inside gateway.clock: real time moves only when told."""

    def __init__(self, epoch: float = 1_800_000_000.0, mono: float = 5_000.0) -> None:
        self.epoch, self.mono = epoch, mono

    def time(self) -> float:
        return self.epoch

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.epoch += seconds
        self.mono += seconds


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(clock_mod, "time", fake)
    return fake


@pytest.fixture
def installed() -> Iterator[None]:
    yield
    clock_mod.install(None)


def test_wall_and_monotonic_run_speed_times_faster_from_the_anchor(fake_time: FakeTime) -> None:
    clock = ScaledClock(START, 120, anchor_epoch_s=fake_time.epoch + 2)  # the rig starts 2 s later
    before = clock.now()
    assert before.wall == START.astimezone(UTC) - timedelta(seconds=240)
    fake_time.advance(2)
    at_anchor = clock.now()
    assert at_anchor.wall == START
    assert at_anchor.monotonic_s == pytest.approx(fake_time.mono)  # equal to the kernel's at the anchor
    fake_time.advance(30)  # 30 real seconds: an hour of scenario time
    later = clock.now()
    assert later.wall - at_anchor.wall == timedelta(hours=1)
    assert later.monotonic_s - at_anchor.monotonic_s == pytest.approx(3600)
    assert clock.elapsed_s() == pytest.approx(3600)
    assert clock.real_s(3600) == pytest.approx(30)
    assert Clock().real_s(3600) == 3600


def test_rig_stamps_are_marked_and_never_mixed_with_the_kernels(fake_time: FakeTime) -> None:
    a = ScaledClock(START, 600, anchor_epoch_s=fake_time.epoch)
    b = ScaledClock(START, 600, anchor_epoch_s=fake_time.epoch)  # the gateway restarted mid-scenario
    other = ScaledClock(START, 300, anchor_epoch_s=fake_time.epoch)
    assert a.boot_id.startswith("rig-")
    assert a.boot_id == b.boot_id != other.boot_id
    assert a.boot_id != clock_mod.boot_id()
    assert a.now().synced is False


@pytest.mark.parametrize("speed", [0, -1, 3601])
def test_speed_out_of_range_is_refused(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        ScaledClock(START, speed, 0.0)


def test_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="UTC offset"):
        ScaledClock(datetime(2026, 3, 2, 2, 0), 10, 0.0)


def test_environment_gives_the_rig_clock(fake_time: FakeTime) -> None:
    assert rig_clock_from_env({}) is None
    assert rig_clock_from_env({RIG_CLOCK_START: ""}) is None
    clock = rig_clock_from_env({RIG_CLOCK_START: START.isoformat(), RIG_CLOCK_SPEED: "120",
                                RIG_CLOCK_ANCHOR: str(fake_time.epoch)})
    assert isinstance(clock, ScaledClock)
    assert (clock.speed, clock.now().wall) == (120, START)
    default_anchor = rig_clock_from_env({RIG_CLOCK_START: START.isoformat()})
    assert default_anchor is not None
    assert (default_anchor.speed, default_anchor.anchor_epoch_s) == (1, fake_time.epoch)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({RIG_CLOCK_START: START.isoformat(), "NOTIFY_SOCKET": "/run/systemd/notify"}, "refusing them under systemd"),
        ({RIG_CLOCK_SPEED: "120", "NOTIFY_SOCKET": "/run/systemd/notify"}, "refusing them under systemd"),
        ({RIG_CLOCK_START: "02:00"}, "ISO 8601"),
        ({RIG_CLOCK_START: "2026-03-02T02:00:00"}, "no UTC offset"),
        ({RIG_CLOCK_START: START.isoformat(), RIG_CLOCK_SPEED: "fast"}, "are numbers"),
        ({RIG_CLOCK_START: START.isoformat(), RIG_CLOCK_SPEED: "0"}, "speed"),
        ({RIG_CLOCK_SPEED: "120"}, "ISO 8601"),
    ],
)
def test_bad_or_production_rig_clock_is_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rig_clock_from_env(env)


def test_utc_now_follows_the_installed_clock(fake_time: FakeTime, installed: None) -> None:
    clock_mod.install(ScaledClock(START, 60, anchor_epoch_s=fake_time.epoch))
    fake_time.advance(1)
    assert utc_now() == START + timedelta(minutes=1)
    clock_mod.install(None)
    assert abs(utc_now() - datetime.now(UTC)) < timedelta(minutes=1)


def test_store_and_escalation_follow_the_installed_clock(fake_time: FakeTime, installed: None, store: object) -> None:
    from gateway.store import Store
    from gateway.uplink.escalate import _age_s

    assert isinstance(store, Store)
    clock = ScaledClock(START, 600, anchor_epoch_s=fake_time.epoch)
    clock_mod.install(clock)
    alert = Alert.raise_(AlertType.INACTIVITY, clock.now())
    store.commit_alert(alert)
    fake_time.advance(1)  # ten minutes of scenario time
    assert _age_s(alert) == pytest.approx(600)
    (row,) = store.open_alerts()
    assert row.ts == START
    store.set_alert_state(alert.id, AlertState.ACKNOWLEDGED)
    *_, (state, ts, _note) = store.alert_history(alert.id)
    assert (state, ts) == (AlertState.ACKNOWLEDGED, START + timedelta(minutes=10))  # the store's own stamp


class TickRecorder:
    name = "recorder"

    def __init__(self) -> None:
        self.ticks: list[Stamp] = []

    def restore(self) -> None:
        pass

    def feed(self, reading: Reading) -> Sequence[Alert]:
        return ()

    def tick(self, now: Stamp) -> Sequence[Alert]:
        self.ticks.append(now)
        return ()


async def test_the_ticker_follows_the_rig_clock(tmp_path: Path) -> None:
    from gateway import config
    from gateway.service import MIN_TICK_REAL_S, Service
    from gateway.systemd import SdNotifier

    cfg = config.loads(f'[gateway]\nid = "g"\nhome = "h"\n[storage]\npath = "{tmp_path / "g.db"}"\n')
    clock = ScaledClock(START, 600, anchor_epoch_s=datetime.now(UTC).timestamp())
    rec = TickRecorder()
    svc = Service(cfg, detectors=[rec], clock=clock, notifier=SdNotifier(address=""), tick_s=1.0)
    task = asyncio.create_task(svc.run())
    while len(rec.ticks) < 3:
        await asyncio.sleep(0.05)
    svc.request_stop()
    await task
    assert rec.ticks[0].wall >= START
    gaps = [(b.wall - a.wall).total_seconds() for a, b in zip(rec.ticks, rec.ticks[1:], strict=False)]
    # one tick per MIN_TICK_REAL_S real seconds at the least: 60 s apart in scenario time
    assert all(g >= 600 * MIN_TICK_REAL_S * 0.9 for g in gaps), gaps


def test_supervision_silence_is_measured_on_the_rig_clock(fake_time: FakeTime) -> None:
    from gateway.detect.supervision import SupervisionDetector

    sensor = Sensor("motion-hall", SensorKind.MOTION, Transport.BLE, "A4:C1:38:DE:01:04", "entrance",
                    expected_interval_s=3600)
    det = SupervisionDetector([sensor])
    clock = ScaledClock(START, 600, anchor_epoch_s=fake_time.epoch)
    det.feed(Reading.at(clock.now(), sensor.id, ReadingKind.MOTION, True))
    assert det.tick(clock.now()) == []
    fake_time.advance(5)  # 50 minutes
    assert det.tick(clock.now()) == []
    fake_time.advance(1.5)  # 65 minutes: silent past the hour
    (alert,) = det.tick(clock.now())
    assert alert.type is AlertType.SENSOR_OFFLINE
    assert alert.evidence["silent_s"] == pytest.approx(3900)


def test_config_check_fails_loudly_with_a_rig_clock_set(tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text(f'[gateway]\nid = "g"\nhome = "h"\n[storage]\npath = "{tmp_path / "g.db"}"\n')
    ok = run_cli("config", "check", "--config", str(cfg))
    assert ok.returncode == 0, ok.stderr
    out = run_cli("config", "check", "--config", str(cfg), env={RIG_CLOCK_SPEED: "120"})
    assert out.returncode == 1
    assert "TEST RIG CLOCK" in out.stderr
    assert RIG_CLOCK_SPEED in out.stderr


def test_run_refuses_a_rig_clock_under_systemd(tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text(f'[gateway]\nid = "g"\nhome = "h"\n[storage]\npath = "{tmp_path / "g.db"}"\n')
    out = run_cli("run", "--config", str(cfg), "--no-uplink", "--no-hardware",
                  env={RIG_CLOCK_START: START.isoformat(), "NOTIFY_SOCKET": str(tmp_path / "notify")})
    assert out.returncode == 1
    assert "refusing them under systemd" in out.stderr


# ---------------------------------------------------------------------- scenarios in scenario time


def _scenario(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(f"config: {ROOT / 'tests' / 'hil' / 'routine_home.toml'}\n" + text)
    return path


def test_scenario_times_of_day_count_from_the_clock_start(tmp_path: Path) -> None:
    sc = load_scenario(_scenario(tmp_path, (
        'clock: {start: "2026-03-02T22:00:00+08:00", speed: 120}\nduration_s: "01:30"\nsteps:\n'
        "  - {at: 22:10, sensor: bed-pad, kind: in_bed, value: false}\n"  # unquoted: not YAML 1.1's 1330
        '  - {at: "00:05:30", sensor: motion-living, kind: motion, value: true}\n'
        "  - {at: 60, sensor: motion-hall, kind: motion, value: true}\n"
        'expect:\n  - {alert: bed_exit_no_return, after: "2026-03-02T23:00:00+08:00", within_ms: 600000}\n'
    )))
    assert sc.clock_start == datetime.fromisoformat("2026-03-02T22:00:00+08:00")
    assert sc.speed == 120
    assert [s.at_s for s in sc.sensor_steps] == [60, 600, 7530]  # 00:05:30 is the next day
    assert sc.duration_s == 3.5 * 3600
    assert sc.expect[0].after_s == 3600
    assert sc.real_s(3600) == 30


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("clock: fast\nduration_s: 5\n", "clock", "expected {start, speed}"),
        ("clock: {speed: 10}\nduration_s: 5\n", "clock", "missing 'start'"),
        ('clock: {start: "two o\'clock"}\nduration_s: 5\n', "clock.start", "expected an ISO 8601 time"),
        ('clock: {start: "2026-03-02T02:00:00"}\nduration_s: 5\n', "clock.start", "needs a UTC offset"),
        ('clock: {start: "2026-03-02T02:00:00+08:00", speed: 0}\nduration_s: 5\n', "clock.speed", "expected a factor"),
        ('clock: {start: "2026-03-02T02:00:00+08:00", speed: 9000}\nduration_s: 5\n', "clock.speed",
         "expected a factor"),
        ('clock: {start: "2026-03-02T02:00:00+08:00"}\nduration_s: "25:00"\n', "duration_s", "not a time of day"),
        ('clock: {start: "2026-03-02T02:00:00+08:00"}\nduration_s: "2026-03-01T02:00:00+08:00"\n', "duration_s",
         "before the clock's start"),
        ('clock: {start: "2026-03-02T02:00:00+08:00"}\nduration_s: soon\n', "duration_s", "expected seconds"),
        ("duration_s: \"02:10\"\n", "duration_s", "expected a number"),  # times of day need a clock
        ('clock: {start: "2026-03-02T02:00:00+08:00", speed: 60}\nduration_s: 5\nsteps:\n'
         "  - {at: 1, pendant_fall: {sensor: pendant}}\n", "steps[0]", "needs real time"),
    ],
)
def test_bad_clocks_name_the_key(tmp_path: Path, text: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_scenario(_scenario(tmp_path, text))
    assert exc.value.key == key
    assert message in str(exc.value)


def test_session_offsets_and_gateway_environment_are_real_time(tmp_path: Path) -> None:
    sc = load_scenario(_scenario(tmp_path, (
        'clock: {start: "2026-03-02T02:00:00+08:00", speed: 600}\nduration_s: "03:00"\nsteps:\n'
        '  - {at: "02:10", sensor: bed-pad, kind: in_bed, value: false}\n'
    )))
    session = tmp_path / "s.jsonl"
    _write_session(session, sc.sensor_steps, sc.speed)
    assert json.loads(session.read_text())["offset_s"] == 1.0  # ten minutes at 600x
    env = rig_clock_env(sc, 1_800_000_000.5)
    assert env == {RIG_CLOCK_START: "2026-03-02T02:00:00+08:00", RIG_CLOCK_SPEED: "600.0",
                   RIG_CLOCK_ANCHOR: "1800000000.500000"}
    clock = rig_clock_from_env(env)
    assert clock is not None
    assert clock.speed == 600
    plain = load_scenario(_scenario(tmp_path, "duration_s: 5\n"))
    assert rig_clock_env(plain, 0.0) == {}


def test_budgets_on_a_rig_clock_are_scenario_time(tmp_path: Path) -> None:
    sc = load_scenario(_scenario(tmp_path, (
        'clock: {start: "2026-03-02T02:00:00+08:00", speed: 600}\nduration_s: "04:00"\n'
        'expect:\n  - {alert: bed_exit_no_return, after: "03:00", within_ms: 300000}\n'
        '  - {alert: night_door, after: "03:00", within_ms: 300000}\n'
    )))
    result = Result(sc)

    def alert(t: float, type_: str) -> dict[str, object]:
        return {"t": t, "topic": "anxin/v1/gw/alert",
                "payload": {"type": type_, "state": "raised", "alert_id": type_}}

    # 03:00 is 6 real seconds after the start: one arrives 0.2 s (2 min) later, one 0.6 s (6 min)
    result.received = [alert(106.2, "bed_exit_no_return"), alert(106.6, "night_door"), alert(107, "not_up")]
    _judge(result, 100.0)
    on_time, late = result.outcomes
    assert (on_time.ok, round(on_time.latency_ms or 0), round(on_time.real_latency_ms or 0)) == (True, 120000, 200)
    assert (late.ok, round(late.latency_ms or 0)) == (False, 360000)
    assert late.detail == "360 s scenario time, 600 ms real (budget 300 s)"
    assert result.unexpected == ["not_up"]  # a false alarm fails the scenario
    assert not result.ok
