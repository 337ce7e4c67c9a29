"""`anxin provision`: install a home's config from the SD card's boot partition (first boot)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.provision import provision


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "provision",
        help="install gateway.toml and secrets from the boot partition into /etc/anxin, "
        "checked first; wipe the secrets from the card (run once by anxin-provision.service)",
    )
    p.add_argument("--from", dest="source", default="/boot/firmware/anxin",
                   help="folder on the card holding gateway.toml (default /boot/firmware/anxin)")
    p.add_argument("--to", dest="target", default="/etc/anxin",
                   help="where the gateway reads its config (default /etc/anxin)")
    p.add_argument("--owner", help="user that must own the secrets (the service's: anxin)")
    p.set_defaults(func=_provision)


def _provision(args: argparse.Namespace) -> int:
    outcome = provision(Path(args.source), Path(args.target), owner=args.owner)
    print(outcome.message, end="")
    return 0 if outcome.ok else 1
