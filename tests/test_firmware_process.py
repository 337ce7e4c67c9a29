"""``python -m firmware_stubs.host``: the firmware as a real-time process, for rigs."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

from firmware_helpers import KEY_HEX

from drivers.ble.protocol import BTHOME_UUID, decode

ROOT = Path(__file__).resolve().parent.parent


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "firmware_stubs.host", *args],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def read_until(fd: int, n: int, timeout_s: float = 20.0) -> bytes:
    out = b""
    while len(out) < n:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        assert ready, f"only {out.hex()} arrived"
        out += os.read(fd, 256)
    return out


def test_bed_pad_process_writes_frames_to_its_pty() -> None:
    with spawn("bedpad", "--pty", "--speed", "4") as proc:
        try:
            first = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
            fd = os.open(first["pty"], os.O_RDONLY | os.O_NOCTTY)
            try:
                data = read_until(fd, 14 + 11)  # HELLO then the first STATUS
            finally:
                os.close(fd)
            proc.stdin.close()  # type: ignore[union-attr]  # end of stimuli: power off
            assert proc.wait(30) == 0
        finally:
            proc.kill()
    assert data[:2] == b"\xa5\x5a"
    assert data[4] == 0  # HELLO seq 0
    assert data[3] == 0x02
    assert data[14:16] == b"\xa5\x5a"
    assert data[17] == 0x01  # STATUS


def test_button_process_takes_stimuli_on_stdin(tmp_path: Path) -> None:
    (tmp_path / "config.py").write_text(f'KEY = "{KEY_HEX}"\n')
    script = "wait 300\npin 3 0\nwait 150\npin 3 1\nadc 4 1500000\nwait 1000\n"
    with spawn("button", "--flash", str(tmp_path), "--mac", "A4:C1:38:F0:00:09", "--speed", "4") as proc:
        out, err = proc.communicate(script, 60)
    assert proc.returncode == 0, err
    adverts = [json.loads(line)["advert"] for line in out.splitlines()]
    key = bytes.fromhex(KEY_HEX)
    frames = [decode(bytes.fromhex(a["service_data"][BTHOME_UUID]), a["mac"], bindkey=key) for a in adverts]
    assert [f.counter for f in frames] == list(range(len(frames)))
    assert [(f.events, f.measurement("battery").value) for f in frames] == [  # type: ignore[union-attr]
        ((), 60),  # power-up
        ((("button", "press"),), 20),  # 1.5 V at the divider by then: 3.0 V, 20 %
    ]
