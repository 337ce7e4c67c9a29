"""The demo's emulated sensors: real firmware on emulated boards, and a radar on a pty.

The button, the door contact, the pendant and the bed pad run their MicroPython firmware
from ``firmware_stubs/`` under the host shim, each as a process (``python -m
firmware_stubs.host``; the pendant through :mod:`gateway.demo.pendant_board`, which also
moves its accelerometer), and speak the real wire protocols:

* button and door: BTHome v2 adverts (the button's AES-CCM encrypted) become
  ``ServiceData`` changes on a mock BlueZ (python-dbusmock on a private system bus,
  :class:`gateway.hil.MockBlueZ`); the gateway's unmodified bleak scanner hears them;
* pendant: its GATT notifications (50 Hz accelerometer frames, "I'm OK") become ``Value``
  changes of characteristics that :class:`GattPeripheral` adds to that mock BlueZ; the
  gateway's pendant driver connects and subscribes with bleak as to a real pendant;
* bed pad: the bed-pad serial protocol on a pseudo-terminal, opened by the gateway's
  serial driver as it would open ``/dev/ttyUSB0``;
* the bathroom radar has no firmware of ours (it is a Seeed MR60FDA2 module):
  :class:`RadarEmulator` writes its frames (``drivers.serial.mr60.encode``) to a pty.

The motion sensors have no firmware here and stay in the replay feed. Where the mock
BlueZ cannot start (no dbus-daemon, no python-dbusmock) or the firmware is not there (an
installed package without the source tree), those sensors fall back to the replay feed
too; :attr:`EmulatedHome.feeds` says which sensor is fed how.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import tty
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from drivers.ble.pendant_protocol import BATTERY_LEVEL_UUID, GATT_SERVICES
from drivers.serial import mr60
from gateway.hil import link_shim_pty, stop_shim

log = logging.getLogger(__name__)

SOURCE_ROOT = Path(__file__).resolve().parent.parent.parent
BUTTON_MAC = "A4:C1:38:DE:00:01"
DOOR_MAC = "A4:C1:38:DE:00:04"
PENDANT_MAC = "A4:C1:38:DE:00:05"
BUTTON_KEY_NAME = "button-demo"
BUTTON_KEY = "7d3a9c0e51b24f86a0c9e2d4b6f81357"  # the demo button's bind key, not a real device's


@dataclass(frozen=True, slots=True)
class BoardSpec:
    """One emulated board: which firmware, which sensor of the demo home it is, its stimuli."""

    device: str  # firmware_stubs/<device>/main.py
    sensor: str  # the sensor id in the demo home
    transport: str  # "ble" (adverts into the mock BlueZ), "gatt" (notifications, ditto), "serial" (UART1 on a pty)
    args: tuple[str, ...]  # extra arguments for the runner
    boot: tuple[str, ...]  # stdin commands at power-up
    # (reading kind, value) of a story step -> the host shim's stdin commands that cause it
    actions: tuple[tuple[str, Any, tuple[str, ...]], ...]
    mac: str = ""
    key: str | None = None
    name: str = ""
    runner: str = "firmware_stubs.host"  # the module run with ``python -m``; it takes the device first

    @property
    def feed(self) -> str:
        return {"ble": "firmware (BLE through mock BlueZ)", "gatt": "firmware (GATT through mock BlueZ)",
                "serial": "firmware (serial on a pty)"}[self.transport]

    def commands(self, kind: str, value: Any) -> tuple[str, ...] | None:
        for k, v, cmds in self.actions:
            if (k, v) == (kind, value):
                return cmds
        return None


# Battery dividers read 1.65 V (3.3 V at the cell). The button is pressed for 120 ms (GPIO3
# to ground); it reports the press 350 ms after the release, once a double press is ruled
# out. The door's reed is closed (GPIO3 low) while the door is shut. The bed pad's mat reads
# 1.6 V with someone on it and 0.2 V empty (see firmware_stubs/bedpad/README.md).
BOARDS: tuple[BoardSpec, ...] = (
    BoardSpec("button", "button-bedside", "ble", ("--adc-uv", "1650000"), (),
              (("button", "press", ("pin 3 0", "wait 120", "pin 3 release")),),
              mac=BUTTON_MAC, key=BUTTON_KEY, name="AX-BTN"),
    BoardSpec("door", "door-front", "ble", ("--adc-uv", "1650000"), ("pin 3 0",),
              (("contact", True, ("pin 3 release",)), ("contact", False, ("pin 3 0",))),
              mac=DOOR_MAC, name="AX-DOOR"),
    # The pendant's central (the gateway) is connected from power-up with an ATT MTU of 247:
    # 10 samples a notification. "I'm OK" is GPIO3 to ground; the wearer sits, walks, falls.
    # Its LiPo reads 3.9 V through the divider (75 %).
    BoardSpec("pendant", "pendant", "gatt", ("--adc-uv", "1950000"), ("connect 247",),
              (("activity", "sit", ("activity sit",)), ("activity", "walk", ("activity walk",)),
               ("activity", "fall", ("activity fall",)), ("cancel", True, ("pin 3 0", "wait 100", "pin 3 release"))),
              mac=PENDANT_MAC, name="Anxin Pendant", runner="gateway.demo.pendant_board"),
    BoardSpec("bedpad", "bed-pad", "serial", ("--adc-uv", "1600000", "--pty", "--boot-after", "2"), (),
              (("in_bed", False, ("adc 4 200000",)), ("in_bed", True, ("adc 4 1600000",)))),
)


def firmware_available() -> bool:
    """The firmware and its host shim ship in the source tree, not in an installed package."""
    return (SOURCE_ROOT / "firmware_stubs" / "host" / "__main__.py").is_file()


class DemoBoard:
    """A firmware process. Its adverts reach the mock BlueZ only once the air is open
    (:meth:`go_live`): what a board says while booting is not part of the story."""

    def __init__(self, spec: BoardSpec, work: Path, env: dict[str, str], log_file: IO[bytes],
                 bluez: Any = None) -> None:
        self.spec, self.bluez = spec, bluez
        self.gatt: GattPeripheral | None = None
        flash = work / f"flash-{spec.device}"
        flash.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", spec.runner, *([spec.device] if spec.runner == "firmware_stubs.host" else []),
               "--flash", str(flash), *spec.args]
        if spec.transport in ("ble", "gatt"):
            cmd += ["--mac", spec.mac]
        if spec.transport == "ble":
            # heartbeats every 10 minutes: only the story's changes go on air during the demo
            cfg = f"HEARTBEAT_S = 600\nNAME = {spec.name!r}\n"
            if spec.key:
                cfg += f"KEY = {spec.key!r}\n"
            (flash / "config.py").write_text(cfg, encoding="utf-8")
        self.port = work / f"tty-{spec.device}"
        self.adverts = 0
        self.notifications = 0
        self.live = False
        self.proc = subprocess.Popen(cmd, cwd=SOURCE_ROOT, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log_file)
        self._reader: threading.Thread | None = None
        if spec.boot:
            self.send(spec.boot)

    async def start(self) -> None:
        """Wait for the pty (serial), then read stdout in a thread."""
        assert self.proc.stdout is not None
        if self.spec.transport == "serial":
            await link_shim_pty(self.proc, self.spec.device, self.port)
        elif self.spec.transport == "gatt" and self.bluez is not None:
            self.gatt = GattPeripheral(self.bluez, self.spec.mac, self.spec.name)
        elif self.bluez is not None:
            self.bluez.add_device(self.spec.mac, self.spec.name)
        self._reader = threading.Thread(target=self._read, name=f"demo-{self.spec.device}", daemon=True)
        self._reader.start()

    def go_live(self) -> None:
        self.live = True

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if not isinstance(msg, dict):
                continue
            note = msg.get("notify")
            if note and self.gatt is not None:
                self.notifications += 1
                self.gatt.notify(note["uuid"], bytes.fromhex(note["data"]))
                continue
            advert = msg.get("advert")
            if advert and self.bluez is not None and self.live:
                data = {u: bytes.fromhex(h) for u, h in advert.get("service_data", {}).items()}
                with contextlib.suppress(Exception):  # the bus going away at the end is not a failure
                    self.bluez.push(advert["mac"], data)
                    self.adverts += 1

    def send(self, commands: tuple[str, ...]) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.write("".join(c + "\n" for c in commands).encode())
            self.proc.stdin.flush()

    async def close(self) -> None:
        await stop_shim(self.proc, self._reader)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.gatt is not None:
            await asyncio.to_thread(self.gatt.close)


class GattPeripheral:
    """The pendant's GATT server on the mock BlueZ, for bleak to connect to and subscribe.

    The pendant service (accelerometer and "I'm OK" characteristics,
    ``drivers/ble/pendant_protocol``) and the standard Battery service go into the rig's mock
    BlueZ (``gateway.hil.MockBlueZ.add_gatt``, shared with the HIL pendant steps); each
    notification of the firmware becomes a ``Value`` change, what bluetoothd does for a
    subscribed characteristic.
    While the pendant is not connected it is "seen" once a second (an RSSI change), so a
    scan finds it.
    """

    def __init__(self, bluez: Any, mac: str, name: str) -> None:
        self.bluez = bluez
        self.mac = mac
        bluez.add_device(mac, name)
        bluez.add_gatt(mac, GATT_SERVICES)  # the rig's GATT database (gateway.hil.MockBlueZ)
        bluez.notify(mac, BATTERY_LEVEL_UUID, b"\x50")
        self._stop = threading.Event()
        self._beacon = threading.Thread(target=self._seen, name="demo-pendant-beacon", daemon=True)
        self._beacon.start()

    def _seen(self) -> None:
        rssi = -58
        while not self._stop.wait(1.0):
            rssi = -58 if rssi != -58 else -59
            with contextlib.suppress(Exception):  # the bus going away at the end is not a failure
                self.bluez.push(self.mac, {}, rssi=rssi)

    def notify(self, uuid: str, data: bytes) -> None:
        with contextlib.suppress(Exception):  # the bus going away at the end is not a failure
            self.bluez.notify(self.mac, uuid, data)

    def close(self) -> None:
        self._stop.set()
        self._beacon.join(5)


class RadarEmulator:
    """The bathroom's MR60FDA2 fall radar on a pty: presence every 2 s, then the fall.

    Its frames are the module's own format (``drivers.serial.mr60.encode``); the gateway's
    serial driver opens the pty's link as it would the radar's USB-serial adapter.
    """

    sensor = "radar-bath"

    def __init__(self, work: Path) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # bytes pass unchanged before the driver sets the mode
        self.port = work / "tty-radar"
        self.port.symlink_to(os.ttyname(self.slave))
        self.frame_id = 0
        self.fall = False
        self.frames = 0
        self._task: asyncio.Task[None] | None = None

    def _write(self, frame_type: int, data: bytes) -> None:
        self.frame_id = (self.frame_id + 1) & 0xFFFF
        with contextlib.suppress(OSError):
            os.write(self.master, mr60.encode(frame_type, data, self.frame_id))
            self.frames += 1

    async def _run(self) -> None:
        while True:
            self._write(mr60.TYPE_PRESENCE, b"\x01")
            self._write(mr60.TYPE_FALL, b"\x01" if self.fall else b"\x00")
            await asyncio.sleep(2.0)

    def go_live(self) -> None:
        self._task = asyncio.create_task(self._run())

    def act(self, kind: str, value: Any) -> bool:
        if kind != "fall":
            return False
        self.fall = bool(value)
        self._write(mr60.TYPE_FALL, b"\x01" if self.fall else b"\x00")
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class EmulatedHome:
    """Starts what can be emulated here, and says for each sensor how it is fed.

    ``feeds`` maps a sensor id to ``"firmware (BLE through mock BlueZ)"``, ``"firmware
    (serial on a pty)"`` or ``"emulator (serial on a pty)"``; sensors not in it are replayed.
    """

    def __init__(self, work: Path, *, emulate: bool = True, ble: bool = True) -> None:
        self.work = work
        self.want_firmware, self.want_ble = emulate, ble
        self.boards: dict[str, DemoBoard] = {}
        self.radar: RadarEmulator | None = None
        self.bluez: Any = None
        self.feeds: dict[str, str] = {}
        self.notes: list[str] = []
        self._log = (work / "firmware.log").open("ab")
        self._env_before: str | None = None

    @property
    def ble_live(self) -> bool:
        """Whether a BTHome board (button, door) runs: the gateway's BLE scanner has work."""
        return any(b.spec.transport == "ble" for b in self.boards.values())

    async def start(self) -> None:
        if not self.want_firmware:
            return  # everything replayed (``anxin demo --replay-only``)
        self.radar = RadarEmulator(self.work)
        self.feeds[self.radar.sensor] = "emulator (serial on a pty)"
        if not firmware_available():
            self.notes.append("the firmware (firmware_stubs/) is not here: "
                              "button, door, pendant and bed pad are replayed")
            return
        env = {**os.environ, "PYTHONPATH": str(SOURCE_ROOT)}
        specs = list(BOARDS)
        if any(s.transport in ("ble", "gatt") for s in specs):
            reason = self._start_bluez() if self.want_ble else "turned off"
            if reason:
                specs = [s for s in specs if s.transport not in ("ble", "gatt")]
                self.notes.append(f"no mock BlueZ ({reason}): the button, the door and the pendant are replayed, "
                                  "not their firmware")
        for spec in specs:
            bluez = self.bluez if spec.transport in ("ble", "gatt") else None
            board = DemoBoard(spec, self.work, env, self._log, bluez)
            try:
                await board.start()
            except Exception as exc:  # noqa: BLE001 - a board that cannot start is replayed instead
                await board.close()
                self.notes.append(f"{spec.device} firmware did not start ({exc}): {spec.sensor} is replayed")
                continue
            self.boards[spec.sensor] = board
            self.feeds[spec.sensor] = spec.feed

    def _start_bluez(self) -> str:
        """Start the mock BlueZ and point this process's bleak at it; the reason if it cannot."""
        from gateway import hil

        # dbus-daemon inherits stderr and complains there about limits it may not raise
        # without root; its words go to the firmware log, not into the demo's terminal.
        saved = os.dup(2)
        os.dup2(self._log.fileno(), 2)
        try:
            self.bluez = hil.MockBlueZ()
        except Exception as exc:  # noqa: BLE001 - any failure to start it means: replay instead
            return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        self._env_before = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = self.bluez.address
        return ""

    def go_live(self) -> None:
        for board in self.boards.values():
            board.go_live()
        if self.radar is not None:
            self.radar.go_live()

    def act(self, sensor: str, kind: str, value: Any) -> bool:
        """Cause a story step on the emulated device; False when that sensor is replayed."""
        if self.radar is not None and sensor == self.radar.sensor:
            return self.radar.act(kind, value)
        board = self.boards.get(sensor)
        cmds = board.spec.commands(kind, value) if board is not None else None
        if board is None or cmds is None:
            return False
        board.send(cmds)
        return True

    def handles(self, sensor: str, kind: str, value: Any) -> bool:
        if self.radar is not None and sensor == self.radar.sensor:
            return kind == "fall"
        board = self.boards.get(sensor)
        return board is not None and board.spec.commands(kind, value) is not None

    async def close(self) -> None:
        for board in self.boards.values():
            await board.close()
        if self.radar is not None:
            await self.radar.close()
        if self.bluez is not None:
            # bleak keeps its bus connection after the scan stopped and warns when it drops
            logging.getLogger("bleak.backends.bluezdbus.manager").setLevel(logging.ERROR)
            await asyncio.to_thread(self.bluez.close)
            if self._env_before is None:
                os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
            else:
                os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = self._env_before
        self._log.close()
