"""`anxin notify test`: check the modem and send a test message through every notifier."""

from __future__ import annotations

import argparse
import asyncio
import json

from gateway import config
from gateway.cli.config_cmd import add_config_arg
from gateway.clock import Clock
from gateway.errors import AnxinError, ConfigError
from gateway.model import Alert, AlertType
from gateway.notify.channels import AppriseNotifier, SmsNotifier
from gateway.notify.sms import Modem, mask_number


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("notify", help="local notifiers (SMS modem, apprise): test them on site")
    nsub = p.add_subparsers(dest="notify_command", metavar="ACTION", required=True)
    t = nsub.add_parser(
        "test",
        help="show the modem's SIM, network and signal, then send a test message through "
        "every configured notifier",
    )
    add_config_arg(t)
    t.add_argument("--to", action="append", metavar="NUMBER",
                   help="text this number instead of the configured recipients (repeatable)")
    t.add_argument("--status-only", action="store_true",
                   help="only ask the modem about SIM, network and signal; send nothing")
    t.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    t.set_defaults(func=_test)


def _test(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    sms = cfg.notify.sms
    if not sms.port and not cfg.secrets.notify_urls:
        raise ConfigError("no notifier configured: set [notify.sms] port and recipients, or "
                          "notify_urls in the secrets file")
    result: dict[str, object] = {}
    failed = False
    if sms.port:
        modem = Modem(sms.port, baudrate=sms.baudrate, timeout_s=sms.timeout_s,
                      pin=cfg.secrets.sms_pin)
        try:
            status = modem.status()
        except AnxinError as exc:
            print(f"modem {sms.port}: {exc}")
            result["modem"] = {"ok": False, "error": str(exc)}
            failed = True
        else:
            print(f"modem {sms.port}: {status.line()}")
            result["modem"] = {"ok": status.can_send, "sim": status.sim,
                               "registration": status.registration, "signal": status.signal,
                               "operator": status.operator}
            failed = failed or not status.can_send
    if not args.status_only:
        alert = Alert.raise_(AlertType.TEST, Clock().now())
        if sms.port and not failed:
            notifier = SmsNotifier(cfg)
            notifier.recipients = tuple(args.to or sms.recipients)
            try:
                asyncio.run(notifier.notify(alert, attempt=1))
            except AnxinError as exc:
                print(f"sms: FAILED: {exc}")
                failed = True
            sent = [mask_number(n) for n, _ in notifier.sent]
            for number in sent:
                print(f"sms: sent to {number}")
            result["sms"] = {"sent": sent}
        if cfg.secrets.notify_urls:
            try:
                asyncio.run(AppriseNotifier(cfg, cfg.secrets.notify_urls).notify(alert, attempt=1))
            except AnxinError as exc:
                print(f"apprise: FAILED: {exc}")
                result["apprise"] = {"ok": False, "error": str(exc)}
                failed = True
            else:
                print(f"apprise: sent to {len(cfg.secrets.notify_urls)} service(s)")
                result["apprise"] = {"ok": True}
    result["ok"] = not failed
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    return 1 if failed else 0
