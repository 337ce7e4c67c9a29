"""The BLE driver's decode path, through its advertisement entry point (no radio).

The end-to-end tests with bleak and a mock BlueZ are in test_ble_bluez.py; these drive
``BleDriver.process`` / ``on_advertisement`` directly, with a real SQLite store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

import pytest
from bthome_frames import SHELLY_KEY, SHELLY_MAC, SHELLY_PRESS, button, encrypted, plain
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ble.driver import Advert, BleDriver, BleOptions, counter_name
from drivers.ble.protocol import BTHOME_UUID
from gateway.clock import Clock
from gateway.errors import ConfigError
from gateway.model import ReadingKind, Sensor, SensorKind, Transport
from gateway.store import Store

BUTTON = Sensor("btn1", SensorKind.BUTTON, Transport.BLE, SHELLY_MAC, "bedroom", 3600.0, "btn1key")
DOOR = Sensor("door1", SensorKind.DOOR, Transport.BLE, "A4:C1:38:8D:18:B2", "entrance", 600.0)
KEYS = {"btn1key": SHELLY_KEY.hex()}


def advert(mac: str, raw: bytes, *, mono: float | None = None, rssi: int = -60) -> Advert:
    return Advert(
        mac, "SBBT-002C", rssi, {BTHOME_UUID: raw}, time.monotonic() if mono is None else mono
    )


def driver(store: Store | None = None, **opts: float) -> BleDriver:
    return BleDriver(
        [BUTTON, DOOR],
        KEYS,
        store=store,
        clock=Clock(assume_synced=True),
        options=BleOptions(**opts),
    )  # type: ignore[arg-type]


async def test_encrypted_button_press_becomes_readings(store: Store) -> None:
    d = driver(store)
    out = await d.process(advert(SHELLY_MAC, SHELLY_PRESS))
    assert [(r.kind, r.value) for r in out] == [
        (ReadingKind.BUTTON, "press"),
        (ReadingKind.BATTERY, 100),
    ]
    assert out[0].sensor_id == "btn1"
    assert out[0].extra["packet_id"] == 7
    assert out[0].extra["rssi_dbm"] == -60
    assert out[0].ts.tzinfo is UTC or out[0].ts.utcoffset() is not None
    assert store.counter(counter_name(SHELLY_MAC)) == 442


async def test_repeated_advert_is_a_duplicate_not_a_reject(store: Store) -> None:
    d = driver(store)
    assert await d.process(advert(SHELLY_MAC, SHELLY_PRESS))
    assert await d.process(advert(SHELLY_MAC, SHELLY_PRESS)) == []
    assert d.counters.duplicates == 1
    assert d.stats.frames_rejected == 0


async def test_replayed_counter_rejected_across_restart(tmp_path) -> None:
    path = tmp_path / "a.db"
    with Store(path) as s1:
        d1 = driver(s1)
        later = encrypted(button(8), SHELLY_MAC, SHELLY_KEY, 500)
        assert await d1.process(advert(SHELLY_MAC, later))
    # A new process (restart) must not reopen the window: the old frame (counter 442) is a replay.
    with Store(path) as s2:
        d2 = driver(s2)
        assert await d2.process(advert(SHELLY_MAC, SHELLY_PRESS)) == []
        assert d2.counters.reasons == {"replayed_counter": 1}
        assert d2.stats.frames_rejected == 1
        # The last accepted frame again after the restart is a duplicate, not an attack: no
        # button reading, but it is a sign of life (a heartbeat).
        again = await d2.process(advert(SHELLY_MAC, later))
        assert [r.kind for r in again] == [ReadingKind.RSSI]
        assert d2.counters.duplicates == 1


async def test_wrong_key_is_rejected_and_counted(store: Store) -> None:
    d = BleDriver([BUTTON], {"btn1key": "00" * 16}, store=store)
    assert await d.process(advert(SHELLY_MAC, SHELLY_PRESS)) == []
    assert d.counters.reasons == {"auth_failed": 1}
    assert store.counter(counter_name(SHELLY_MAC), -1) == -1  # nothing advanced


async def test_plaintext_from_keyed_sensor_is_a_downgrade(store: Store) -> None:
    d = driver(store)
    assert await d.process(advert(SHELLY_MAC, plain(button(9)))) == []
    assert d.counters.reasons == {"downgrade": 1}


async def test_packet_id_dedup_and_window() -> None:
    d = driver()
    frame = plain(button(3, gesture=2))
    first = await d.process(advert(DOOR.address, frame, mono=100.0))
    assert first[0].value == "double_press"
    assert await d.process(advert(DOOR.address, frame, mono=101.0)) == []
    # The same packet id long after is a new event (the id is only 8 bits).
    assert await d.process(advert(DOOR.address, frame, mono=200.0))
    assert d.counters.duplicates == 1


async def test_unpaired_device_is_listed_never_read() -> None:
    d = driver()
    out = await d.process(advert("11:22:33:44:55:66", plain(button(1))))
    assert out == []
    assert "11:22:33:44:55:66" in d.unpaired
    assert d.unpaired["11:22:33:44:55:66"].encrypted is False


async def test_door_window_motion_hazards_map_to_kinds() -> None:
    d = driver()
    objs = bytes([0x00, 1, 0x01, 15, 0x1C, 1, 0x20, 1, 0x21, 1, 0x29, 1, 0x2B, 1, 0x2D, 1])
    out = await d.process(advert(DOOR.address, plain(objs)))
    got = {(r.kind, r.value) for r in out}
    assert got == {
        (ReadingKind.BATTERY, 15),
        (ReadingKind.GAS, True),
        (ReadingKind.WATER_LEAK, True),
        (ReadingKind.MOTION, True),
        (ReadingKind.SMOKE, True),
        (ReadingKind.TAMPER, True),
        (ReadingKind.CONTACT, True),
    }


async def test_heartbeat_keeps_last_seen_without_payload_change() -> None:
    d = driver(heartbeat_s=60.0)
    frame = plain(bytes([0x2D, 0]), trigger=False)  # a closed door, no packet id
    first = await d.process(advert(DOOR.address, frame, mono=10.0))
    assert [r.kind for r in first] == [ReadingKind.CONTACT]
    # An advert with no BTHome data at all (BlueZ reported an RSSI change): no reading yet...
    rssi_only = Advert(DOOR.address, "", -70, {}, 30.0)
    assert await d.process(rssi_only) == []
    assert d.last_seen["door1"] == 30.0
    # ...but once heartbeat_s has passed since the last reading, one heartbeat.
    hb = await d.process(Advert(DOOR.address, "", -71, {}, 75.0))
    assert [(r.kind, r.value, r.extra["heartbeat"]) for r in hb] == [(ReadingKind.RSSI, -71, True)]


async def test_bad_frames_counted_never_raised() -> None:
    d = driver()
    for raw in (b"", b"\x20\x3a\x01", b"\x40", b"\x40\xff"):
        assert await d.process(advert(DOOR.address, raw)) == []
    assert d.stats.frames_rejected == 4
    assert set(d.counters.reasons) == {"empty", "bthome_version_1", "truncated", "no_objects"}


async def test_readings_iterator_from_callback_entry_point() -> None:
    d = driver()
    d.on_advertisement(advert(DOOR.address, plain(button(5, gesture=4))))
    it = d.readings()
    first = await asyncio.wait_for(anext(it), 5)
    assert (first.kind, first.value) == (ReadingKind.BUTTON, "long_press")
    await it.aclose()


def test_missing_bind_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="btn1key"):
        BleDriver([BUTTON], {})
    with pytest.raises(ConfigError, match="32 hex"):
        BleDriver([BUTTON], {"btn1key": "abcd"})


def test_non_ble_sensors_are_ignored() -> None:
    serial = Sensor("radar", SensorKind.RADAR_PRESENCE, Transport.SERIAL, "/dev/ttyUSB0", "bedroom")
    d = BleDriver([serial, DOOR])
    assert list(d.paired) == [DOOR.address]
    assert datetime.now(UTC)


def test_from_config_reads_ble_section_and_keys(tmp_path) -> None:
    from gateway import config

    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'[keys]\nk = "{SHELLY_KEY.hex()}"\n')
    secrets.chmod(0o600)
    text = f"""
secrets_file = "{secrets}"
[gateway]
id = "gw"
home = "h"
[ble]
adapter = "hci1"
dedup_window_s = 5
[[rooms]]
id = "bedroom"
[[sensors]]
id = "btn1"
kind = "button"
transport = "ble"
address = "{SHELLY_MAC.lower()}"
room = "bedroom"
expected_interval_s = 300
key = "k"
"""
    cfg = config.loads(text, path=str(tmp_path / "gateway.toml"))
    d = BleDriver.from_config(cfg)
    assert d.options.adapter == "hci1"
    assert d.options.dedup_window_s == 5.0
    assert d.options.watchdog_silence_s == 300.0  # follows the shortest expected interval
    assert d.bindkeys == {SHELLY_MAC: SHELLY_KEY}
    with pytest.raises(ConfigError, match="scanning_mode"):
        config.loads(text.replace('adapter = "hci1"', 'scanning_mode = "loud"'), path="x.toml")


async def test_unpaired_list_is_bounded() -> None:
    d = BleDriver([DOOR], options=BleOptions(unpaired_max=8))
    for i in range(50):
        mac = f"10:00:00:00:00:{i:02X}"
        await d.process(advert(mac, plain(button(1)), mono=float(i)))
    assert len(d.unpaired) == 8
    assert "10:00:00:00:00:31" in d.unpaired  # the newest stay


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([SHELLY_MAC, DOOR.address, "11:22:33:44:55:66"]),
            st.binary(max_size=24),
            st.floats(0, 1e6),
        ),
        max_size=20,
    )
)
async def test_driver_never_raises_on_hostile_adverts(
    items: list[tuple[str, bytes, float]],
) -> None:
    d = driver()
    for mac, raw, mono in items:
        for r in await d.process(advert(mac, raw, mono=mono)):
            assert r.sensor_id in ("btn1", "door1")


async def test_press_counter_is_stored_only_after_its_readings_are_handled(tmp_path) -> None:
    """A gateway killed between decoding a press and committing its alert loses no press.

    The counter is advanced in the store when the consumer comes back for more (its alert
    is committed by then); killed before that, the button's repeat of the same advert is
    accepted by the restarted gateway.
    """
    path = tmp_path / "a.db"
    with Store(path) as s1:
        d1 = driver(s1)
        d1.on_advertisement(advert(SHELLY_MAC, SHELLY_PRESS))
        stream = d1.readings()
        first = await anext(stream)
        assert (first.kind, first.value) == (ReadingKind.BUTTON, "press")
        # Killed here: the reading was handed over, its alert not yet committed.
        assert s1.counter(counter_name(SHELLY_MAC), -1) == -1
        # The same advert again in this process is a duplicate, not a second press.
        assert await d1.process(advert(SHELLY_MAC, SHELLY_PRESS), commit_counter=False) == []
        await stream.aclose()
    with Store(path) as s2:
        d2 = driver(s2)
        d2.on_advertisement(advert(SHELLY_MAC, SHELLY_PRESS))
        stream = d2.readings()
        again = await anext(stream)
        assert (again.kind, again.value) == (ReadingKind.BUTTON, "press")
        assert (await anext(stream)).kind is ReadingKind.BATTERY
        # Handled: asking for more stores the counter before waiting for the next advert.
        waiting = asyncio.ensure_future(anext(stream))
        for _ in range(200):
            if s2.counter(counter_name(SHELLY_MAC), -1) == 442:
                break
            await asyncio.sleep(0.01)
        assert s2.counter(counter_name(SHELLY_MAC), -1) == 442
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await stream.aclose()
    with Store(path) as s3:  # and from then on the old advert is no new press
        d3 = driver(s3)
        out = await d3.process(advert(SHELLY_MAC, SHELLY_PRESS))
        assert [r.kind for r in out] == [ReadingKind.RSSI]  # a sign of life, no press
        assert d3.counters.duplicates == 1
