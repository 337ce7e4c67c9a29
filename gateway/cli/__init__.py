"""The `anxin` command: a thin layer over the library.

Each sub-command lives in its own module with ``register(subparsers)``; the module list
below is the whole command tree. A sub-command without help text fails the test suite.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.errors import AnxinError

COMMAND_MODULES: tuple[str, ...] = (
    "gateway.cli.config_cmd",
    "gateway.cli.run_cmd",
    "gateway.cli.hil_cmd",
    "gateway.cli.demo_cmd",
    "gateway.cli.db_cmd",
    "gateway.cli.uplink_cmd",
    "gateway.cli.ble_cmd",
    "gateway.cli.routine_cmd",
    "gateway.cli.serial_cmd",
    "gateway.cli.fall_cmd",
    "gateway.cli.notify_cmd",
    "gateway.cli.provision_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anxin",
        description="Anxin (安心) gateway: sensors in, alerts out to the care platform.",
    )
    parser.add_argument("--version", action="version", version=f"anxin {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except AnxinError as exc:
        print(f"anxin: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
