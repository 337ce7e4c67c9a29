"""`anxin tail` and `anxin send-test-alert`: for installers checking the uplink.

``tail`` subscribes as the platform would and prints what arrives. ``send-test-alert``
commits a ``test`` alert through the store, like any alert, and reports when the broker
acknowledged it and when a subscriber saw it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from datetime import datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway import config
from gateway.cli.config_cmd import add_config_arg
from gateway.clock import Clock
from gateway.errors import UplinkError
from gateway.model import Alert, AlertType, Severity
from gateway.store import MB, Store
from gateway.uplink.client import Uplink, endpoint_from_config
from gateway.uplink.contract import Topics


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tail = sub.add_parser("tail", help="subscribe as the platform would and print what arrives")
    add_config_arg(tail)
    tail.add_argument(
        "--gw", metavar="ID", help="gateway id to follow (default: the config's; + for all)"
    )
    tail.add_argument("--count", type=int, metavar="N", help="exit after N messages")
    tail.add_argument("--timeout", type=float, metavar="S", help="exit after S seconds")
    tail.add_argument("--json", action="store_true", help="print each message as one JSON line")
    tail.set_defaults(func=_tail)

    test = sub.add_parser(
        "send-test-alert", help="commit a test alert and report its delivery to the broker"
    )
    add_config_arg(test)
    test.add_argument(
        "--standalone",
        action="store_true",
        help="send it from this process (when the gateway service is not running)",
    )
    test.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="give up after S seconds (default 30)",
    )
    test.set_defaults(func=_send_test_alert)


# ---------------------------------------------------------------------------- the subscriber


class _Watcher:
    """A platform-side subscriber on paho's own blocking loop (this is a CLI, not the gateway)."""

    def __init__(self, cfg: config.Config, topic: str, client_id: str) -> None:
        ep = endpoint_from_config(cfg)
        self.received: list[tuple[float, str, bytes]] = []
        self.subscribed = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        if ep.username is not None:
            c.username_pw_set(ep.username, ep.password)
        if ep.tls is not None:
            c.tls_set_context(ep.tls)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic, qos=1)
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = self._on_message
        self.client = c
        self.endpoint = ep

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        self.received.append((time.monotonic(), msg.topic, bytes(msg.payload)))

    def connect(self) -> None:
        try:
            self.client.connect(self.endpoint.host, self.endpoint.port, 30)
        except OSError as exc:
            raise UplinkError(
                f"cannot reach {self.endpoint.host}:{self.endpoint.port}: {exc}"
            ) from exc

    def pump(self, seconds: float) -> None:
        self.client.loop(timeout=max(0.01, seconds))


def _tail(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    gw = args.gw or cfg.gateway.id
    topic = f"{cfg.uplink.topic_root}/{gw}/#"
    w = _Watcher(cfg, topic, f"anxin-tail-{int(time.time())}")
    w.connect()
    print(
        f"# listening on {topic} at {w.endpoint.host}:{w.endpoint.port}",
        file=sys.stderr,
        flush=True,
    )
    shown = 0
    deadline = time.monotonic() + args.timeout if args.timeout else None
    try:
        while args.count is None or shown < args.count:
            if deadline is not None and time.monotonic() >= deadline:
                break
            w.pump(0.2)
            while w.received and (args.count is None or shown < args.count):
                _, t, payload = w.received.pop(0)
                print(_json_line(t, payload) if args.json else _pretty(t, payload), flush=True)
                shown += 1
    except KeyboardInterrupt:
        pass
    finally:
        w.client.disconnect()
    return 0


def _json_line(topic: str, payload: bytes) -> str:
    try:
        body: Any = json.loads(payload)
    except ValueError:
        body = payload.decode("utf-8", "replace")
    return json.dumps({"topic": topic, "payload": body}, ensure_ascii=False)


def _pretty(topic: str, payload: bytes) -> str:
    kind = topic.rsplit("/", 2)
    name = kind[-2] + "/" + kind[-1] if kind[-2] in ("cmd", "reply") else kind[-1]
    try:
        m = json.loads(payload)
    except ValueError:
        return f"{name:<10} (not JSON) {payload[:200]!r}"
    if not isinstance(m, dict):
        return f"{name:<10} {m!r}"
    when = _hhmmss(m.get("ts"))
    head = f"{when} {m.get('gw', '?'):<12} {name:<10}"
    if name == "alert":
        sensor = m.get("sensor") or {}
        where = sensor.get("room") or "-"
        return (
            f"{head} {m.get('severity', '?').upper():<8} {m.get('type')} {m.get('state')}"
            f"  room={where} alert={m.get('alert_id')} seq={m.get('seq')}"
        )
    if name == "event":
        readings = m.get("readings") or []
        kinds = sorted({f"{r.get('sensor')}:{r.get('kind')}" for r in readings})
        return f"{head} {len(readings)} readings  {', '.join(kinds[:6])} seq={m.get('seq')}"
    if name == "status":
        return (
            f"{head} {str(m.get('state')).upper()} version={m.get('version')}"
            f" queue={m.get('queue_depth')} uptime={m.get('uptime_s')}s"
        )
    if name == "telemetry":
        return f"{head} queue={m.get('queue_depth')} sensors={len(m.get('sensors') or [])}"
    return f"{head} {json.dumps(m, ensure_ascii=False)[:300]}"


def _hhmmss(ts: Any) -> str:
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00")).strftime("%H:%M:%S")
    except ValueError:
        return "--:--:--"


# ---------------------------------------------------------------------------- test alert


def _send_test_alert(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    return asyncio.run(_send(cfg, standalone=args.standalone, timeout_s=args.timeout))


async def _send(cfg: config.Config, *, standalone: bool, timeout_s: float) -> int:
    topics = Topics(cfg.uplink.topic_root, cfg.gateway.id)
    watcher = _Watcher(cfg, topics.alert, f"{cfg.client_id}-watch")
    watcher.connect()
    start = time.monotonic()
    while not watcher.subscribed.is_set() and time.monotonic() - start < 10:
        watcher.pump(0.1)
    store = Store(
        cfg.storage.path,
        budget_bytes=int(cfg.storage.budget_mb * MB),
        reserve_bytes=int(cfg.storage.reserve_mb * MB),
    ).open()
    try:
        alert = Alert.raise_(
            AlertType.TEST,
            Clock().now(),
            severity=Severity.INFO,
            evidence={"source": "anxin send-test-alert"},
        )
        t0 = time.monotonic()
        row = store.commit_alert(alert)
        committed_ms = (time.monotonic() - t0) * 1000
        print(
            f"committed test alert {alert.id} (message {row.msg_id}, seq {row.seq})"
            f" in {committed_ms:.1f} ms"
        )
        if standalone:
            acked = await _deliver_here(cfg, store, row.seq, timeout_s)
        else:
            acked = await _wait_marked(store, row.seq, timeout_s)
        puback_ms = (time.monotonic() - t0) * 1000
        seen_ms = None
        deadline = time.monotonic() + min(timeout_s, 10)
        while acked and seen_ms is None and time.monotonic() < deadline:
            watcher.pump(0.05)
            for when, _, payload in watcher.received:
                if row.msg_id.encode() in payload:
                    seen_ms = (when - t0) * 1000
    finally:
        store.close()
        watcher.client.disconnect()
    if not acked:
        how = (
            "this process"
            if standalone
            else "the gateway service (is it running? try --standalone)"
        )
        print(f"NOT delivered within {timeout_s:g} s by {how}", file=sys.stderr)
        return 1
    print(f"delivered: broker acknowledged it after {puback_ms:.1f} ms")
    if seen_ms is None:
        print(f"but a subscriber on {topics.alert} did not see it", file=sys.stderr)
        return 1
    print(f"seen by a subscriber on {topics.alert} after {seen_ms:.1f} ms")
    return 0


async def _deliver_here(cfg: config.Config, store: Store, seq: int, timeout_s: float) -> bool:
    uplink = Uplink(cfg, store, announce=False, escalate=False, client_id=f"{cfg.client_id}-test")
    task = asyncio.create_task(uplink.run())
    try:
        uplink.wake()
        return await uplink.wait_delivered(seq, timeout_s)
    finally:
        await uplink.close()
        await asyncio.gather(task, return_exceptions=True)


async def _wait_marked(store: Store, seq: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = await asyncio.to_thread(store.outbox_row, seq)
        if row is not None and row.delivered_ts is not None:
            return True
        await asyncio.sleep(0.1)
    return False
