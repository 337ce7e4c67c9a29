"""`anxin run`: start the gateway service."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
from pathlib import Path

from gateway import clock as clock_mod
from gateway import config, logs
from gateway.cli.config_cmd import add_config_arg
from gateway.clock import Clock
from gateway.errors import ConfigError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the gateway (what the systemd unit starts)")
    add_config_arg(p)
    p.add_argument("--replay", metavar="FILE", type=Path,
                   help="also play a recorded session (JSON lines of readings)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="replay speed factor; 0 plays as fast as possible (default 1)")
    p.add_argument("--replay-start-at", type=float, metavar="EPOCH_S",
                   help="start the replay at this Unix time (a shared time base for HIL rigs)")
    p.add_argument("--exit-at-end", action="store_true",
                   help="stop when the replay has ended (for tests and rigs)")
    p.add_argument("--no-uplink", action="store_true", help="do not connect to the broker")
    p.add_argument("--no-hardware", action="store_true",
                   help="do not open BLE or serial devices (replay and tests)")
    p.add_argument("--no-ble", action="store_true",
                   help="do not open the BLE adapter; serial ports still open (HIL rigs with emulated serial sensors)")
    p.add_argument("--no-serial", action="store_true",
                   help="do not open serial ports; BLE still opens (HIL rigs with a mock BlueZ)")
    p.add_argument("--db", metavar="PATH", help="override storage.path")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    try:
        # HIL rigs only: a scaled wall clock (ANXIN_RIG_CLOCK_*; docs/hil.md). Refused under systemd.
        rig_clock = clock_mod.rig_clock_from_env(os.environ)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.db:
        cfg = dataclasses.replace(cfg, storage=dataclasses.replace(cfg.storage, path=args.db))
    logs.setup(cfg.logging.level, cfg.logging.format)
    if rig_clock is not None:
        log.warning("TEST RIG CLOCK: %s; not for a real home", rig_clock.describe())
        clock_mod.install(rig_clock)
    try:
        asyncio.run(run_service(cfg, args, rig_clock))
    finally:
        clock_mod.install(None)
    return 0


async def run_service(cfg: config.Config, args: argparse.Namespace, clock: Clock | None = None) -> None:
    from gateway import assemble
    from gateway.service import Service, open_store

    clock = clock or Clock()
    store = open_store(cfg)
    service = Service(
        cfg,
        detectors=assemble.build_detectors(cfg, store, clock),
        uplink_factory=None if args.no_uplink else assemble.uplink_factory(cfg, clock),
        store=store,
        clock=clock,
        stop_when_drivers_done=args.exit_at_end,
    )
    service.drivers = assemble.build_drivers(
        cfg, store, clock, replay=args.replay, replay_speed=args.speed,
        replay_start_at=args.replay_start_at, hardware=not args.no_hardware, on_health=service.submit_alert,
        ble=not args.no_ble, serial=not args.no_serial,
    )
    await service.run()
