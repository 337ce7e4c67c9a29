"""`anxin serial`: what is on a serial port, and what it says (installer tools)."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import sys
import time
from typing import Any

from drivers.serial.probe import DEFAULT_BAUDS, probe
from drivers.serial.protocol import PROTOCOLS
from gateway.errors import DeviceUnavailableError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serial", help="serial sensors: probe a port, watch what a device sends")
    ssub = p.add_subparsers(dest="serial_command", metavar="ACTION", required=True)
    pr = ssub.add_parser(
        "probe",
        help="open a port, try the known protocols and baud rates, say what is attached",
    )
    pr.add_argument(
        "port",
        metavar="PORT",
        help="device path (prefer /dev/serial/by-id/...), socket://HOST:PORT or loop://",
    )
    pr.add_argument(
        "--baud", type=int, action="append", metavar="N",
        help=f"baud rate to try (repeatable; default {', '.join(map(str, DEFAULT_BAUDS))})",
    )
    pr.add_argument("--seconds", type=float, default=1.5,
                    help="how long to listen at each baud rate (default 1.5)")
    pr.add_argument("--ask", action="store_true",
                    help="also send harmless queries (RFLink PING, LD2410 firmware version)")
    pr.add_argument("--json", action="store_true", help="print the result as JSON")
    pr.set_defaults(func=_probe)

    li = ssub.add_parser(
        "listen",
        help="print what a device sends, frame by frame (walk tests; 433 MHz addresses to pair)",
    )
    li.add_argument("port", metavar="PORT", help="device path, socket://HOST:PORT or loop://")
    li.add_argument("--protocol", required=True, choices=sorted(PROTOCOLS),
                    help="the device's protocol (see `anxin serial probe`)")
    li.add_argument("--baud", type=int, help="baud rate (default: the protocol's)")
    li.add_argument("--seconds", type=float, default=0.0,
                    help="stop after this many seconds (default: run until Ctrl-C)")
    li.add_argument("--count", type=int, default=0,
                    help="stop after this many frames (default: no limit)")
    li.set_defaults(func=_listen)


def _probe(args: argparse.Namespace) -> int:
    result = probe(args.port, bauds=tuple(args.baud or DEFAULT_BAUDS), seconds=args.seconds,
                   ask=args.ask)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    elif result.protocol is None:
        print(f"{result.port}: nothing recognised")
        for a in result.attempts:
            print(f"  {a.baud} baud: {a.bytes_read} bytes, rejected {a.rejected or 'none'}")
        print("  (is it powered? TX/RX swapped? an RFLink stays quiet until radio traffic:"
              " try --ask)", file=sys.stderr)
    else:
        at = f" at {result.baud} baud" if result.baud else ""
        print(f"{result.port}: {result.protocol}{at} ({result.description}), "
              f"{result.frames} frames")
        for s in result.samples:
            print(f"  {s}")
        print(f'  config: protocol = "{result.protocol}"'
              + (f", baud = {result.baud}" if result.baud else ""))
    return 0 if result.protocol else 1


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {"frame": type(obj).__name__}
        out.update({f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)})
        address = getattr(obj, "address", None)
        if isinstance(address, str):
            out["address"] = address  # what [[sensors]] address = ... takes for this device
        return out
    if isinstance(obj, enum.Enum):
        return obj.name.lower()
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, tuple | list):
        return [_plain(x) for x in obj]
    return obj


def _listen(args: argparse.Namespace) -> int:
    import serial

    spec = PROTOCOLS[args.protocol]
    framer = spec.framer()
    try:
        port = serial.serial_for_url(args.port, baudrate=args.baud or spec.baud, timeout=0.2)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise DeviceUnavailableError(f"{args.port}: {exc}") from exc
    deadline = time.monotonic() + args.seconds if args.seconds > 0 else None
    shown = 0
    try:
        while deadline is None or time.monotonic() < deadline:
            data = port.read(max(1, min(port.in_waiting, 4096)))
            if not data:
                continue
            for frame in framer.feed(data):
                print(json.dumps(_plain(frame), ensure_ascii=False), flush=True)
                shown += 1
                if args.count and shown >= args.count:
                    return 0
            for err in framer.pop_errors():
                print(f"rejected: {err.reason} raw={err.raw.hex()}", file=sys.stderr, flush=True)
    except (serial.SerialException, OSError) as exc:
        raise DeviceUnavailableError(f"{args.port}: {exc}") from exc
    finally:
        port.close()
    return 0
