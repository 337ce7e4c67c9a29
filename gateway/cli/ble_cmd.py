"""`anxin ble`: scan for BTHome sensors (pairing, walk tests) and reset a replay counter."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

from gateway import config
from gateway.cli.config_cmd import add_config_arg
from gateway.errors import ConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ble", help="BLE (BTHome) sensors: scan nearby devices, reset counters")
    bsub = p.add_subparsers(dest="ble_command", metavar="ACTION", required=True)
    s = bsub.add_parser(
        "scan",
        help="list nearby BTHome devices: address, model, RSSI, battery, encrypted, paired",
    )
    add_config_arg(s)
    s.add_argument("--seconds", type=float, default=10.0, help="how long to listen (default 10)")
    s.add_argument("--adapter", help="Bluetooth adapter (default: [ble] adapter or hci0)")
    s.add_argument("--json", action="store_true", help="print one JSON object per device")
    s.set_defaults(func=_scan)
    r = bsub.add_parser(
        "reset-counter",
        help="forget a sensor's stored encryption counter (after a battery change reset it)",
    )
    add_config_arg(r)
    r.add_argument("sensor", help="sensor id from the config")
    r.set_defaults(func=_reset_counter)


def _load_optional(path: str | None) -> config.Config | None:
    """The config if there is one: a scan is useful before the config is written."""
    explicit = path or os.environ.get("ANXIN_CONFIG") or None
    if explicit is None and not config.DEFAULT_PATH.exists():
        return None
    return config.load(explicit)


def _scan(args: argparse.Namespace) -> int:
    from drivers.ble.scan import scan

    cfg = _load_optional(args.config)
    adapter = args.adapter or (cfg.ble.adapter if cfg else "hci0")
    results = asyncio.run(
        scan(
            args.seconds,
            adapter=adapter,
            sensors=cfg.sensor_list() if cfg else (),
            keys=cfg.secrets.keys if cfg else {},
        )
    )
    if args.json:
        for r in results:
            print(json.dumps(r.as_dict(), ensure_ascii=False))
        return 0
    print(f"{'ADDRESS':17}  {'MODEL':18}  {'RSSI':>5}  {'BATT':>5}  {'ENC':3}  PAIRED")
    for r in results:
        batt = f"{r.battery_pct:.0f}%" if r.battery_pct is not None else "?"
        rssi = str(r.rssi_dbm) if r.rssi_dbm is not None else "?"
        model = r.model or r.name or "BTHome"
        print(f"{r.address:17}  {model[:18]:18}  {rssi:>5}  {batt:>5}  "
              f"{'yes' if r.encrypted else 'no':3}  {r.paired_as or '-'}")
    print(f"# {len(results)} BTHome device(s) in {args.seconds:g} s on {adapter}")
    return 0


def _reset_counter(args: argparse.Namespace) -> int:
    from drivers.ble.driver import counter_name
    from gateway.store import Store

    cfg = config.load(args.config)
    sensor = cfg.sensor(args.sensor)
    if sensor is None or sensor.transport.value != "ble":
        raise ConfigError(f"no BLE sensor {args.sensor!r} in the config", path=cfg.source)
    with Store(Path(cfg.storage.path)) as store:
        name = counter_name(sensor.address)
        old = store.counter(name, -1)
        store.set_counter(name, -1)
    print(f"{args.sensor}: encryption counter {old} forgotten; the next frame sets it")
    return 0
