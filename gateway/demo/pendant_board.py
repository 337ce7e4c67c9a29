"""The pendant's firmware on an emulated board for the demo, with a wearer to move it.

    python -m gateway.demo.pendant_board --flash DIR --mac A4:C1:38:DE:00:05

Like ``python -m firmware_stubs.host pendant`` (run from the source tree: the firmware and
its host shim are not part of the installed package), with one more stdin command,
``activity sit|walk|fall``: what the ADXL345 on the wearer's waist feels from then on
(:func:`gateway.demo.story.pendant_sample`, at the part's 50 Hz). The other commands are
the shim's (``connect 247``, ``pin 3 0``, ``wait 100``, ...). GATT notifications come out
on stdout as ``{"notify": {"uuid": ..., "data": HEX}}`` lines.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import threading
from pathlib import Path
from typing import Any

from gateway.demo.story import SITTING_G, pendant_sample

RATE_HZ = 50
COUNTS_PER_G = 256  # the ADXL345 at full resolution: 3.9 mg per count


class Wearer:
    """The ADXL345's source: sample ``i`` of what the current activity feels like."""

    def __init__(self) -> None:
        self.activity = "sit"
        self.since = 0  # the sample index the activity started at
        self.adxl: Any = None

    def set(self, activity: str) -> None:
        self.activity = activity
        self.since = int(self.adxl.produced) if self.adxl is not None else 0

    def __call__(self, i: int) -> tuple[int, int, int]:
        t = (i - self.since) / RATE_HZ
        if self.activity == "walk":
            g = pendant_sample(t, None)
        elif self.activity == "fall":
            g = pendant_sample(t, 0.0)
        else:
            g = SITTING_G
        x, y, z = (round(v * COUNTS_PER_G) for v in g)
        return (x, y, z)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.demo.pendant_board", description=__doc__.split("\n")[0])
    p.add_argument("--flash", type=Path, required=True, help="directory standing for the board's flash")
    p.add_argument("--mac", required=True, help="the board's BLE address")
    p.add_argument("--adc-uv", type=int, default=1_650_000, help="voltage at the battery divider (GPIO4)")
    args = p.parse_args(argv)

    # imported by name: the host shim lives beside the firmware, in the source tree only
    host: Any = importlib.import_module("firmware_stubs.host.__main__")
    power_off: Any = importlib.import_module("firmware_stubs.host.board").PowerOff
    board = host.RealtimeBoard(args.flash, mac=args.mac)
    board.set_adc_uv(4, args.adc_uv)
    wearer = Wearer()
    wearer.adxl = board.add_adxl345(wearer)
    shim_apply = board.apply

    def apply(line: str) -> None:
        words = line.split()
        if len(words) == 2 and words[0] == "activity":
            wearer.set(words[1])
        else:
            shim_apply(line)

    board.apply = apply

    def emit(note: Any) -> None:
        print(json.dumps({"notify": {"t_ms": note.t_ms, "uuid": note.uuid, "data": note.data.hex()}}), flush=True)

    board.on_notify.append(emit)

    def read_stdin() -> None:
        for line in sys.stdin:
            board.commands.put(line)
        board.commands.put("quit")

    threading.Thread(target=read_stdin, daemon=True, name="stdin").start()
    try:
        board.load("pendant").main()
    except power_off:
        pass
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
