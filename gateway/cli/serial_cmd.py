"""`anxin serial`: what is on a serial port, and what it says (installer tools)."""

from __future__ import annotations

import argparse
import json
import sys

from drivers.serial.probe import DEFAULT_BAUDS, probe


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
