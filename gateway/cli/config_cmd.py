"""`anxin config check`: validate a config and print it with secrets masked."""

from __future__ import annotations

import argparse
import json
import os
import sys

from gateway import config
from gateway.clock import RIG_CLOCK_VARS


def add_config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        help=f"config file (default $ANXIN_CONFIG or {config.DEFAULT_PATH})",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="check and show the gateway configuration")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = csub.add_parser(
        "check", help="validate the config; print the effective config, secrets masked"
    )
    add_config_arg(check)
    check.add_argument("--json", action="store_true", help="print JSON instead of TOML-like text")
    check.set_defaults(func=_check)
    ref = csub.add_parser("reference", help="print the config reference (Markdown) from the code")
    ref.set_defaults(func=_reference)


def _check(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    data = config.to_dict(cfg)
    rig = sorted(v for v in RIG_CLOCK_VARS if os.environ.get(v))
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        _print_tree(data)
        if not rig:
            print(f"\n# OK: {cfg.source}: {len(cfg.rooms)} rooms, {len(cfg.sensors)} sensors")
    if rig:
        # A test rig's time machine must never reach a real home: the check fails.
        print(f"ERROR: {', '.join(rig)} set: this gateway would run on a TEST RIG CLOCK "
              "(scaled, fake wall time). Unset it for a real home.", file=sys.stderr)
        return 1
    return 0


def _print_tree(data: dict[str, object], prefix: str = "") -> None:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict | list)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict | list)}
    for k, v in scalars.items():
        print(f"{k} = {json.dumps(v, ensure_ascii=False)}")
    for k, v in tables.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            print(f"\n[{name}]")
            _print_tree(v, prefix=f"{name}.")
        else:
            for item in v:
                print(f"\n[[{name}]]")
                if isinstance(item, dict):
                    _print_tree(item, prefix=f"{name}.")


def _reference(args: argparse.Namespace) -> int:
    print(config.reference_markdown(), end="")
    return 0
