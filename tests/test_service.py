"""The service loop: the alert path order, supervision, sd_notify, SIGTERM shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from drivers.base import Driver
from gateway.clock import Clock, Stamp
from gateway.config import Config, GatewayConfig, RoomConfig, SensorConfig, StorageConfig
from gateway.model import Alert, AlertType, Reading, ReadingKind, SensorKind, Transport
from gateway.service import Service
from gateway.store import Store
from gateway.systemd import SdNotifier
from tests.conftest import ROOT


def make_cfg(tmp_path: Path) -> Config:
    return Config(
        gateway=GatewayConfig(id="gw-t", home="h-t"),
        rooms=(RoomConfig(id="living"),),
        sensors=(SensorConfig(id="btn1", kind=SensorKind.BUTTON, transport=Transport.BLE,
                              address="A4:C1:38:00:00:01", room="living"),),
        storage=StorageConfig(path=str(tmp_path / "gw.db"), group_commit_ms=20),
    )


class ListDriver(Driver):
    """Yields a fixed list of readings; optionally fails on the first run."""

    name = "list"

    def __init__(self, readings: Sequence[Reading], fail_first: bool = False) -> None:
        super().__init__()
        self.items = list(readings)
        self.fail_first = fail_first
        self.runs = 0

    async def readings(self) -> AsyncIterator[Reading]:
        self.runs += 1
        if self.fail_first and self.runs == 1:
            raise OSError("device vanished")
        for r in self.items:
            await asyncio.sleep(0)
            yield r


class ButtonDetector:
    name = "button-test"

    def restore(self) -> None:
        pass

    def feed(self, reading: Reading) -> Sequence[Alert]:
        if reading.kind is ReadingKind.BUTTON:
            stamp = Stamp(reading.ts, reading.monotonic_s, reading.boot_id, reading.clock_synced)
            return [Alert.raise_(AlertType.EMERGENCY_BUTTON, stamp, evidence={"gesture": reading.value})]
        return []

    def tick(self, now: Stamp) -> Sequence[Alert]:
        return []


class RecordingUplink:
    """The edge fake: records what the store held at the moment it was woken."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seen_at_wake: list[int] = []
        self.closed = False

    async def run(self) -> None:
        await asyncio.Event().wait()

    def wake(self) -> None:
        self.seen_at_wake.append(self.store.pending_count())

    def healthy(self) -> bool:
        return True

    async def close(self) -> None:
        self.closed = True


def button(clock: Clock, value: str = "press") -> Reading:
    return Reading.at(clock.now(), "btn1", ReadingKind.BUTTON, value)


async def test_alert_committed_before_uplink_is_woken(tmp_path: Path) -> None:
    clock = Clock()
    cfg = make_cfg(tmp_path)
    uplinks: list[RecordingUplink] = []

    def factory(c: Config, s: Store) -> RecordingUplink:
        uplinks.append(RecordingUplink(s))
        return uplinks[0]

    svc = Service(cfg, drivers=[ListDriver([button(clock), button(clock, "long_press")])],
                  detectors=[ButtonDetector()], uplink_factory=factory, stop_when_drivers_done=True)
    await asyncio.wait_for(svc.run(), 10)
    assert uplinks[0].seen_at_wake == [1, 2]
    assert uplinks[0].closed
    with Store(cfg.storage.path) as store:
        alerts = store.alerts()
        assert [a.evidence["gesture"] for a in alerts] == ["press", "long_press"]
        assert store.last_reading_id() == 2


async def test_failed_driver_is_restarted_and_nothing_lost(tmp_path: Path) -> None:
    clock = Clock()
    cfg = make_cfg(tmp_path)
    drv = ListDriver([button(clock)], fail_first=True)
    svc = Service(cfg, drivers=[drv], detectors=[ButtonDetector()], stop_when_drivers_done=True)
    await asyncio.wait_for(svc.run(), 10)
    assert drv.runs == 2
    health = svc.health["driver:list:0"]
    assert health.restarts == 1
    assert "device vanished" in health.last_error
    with Store(cfg.storage.path) as store:
        assert len(store.alerts()) == 1


async def test_detector_crash_does_not_stop_the_path(tmp_path: Path) -> None:
    class Broken(ButtonDetector):
        name = "broken"

        def feed(self, reading: Reading) -> Sequence[Alert]:
            raise ZeroDivisionError

    clock = Clock()
    cfg = make_cfg(tmp_path)
    svc = Service(cfg, drivers=[ListDriver([button(clock)])], detectors=[Broken(), ButtonDetector()],
                  stop_when_drivers_done=True)
    await asyncio.wait_for(svc.run(), 10)
    assert svc.stats.detector_errors == 1
    with Store(cfg.storage.path) as store:
        assert len(store.alerts()) == 1


async def test_sd_notify_ready_watchdog_stopping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sock_path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(sock_path)
    server.setblocking(False)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    cfg = make_cfg(tmp_path)
    svc = Service(cfg, notifier=SdNotifier(sock_path))
    task = asyncio.create_task(svc.run())
    messages: list[str] = []
    loop = asyncio.get_running_loop()
    try:
        deadline = time.monotonic() + 5
        while "WATCHDOG=1" not in messages and time.monotonic() < deadline:
            data = await asyncio.wait_for(loop.sock_recv(server, 1024), 5)
            messages.append(data.decode())
        svc.request_stop()
        await asyncio.wait_for(task, 5)
        while True:
            try:
                messages.append(server.recv(1024).decode())
            except BlockingIOError:
                break
    finally:
        server.close()
    assert messages[0].startswith("READY=1")
    assert "WATCHDOG=1" in messages
    assert messages[-1] == "STOPPING=1"


def _write_cfg(tmp_path: Path) -> Path:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw-t"\nhome = "h-t"\n[storage]\npath = "{tmp_path / "gw.db"}"\n'
        '[[rooms]]\nid = "living"\n'
        '[[sensors]]\nid = "m1"\nkind = "motion"\ntransport = "ble"\naddress = "A4:C1:38:00:00:02"\nroom = "living"\n'
    )
    return cfg


def test_sigterm_stops_within_5s_with_readings_committed(tmp_path: Path) -> None:
    session = tmp_path / "s.jsonl"
    n = 200
    session.write_text("".join(
        json.dumps({"offset_s": i * 0.005, "sensor": "m1", "kind": "motion", "value": i % 2 == 0}) + "\n"
        for i in range(n)
    ) + json.dumps({"offset_s": 600, "sensor": "m1", "kind": "motion", "value": True}) + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(_write_cfg(tmp_path)),
         "--replay", str(session), "--no-uplink"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        time.sleep(3.0)  # the first 200 readings are played in 1 s; the last waits 10 min
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert elapsed < 5.0, out
    assert "stopped in" in out
    conn = sqlite3.connect(tmp_path / "gw.db")
    try:
        assert conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == n
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


async def test_an_alert_commits_before_later_detectors_run(tmp_path: Path) -> None:
    clock = Clock()
    cfg = make_cfg(tmp_path)
    seen_by_slow: list[int] = []

    class Slow(ButtonDetector):
        name = "slow"

        def feed(self, reading: Reading) -> Sequence[Alert]:
            with Store(cfg.storage.path) as other:  # what a second reader sees on disk now
                seen_by_slow.append(len(other.alerts()))
            return []

    svc = Service(cfg, drivers=[ListDriver([button(clock)])], detectors=[ButtonDetector(), Slow()],
                  stop_when_drivers_done=True)
    await asyncio.wait_for(svc.run(), 10)
    assert seen_by_slow == [1]
