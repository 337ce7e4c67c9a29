"""Run one firmware in real time as a process, for rigs and manual tests.

    python -m firmware_stubs.host bedpad --pty            # prints the pty path, then streams
    python -m firmware_stubs.host button --flash /tmp/btn --mac A4:C1:38:00:00:01

stdout: the first line is ``{"pty": "/dev/pts/N"}`` when ``--pty`` is given; then one JSON
line per advert (``{"advert": {...}}``, service data as hex by 128-bit UUID) and per GATT
notification (``{"notify": {...}}``). stdin takes stimuli, one per line:

    pin 3 0          drive GPIO3 low (press a button, close a reed); "pin 3 release" lets go
    adc 4 1600000    the voltage at GPIO4, in microvolts
    connect 247      a central connects with that ATT MTU; "disconnect" drops it
    accel FILE       the accelerometer (ADXL345) replays FILE from its next sample: one
                     "x y z" line of counts per sample at the part's data rate; then it
                     holds the last one (a rig replays SisFall through the pendant this way)
    wait 500         apply the next commands 500 ms of firmware time later
    quit             power off (also when stdin closes, after the waits before it)
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path
from typing import Any

from .bluetooth import HostAdvert, Notification
from .board import Board, PowerOff


class AccelPlayer:
    """An ADXL345 source: ``rest`` until told to play a recording, then its samples, then its last."""

    def __init__(self, rest: tuple[int, int, int]) -> None:
        self.rest = rest
        self.values: list[tuple[int, int, int]] = []
        self.first = 0
        self.produced = 0

    def __call__(self, i: int) -> tuple[int, int, int]:
        self.produced = i + 1
        k = i - self.first
        if 0 <= k < len(self.values):
            return self.values[k]
        if self.values and k >= len(self.values):
            return self.values[-1]
        return self.rest

    def play(self, path: Path) -> None:
        rows = [tuple(int(v) for v in line.split()) for line in path.read_text(encoding="ascii").splitlines()
                if line.strip()]
        if any(len(r) != 3 for r in rows):
            raise ValueError(f"{path}: expected 'x y z' counts per line")
        self.values = [(r[0], r[1], r[2]) for r in rows]
        self.first = self.produced


class RealtimeBoard(Board):
    """A board whose sleeps take real time, and which applies stdin commands between them."""

    def __init__(self, *args: Any, speed: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.speed = speed
        self.accel: AccelPlayer | None = None
        self.commands: queue.Queue[str] = queue.Queue()
        self.until_ms: int | None = None
        self.hold_until_ms = 0

    def sleep_ms(self, ms: int) -> None:
        time.sleep(ms / 1000 / self.speed)
        super().sleep_ms(ms)
        while self.now_ms >= self.hold_until_ms and not self.commands.empty():
            self.apply(self.commands.get_nowait())
        if self.until_ms is not None and self.now_ms >= self.until_ms:
            raise PowerOff

    def apply(self, line: str) -> None:
        words = line.split()
        if not words:
            return
        match words:
            case ["pin", pin, "release"]:
                self.pin(int(pin)).release()
            case ["pin", pin, level]:
                self.pin(int(pin)).drive(int(level))
            case ["adc", pin, microvolts]:
                self.set_adc_uv(int(pin), int(microvolts))
            case ["connect", mtu]:
                self.ble_connect(int(mtu))
            case ["connect"]:
                self.ble_connect()
            case ["disconnect"]:
                self.ble_disconnect()
            case ["accel", path] if self.accel is not None:
                try:
                    self.accel.play(Path(path))
                except (OSError, ValueError) as exc:
                    print(json.dumps({"error": f"accel: {exc}"}), flush=True)
            case ["wait", ms]:
                self.hold_until_ms = self.now_ms + int(ms)
            case ["quit"]:
                raise PowerOff
            case _:
                print(json.dumps({"error": f"unknown command: {line.strip()}"}), flush=True)


def _emit(kind: str, obj: HostAdvert | Notification) -> None:
    if isinstance(obj, HostAdvert):
        body: dict[str, Any] = {
            "t_ms": obj.t_ms, "mac": obj.mac, "name": obj.name, "connectable": obj.connectable,
            "service_data": {k: v.hex() for k, v in obj.service_data.items()},
            "service_uuids": list(obj.service_uuids),
        }
    else:
        body = {"t_ms": obj.t_ms, "uuid": obj.uuid, "data": obj.data.hex()}
    print(json.dumps({kind: body}), flush=True)


def _stdin(board: RealtimeBoard) -> None:
    for line in sys.stdin:
        board.commands.put(line)
    board.commands.put("quit")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m firmware_stubs.host", description=__doc__.split("\n")[0])
    p.add_argument("device", choices=["button", "door", "bedpad", "pendant"], help="which firmware to run")
    p.add_argument("--flash", type=Path, help="directory standing for the board's flash (kept across runs)")
    p.add_argument("--mac", default="A4:C1:38:00:00:01", help="the board's BLE address")
    p.add_argument("--pty", action="store_true", help="connect UART1 to a new pseudo-terminal; print its path")
    p.add_argument("--adc-uv", type=int, default=1_600_000, help="initial voltage at GPIO4 (battery or mat)")
    p.add_argument("--seconds", type=float, help="power off after this long (default: run until stdin closes)")
    p.add_argument("--boot-after", type=float, default=0.0,
                   help="seconds to wait before power-up (time to open the pty: pyserial flushes on open)")
    p.add_argument("--speed", type=float, default=1.0, help="time factor (2 = twice as fast as real time)")
    p.add_argument("--accel-rest", default="0,0,256", metavar="X,Y,Z",
                   help="pendant: the accelerometer's reading at rest, in counts (default 0,0,256: 1 g on z)")
    args = p.parse_args(argv)

    flash = args.flash or Path(tempfile.mkdtemp(prefix=f"anxin-{args.device}-"))
    board = RealtimeBoard(flash, mac=args.mac, speed=args.speed)
    board.set_adc_uv(4, args.adc_uv)
    board.on_advert.append(lambda a: _emit("advert", a))
    board.on_notify.append(lambda n: _emit("notify", n))
    if args.device == "pendant":
        x, y, z = (int(v) for v in args.accel_rest.split(","))
        board.accel = AccelPlayer((x, y, z))
        board.add_adxl345(board.accel)
    master = slave = -1
    if args.pty:
        master, slave = os.openpty()
        tty.setraw(slave)  # bytes pass unchanged even before the reader sets the mode
        board.attach_uart(1, master)
        print(json.dumps({"pty": os.ttyname(slave)}), flush=True)
    if args.seconds is not None:
        board.until_ms = int(args.seconds * 1000)
    threading.Thread(target=_stdin, args=(board,), daemon=True, name="stdin").start()
    time.sleep(args.boot_after)
    try:
        board.load(args.device).main()
    except PowerOff:
        pass
    except KeyboardInterrupt:
        return 130
    finally:
        for fd in (master, slave):
            if fd >= 0:
                os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
