"""The emergency button firmware, run under the host shim, into the gateway's real BLE path.

Adverts the firmware puts on air go through ``BleDriver`` (bthome-ble's AES-CCM check with
the configured bind key, the replay check against the real SQLite store) and the readings
through ``SensorEventDetector``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from firmware_helpers import BUTTON, BUTTON_MAC, DOOR_MAC, KEY_HEX, advert, ble_driver, board

from drivers.ble.driver import counter_name
from drivers.ble.protocol import BTHOME_UUID, decode
from firmware_stubs.host import Board, HostAdvert
from gateway.assemble import build_detectors, build_drivers
from gateway.clock import Clock
from gateway.config import load
from gateway.detect.sensors import SensorEventDetector
from gateway.model import AlertType, ReadingKind
from gateway.store import Store

CONFIG = f'KEY = "{KEY_HEX}"\nHEARTBEAT_S = 600\n'


def start(flash: Path, listener: Callable[[HostAdvert], None] | None = None) -> tuple[Board, object]:
    b = board(flash, BUTTON_MAC, CONFIG)
    if listener is not None:
        b.on_advert.append(listener)
    app = b.load("button").App()
    b.run(app, 300)
    return b, app


def press(b: Board, app: object, hold_ms: int = 120, after_ms: int = 600) -> None:
    b.pin(3).drive(0)
    b.run(app, hold_ms)
    b.pin(3).drive(1)
    b.run(app, after_ms)


def events(b: Board, since: int = 0) -> list[str]:
    key = bytes.fromhex(KEY_HEX)
    out = []
    for a in b.adverts[since:]:
        frame = decode(a.service_data[BTHOME_UUID], a.mac, bindkey=key)
        out += [gesture for _, gesture in frame.events]
    return out


async def test_press_reaches_the_detector_as_an_emergency(tmp_path: Path, store: Store) -> None:
    drv = ble_driver([BUTTON], store)
    b, app = start(tmp_path / "flash", lambda a: drv.on_advertisement(advert(a)))
    press(b, app)
    assert len(b.adverts) == 2  # the power-up announcement, then the press
    readings = []
    async with asyncio.timeout(5):
        it = aiter(drv.readings())
        while len(readings) < 3:
            readings.append(await anext(it))
        await it.aclose()
    assert [(r.kind, r.value) for r in readings] == [
        (ReadingKind.BATTERY, 60),  # power-up announcement: battery only
        (ReadingKind.BUTTON, "press"),
        (ReadingKind.BATTERY, 60),
    ]
    assert drv.stats.frames_rejected == 0
    # The announcement's counter is stored; the press's only once the consumer comes back
    # for more after handling it (it closed the stream instead: a crash would repeat it).
    assert store.counter(counter_name(BUTTON_MAC)) == 0
    det = SensorEventDetector([BUTTON], store)
    alerts = [a for r in readings for a in det.feed(r)]
    assert [(a.type, a.sensor_id, a.room, a.evidence["gesture"]) for a in alerts] == [
        (AlertType.EMERGENCY_BUTTON, "button-bedside", "bedroom", "press")
    ]


async def test_adverts_are_encrypted_and_fail_with_another_key(tmp_path: Path, store: Store) -> None:
    b, app = start(tmp_path / "flash")
    press(b, app)
    raw = b.adverts[-1].service_data[BTHOME_UUID]
    assert raw[0] == 0x45  # BTHome v2, trigger based, encrypted
    assert b"\x3a\x01" not in raw  # the button object is not in clear
    drv = ble_driver([BUTTON], store)
    drv.bindkeys[BUTTON_MAC] = bytes(16)
    assert await drv.process(advert(b.adverts[-1])) == []
    assert drv.counters.reasons == {"auth_failed": 1}


def test_double_long_and_bouncing_presses(tmp_path: Path) -> None:
    b, app = start(tmp_path / "flash")
    n = len(b.adverts)
    press(b, app, hold_ms=80, after_ms=120)
    press(b, app, hold_ms=80, after_ms=700)
    assert events(b, n) == ["double_press"]
    n = len(b.adverts)
    b.pin(3).drive(0)
    b.run(app, 900)
    assert events(b, n) == ["long_press"]  # while still held: help does not wait for release
    b.pin(3).drive(1)
    b.run(app, 700)
    assert events(b, n) == ["long_press"]
    n = len(b.adverts)
    # A worn contact chattering for 300 ms (25 ms per level: seen by two or three samples,
    # shorter than the debounce time) before it closes for good: one press, not a triple.
    for i in range(13):
        b.after(25 * i, lambda lv=i % 2: b.pin(3).drive(lv))
    b.run(app, 500)
    b.pin(3).drive(1)
    b.run(app, 700)
    assert events(b, n) == ["press"]


async def test_counter_survives_reboot_and_old_advert_is_a_replay(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    b1, app = start(flash)
    for _ in range(3):
        press(b1, app)
    before = list(b1.adverts)
    counters1 = [decode(a.service_data[BTHOME_UUID], a.mac, bindkey=bytes.fromhex(KEY_HEX)).counter for a in before]
    assert counters1 == [0, 1, 2, 3]
    assert (flash / "bthome.cnt").read_text() == "16"  # one flash write per 16 adverts

    b2 = b1.reboot()  # power cycle: RAM gone, flash kept
    b2.at(300, lambda: b2.pin(3).drive(0))
    b2.at(420, lambda: b2.pin(3).drive(1))
    b2.run_main(b2.load("button"), 1500)  # the firmware's own main() loop this time
    assert events(b2) == ["press"]
    after = list(b2.adverts)
    counters2 = [decode(a.service_data[BTHOME_UUID], a.mac, bindkey=bytes.fromhex(KEY_HEX)).counter for a in after]
    assert counters2
    assert min(counters2) == 16 > max(counters1)

    db = tmp_path / "gw.db"
    with Store(db) as s:
        drv = ble_driver([BUTTON], s)
        for a in before + after:
            await drv.process(advert(a))
        assert drv.stats.frames_rejected == 0
    with Store(db) as s:  # the gateway restarted too: the counter is in the store
        drv = ble_driver([BUTTON], s)
        assert await drv.process(advert(before[-1])) == []
        assert drv.counters.reasons == {"replayed_counter": 1}


GATEWAY_TOML = """
secrets_file = "secrets.toml"

[gateway]
id = "gw-fw"
home = "home-fw"

[[rooms]]
id = "bedroom"
kind = "bedroom"

[[rooms]]
id = "hall"
kind = "entrance"

[[sensors]]
id = "button-bedside"
kind = "button"
transport = "ble"
address = "{button}"
room = "bedroom"
key = "button-bedside"
expected_interval_s = 1800

[[sensors]]
id = "door-front"
kind = "door"
transport = "ble"
address = "{door}"
room = "hall"
expected_interval_s = 900
"""


async def test_button_and_door_through_the_configured_gateway(tmp_path: Path, store: Store) -> None:
    """Bind key from the secrets file, drivers and detectors as `anxin run` assembles them."""
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "gateway.toml").write_text(GATEWAY_TOML.format(button=BUTTON_MAC, door=DOOR_MAC))
    (conf / "secrets.toml").write_text(f'[keys]\nbutton-bedside = "{KEY_HEX}"\n')
    (conf / "secrets.toml").chmod(0o600)
    cfg = load(conf / "gateway.toml")
    clock = Clock(assume_synced=True)
    (drv,) = build_drivers(cfg, store, clock)  # the BLE driver; not opened: no adapter here
    detectors = build_detectors(cfg, store, clock)

    button, app = start(tmp_path / "button", lambda a: drv.on_advertisement(advert(a)))
    door = board(tmp_path / "door", DOOR_MAC)
    door.on_advert.append(lambda a: drv.on_advertisement(advert(a)))
    door.pin(3).drive(0)
    door_app = door.load("door").App()
    door.run(door_app, 300)
    press(button, app, hold_ms=1000)  # a long press
    door.pin(3).release()
    door.run(door_app, 300)

    readings = []
    async with asyncio.timeout(5):
        it = aiter(drv.readings())
        while len(readings) < 7:
            readings.append(await anext(it))
        await it.aclose()
    got = {(r.sensor_id, r.kind, r.value) for r in readings}
    assert ("button-bedside", ReadingKind.BUTTON, "long_press") in got
    assert ("door-front", ReadingKind.CONTACT, True) in got
    alerts = [a for r in readings for d in detectors for a in d.feed(r)]
    assert [(a.type, a.sensor_id, a.evidence["gesture"]) for a in alerts] == [
        (AlertType.EMERGENCY_BUTTON, "button-bedside", "long_press")
    ]
