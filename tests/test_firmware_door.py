"""The door contact firmware: reed switch -> BTHome opening -> CONTACT readings at the gateway."""

from __future__ import annotations

from pathlib import Path

from firmware_helpers import DOOR, DOOR_KEYED, DOOR_MAC, KEY_HEX, advert, ble_driver, board

from drivers.ble.protocol import BTHOME_UUID
from firmware_stubs.host import Board
from gateway.model import ReadingKind
from gateway.store import Store


def run_door(flash: Path, config: str = "") -> tuple[Board, list[int]]:
    """Power up with the door shut, open it, close it, then wait for a heartbeat."""
    b = board(flash, DOOR_MAC, config + "HEARTBEAT_S = 60\n")
    b.pin(3).drive(0)  # magnet at the reed: contact closed, door shut
    app = b.load("door").App()
    marks = []
    b.run(app, 1000)
    marks.append(len(b.adverts))
    b.pin(3).release()  # magnet gone: the pull-up reads 1, door open
    b.run(app, 1000)
    marks.append(len(b.adverts))
    for level in (0, 1, 0):  # the door bangs shut and the reed chatters
        b.pin(3).drive(level)
        b.advance(3)
    b.run(app, 1000)
    marks.append(len(b.adverts))
    b.run(app, 60_000)
    return b, marks


async def contacts(b: Board, sensors: list, store: Store | None = None) -> list[tuple[bool, bool]]:
    drv = ble_driver(sensors, store)
    out = []
    for a in b.adverts:
        for r in await drv.process(advert(a)):
            if r.kind is ReadingKind.CONTACT:
                out.append((r.value, a.service_data[BTHOME_UUID][0] & 0x04 != 0))
    assert drv.stats.frames_rejected == 0
    return out


async def test_open_and_close_arrive_as_contact_readings(tmp_path: Path) -> None:
    b, marks = run_door(tmp_path / "flash")
    assert marks == [1, 2, 3]  # power-up, open, close: one advert each, bounces filtered
    assert len(b.adverts) == 4  # and the heartbeat a minute later
    # (value, trigger based): changes are trigger based, the heartbeat periodic.
    assert await contacts(b, [DOOR]) == [(False, False), (True, True), (False, True), (False, False)]
    assert b.adverts[0].name == "AX-DOOR"
    assert b.adverts[0].service_data[BTHOME_UUID][0] & 0x01 == 0  # plain without a key


async def test_encrypted_door_contact(tmp_path: Path, store: Store) -> None:
    b, _ = run_door(tmp_path / "flash", f'KEY = "{KEY_HEX}"\n')
    assert all(a.service_data[BTHOME_UUID][0] & 0x01 for a in b.adverts)
    assert [v for v, _ in await contacts(b, [DOOR_KEYED], store)] == [False, True, False, False]
    assert (tmp_path / "flash" / "bthome.cnt").is_file()
