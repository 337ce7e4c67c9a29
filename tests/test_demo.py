"""`anxin demo` runs headless with a time limit, and the platform got the whole story.

The button, the door contact, the pendant and the bed pad run their real firmware (BLE
adverts and the pendant's GATT notifications through a mock BlueZ into bleak; the bed
pad's UART on a pty into the serial driver), the radar an emulator on a pty. The test
reads every message the platform received (``--record``) and checks that they came
through those paths, and that the readings taken while the home's link was down arrived
afterwards, once each, in order.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway import hil
from gateway.demo import devices
from gateway.demo.devices import EmulatedHome
from gateway.demo.story import OUTAGE
from gateway.errors import ConfigError
from tests.conftest import run_cli

HAVE_BLUEZ = shutil.which("dbus-daemon") is not None and importlib.util.find_spec("dbusmock") is not None
BLE_FEED = "firmware (BLE through mock BlueZ)"


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _readings(messages: list[dict[str, Any]]) -> list[tuple[float, int, dict[str, Any]]]:
    """(arrival, message seq, reading) for every reading in an event message."""
    return [(m["t"], m["payload"]["seq"], r) for m in messages if m["topic"].endswith("/event")
            for r in m["payload"].get("readings") or []]


@pytest.mark.timeout(200)
def test_demo_headless_delivers_the_story(tmp_path: Path) -> None:
    record = tmp_path / "platform.jsonl"
    out = run_cli("demo", "--no-tty", "--record", str(record), timeout=180)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["ok"] is True
    assert summary["missing"] == []
    alerts = summary["alerts"]
    assert alerts["emergency_button:raised"] == 1
    assert alerts["emergency_button:acknowledged"] == 1
    assert alerts["fall:raised"] == 1
    assert alerts["fall:cancelled"] == 1
    assert alerts["fall_radar:raised"] == 1
    assert not [k for k in alerts if k.split(":")[0] not in {"emergency_button", "fall", "fall_radar"}]
    text = out.stdout
    assert "internet link goes down" in text
    assert "the backlog drains" in text
    assert "status offline" in text
    assert text.count("status online") >= 2
    assert "\x1b[" not in text  # --no-tty: no colours

    messages = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]
    mine = [m for m in messages if "/cmd/" not in m["topic"] and "/reply/" not in m["topic"]]
    readings = _readings(mine)
    by_sensor: dict[str, list[dict[str, Any]]] = {}
    for _t, _seq, r in readings:
        by_sensor.setdefault(r["sensor"], []).append(r)
    feeds, drivers = summary["feeds"], summary["drivers"]

    # The bed pad's firmware, over a pty, through the serial driver: in bed at power-up, then out.
    assert feeds["bed-pad"] == "firmware (serial on a pty)"
    assert drivers["serial:bed-pad"]["frames_ok"] >= 2
    in_bed = [r["value"] for r in by_sensor["bed-pad"] if r["kind"] == "in_bed"]
    # The changes: into bed, out of bed. The pad's state is also re-reported every
    # report interval (60 s), which a slow run reaches: repeats are not changes.
    assert [v for i, v in enumerate(in_bed) if i == 0 or v != in_bed[i - 1]] == [True, False]
    # The radar emulator's MR60FDA2 frames, through the serial driver.
    assert feeds["radar-bath"] == "emulator (serial on a pty)"
    assert drivers["serial:radar-bath"]["frames_ok"] >= 10
    assert [r["value"] for r in by_sensor["radar-bath"] if r["kind"] == "fall"] == [False, True]

    raised = next(m["payload"] for m in mine if m["topic"].endswith("/alert")
                  and m["payload"]["type"] == "emergency_button" and m["payload"]["state"] == "raised")
    (press,) = [r for r in by_sensor["button-bedside"] if r["kind"] == "button"]
    door = [r for r in by_sensor["door-front"] if r["kind"] == "contact"]
    assert [r["value"] for r in door] == [True, False]
    if HAVE_BLUEZ:
        # The button's encrypted BTHome advert, heard by bleak on the mock BlueZ: the BLE driver
        # names the BTHome object and the RSSI; the replay feed has neither.
        assert feeds["button-bedside"] == BLE_FEED
        assert feeds["door-front"] == BLE_FEED
        assert drivers["ble"]["frames_ok"] >= 3  # the press, the door opening and closing
        assert drivers["ble"]["frames_rejected"] == 0
        assert raised["evidence"]["button"] == "button"
        assert isinstance(press["extra"]["rssi_dbm"], int)
        assert all(r["extra"]["object"] == "opening" for r in door)
        # The pendant's 50 Hz frames and its "I'm OK" press, notified over GATT to the pendant driver.
        assert feeds["pendant"] == "firmware (GATT through mock BlueZ)"
        assert drivers["ble-pendant:pendant"]["frames_ok"] >= 100
        assert drivers["ble-pendant:pendant"]["frames_rejected"] == 0
        assert [r["value"] for r in by_sensor["pendant"] if r["kind"] == "link"][:1] == ["up"]
    else:
        assert "button-bedside" not in feeds
        assert "pendant" not in feeds
        assert "no mock BlueZ" in out.stderr
        assert "button" not in raised["evidence"]

    # The outage: readings taken while the link was down arrived after it came back, each
    # once, in the order they were taken, in messages whose seq keeps rising.
    offline = next(m["t"] for m in mine if m["topic"].endswith("/status") and m["payload"]["state"] == "offline")
    online = next(m["t"] for m in mine if m["topic"].endswith("/status") and m["payload"]["state"] == "online"
                  and m["t"] > offline)
    assert online - offline >= (OUTAGE[1] - OUTAGE[0]) - 2
    backlog = [(t, seq, r) for t, seq, r in readings if offline <= _epoch(r["ts"]) < online]
    motion = [r for _t, _seq, r in backlog if r["sensor"] == "motion-living"]
    assert [r["value"] for r in motion] == [True, False] * 4
    assert all(t >= online for t, _seq, _r in backlog)
    stamps = [_epoch(r["ts"]) for _t, _seq, r in backlog]
    assert stamps == sorted(stamps)
    keys = [(r["sensor"], r["kind"], r["ts"]) for _t, _seq, r in readings]
    assert len(keys) == len(set(keys))  # nothing delivered twice
    seqs = [m["payload"]["seq"] for m in mine if m["topic"].endswith(("/event", "/alert"))]
    assert seqs == sorted(seqs)
    assert len(seqs) == len(set(seqs))


async def test_without_a_mock_bluez_the_ble_sensors_are_replayed(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def no_bluez() -> None:
        raise ConfigError("BLE firmware devices need python-dbusmock and dbus-python (No module named 'dbus')")

    monkeypatch.setattr(hil, "MockBlueZ", no_bluez)
    home = EmulatedHome(tmp_path)
    try:
        await home.start()
    finally:
        await home.close()
    assert home.notes == ["no mock BlueZ (BLE firmware devices need python-dbusmock and dbus-python "
                          "(No module named 'dbus')): the button, the door and the pendant are replayed, "
                          "not their firmware"]
    assert home.feeds == {"bed-pad": "firmware (serial on a pty)", "radar-bath": "emulator (serial on a pty)"}
    assert not home.ble_live
    assert not home.handles("button-bedside", "button", "press")
    assert not home.handles("door-front", "contact", True)
    assert not home.handles("pendant", "activity", "fall")
    assert home.handles("bed-pad", "in_bed", False)
    assert home.handles("radar-bath", "fall", True)
    assert not home.handles("motion-living", "motion", True)


async def test_with_emulation_off_everything_is_replayed(tmp_path: Path) -> None:
    home = EmulatedHome(tmp_path, emulate=False)
    try:
        await home.start()
    finally:
        await home.close()
    assert home.notes == []
    assert home.feeds == {}
    assert not home.boards
    assert not home.handles("radar-bath", "fall", True)


async def test_without_the_firmware_tree_only_the_radar_is_emulated(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "firmware_available", lambda: False)
    home = EmulatedHome(tmp_path)
    try:
        await home.start()
    finally:
        await home.close()
    assert home.notes == ["the firmware (firmware_stubs/) is not here: button, door, pendant and bed pad are replayed"]
    assert home.feeds == {"radar-bath": "emulator (serial on a pty)"}
    assert not home.boards
