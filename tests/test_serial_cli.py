"""`anxin serial probe` against emulated devices on real pseudo-terminals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.serial import bedpad, mr60
from drivers.serial.probe import probe
from tests.conftest import run_cli
from tests.serial_emulator import PtyDevice

pytestmark = pytest.mark.timeout(60)
LD_BOTH = bytes.fromhex("f4 f3 f2 f1 0d 00 02 aa 03 4f 00 64 4c 00 64 32 00 55 00 f8 f7 f6 f5")


@pytest.fixture
def device(tmp_path: Path) -> Iterator[PtyDevice]:
    dev = PtyDevice(tmp_path / "usb-device")
    dev.plug()
    yield dev
    dev.close()


def test_probe_names_an_ld2410(device: PtyDevice) -> None:
    stop = device.stream(b"\x00" + LD_BOTH)
    try:
        out = run_cli("serial", "probe", str(device.link), "--seconds", "0.5")
    finally:
        stop.set()
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert first.startswith(f"{device.link}: ld2410 at 256000 baud (HLK-LD2410 presence radar)")
    assert 'protocol = "ld2410", baud = 256000' in out.stdout


def test_probe_json_tells_mr60bha2_from_fda2(device: PtyDevice) -> None:
    stop = device.stream(mr60.encode(mr60.TYPE_HEART_RATE, bytes.fromhex("00009042")))
    try:
        out = run_cli("serial", "probe", str(device.link), "--seconds", "0.5", "--baud", "115200",
                      "--json")
    finally:
        stop.set()
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (data["protocol"], data["baud"]) == ("mr60bha2", 115200)
    assert data["attempts"][0]["frames"]["mr60fda2"] >= 1


def test_probe_library_bedpad_and_nothing(device: PtyDevice) -> None:
    stop = device.stream(bedpad.encode_status(1, bedpad.BedState.IN, 500))
    try:
        result = probe(str(device.link), bauds=(9600,), seconds=0.4)
    finally:
        stop.set()
    assert (result.protocol, result.baud) == ("bedpad", 9600)
    assert result.frames >= 3


def test_probe_says_nothing_recognised(device: PtyDevice) -> None:
    stop = device.stream(b"\x80\x81\x82 random noise without frames \x90")
    try:
        out = run_cli("serial", "probe", str(device.link), "--seconds", "0.3", "--baud", "9600")
    finally:
        stop.set()
    assert out.returncode == 1
    assert out.stdout.startswith(f"{device.link}: nothing recognised")
    assert "9600 baud:" in out.stdout


def test_probe_missing_port_is_a_clear_error(tmp_path: Path) -> None:
    out = run_cli("serial", "probe", str(tmp_path / "no-such-tty"), "--seconds", "0.1")
    assert out.returncode == 1
    assert "no-such-tty" in out.stderr
    assert "Traceback" not in out.stderr


def test_probe_loop_url_with_ask_sees_only_its_own_queries() -> None:
    result = probe("loop://", seconds=0.2, ask=True)
    assert result.protocol is None


def test_listen_prints_frames_with_their_pairing_address(device: PtyDevice) -> None:
    stop = device.stream(b"20;77;EV1527;ID=0f7499;SWITCH=04;CMD=ON;\r\n20;78;garbage\r\n")
    try:
        out = run_cli("serial", "listen", str(device.link), "--protocol", "rflink",
                      "--count", "2", "--seconds", "20")
    finally:
        stop.set()
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(lines) == 2
    assert lines[0]["frame"] == "RadioEvent"
    assert lines[0]["address"] == "rflink:ev1527:0f7499:04"
    assert lines[0]["active"] is True
    assert lines[1]["frame"] in ("RFLinkInfo", "RadioEvent")
