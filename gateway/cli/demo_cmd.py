"""`anxin demo`: a simulated home against a local broker, in about a minute."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run a simulated home against a local broker and show what the platform gets")
    p.add_argument("--no-tty", action="store_true", help="plain log lines, no colours")
    p.add_argument("--speed", type=float, default=1.0, help="play the story faster (e.g. 2)")
    p.add_argument("--broker", choices=["auto", "mosquitto", "amqtt"], default="auto",
                   help="which local broker to start (default: mosquitto if installed)")
    p.add_argument("--replay-only", action="store_true",
                   help="replay every sensor's readings instead of running the emulated firmware and radar")
    p.add_argument("--record", metavar="FILE", type=Path,
                   help="write every message the platform received to FILE, one JSON line each")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo.run import run_demo

    tty = False if args.no_tty else None
    return asyncio.run(run_demo(out=sys.stdout, tty=tty, speed=args.speed, broker_kind=args.broker,
                                emulate=not args.replay_only, record=args.record))
