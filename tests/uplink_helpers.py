"""Helpers for the uplink tests: configs, a platform-side subscriber, schema validation."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from jsonschema import Draft202012Validator
from paho.mqtt.enums import CallbackAPIVersion
from referencing import Registry, Resource

from gateway.clock import Clock
from gateway.config import Config, GatewayConfig, UplinkConfig
from gateway.model import Alert, AlertType, Severity

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "schemas"


def persistent_conf(tmp_path: Path) -> str:
    """mosquitto settings that keep sessions and queued messages across a restart.

    Started as root, mosquitto drops to its own user before writing its database, and that
    user cannot enter pytest's private tmp_path: keep root for this test broker."""
    where = tmp_path / "mosquitto-data"
    where.mkdir(exist_ok=True)
    user = "user root\n" if os.geteuid() == 0 else ""
    return f"{user}persistence true\nautosave_interval 1\npersistence_location {where}/\n"


def schema_validators() -> dict[str, Draft202012Validator]:
    docs = {p.stem: json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")}
    registry: Registry = Registry().with_resources(
        (d["$id"], Resource.from_contents(d)) for d in docs.values()
    )
    return {name: Draft202012Validator(d, registry=registry) for name, d in docs.items()}


_VALIDATORS: dict[str, Draft202012Validator] | None = None


def validate(kind: str, payload: dict[str, Any]) -> None:
    """Raise if ``payload`` does not match docs/schemas/<kind>.json."""
    global _VALIDATORS  # noqa: PLW0603 - cache the compiled schemas across tests
    if _VALIDATORS is None:
        _VALIDATORS = schema_validators()
    _VALIDATORS[kind].validate(payload)


def make_config(broker: Any, **uplink: Any) -> Config:
    defaults: dict[str, Any] = {
        "broker_url": broker.url if broker is not None else "mqtt://127.0.0.1:1",
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.4,
        "event_interval_s": 0.1,
        "keepalive_s": 5,
    }
    defaults.update(uplink)
    return Config(
        gateway=GatewayConfig(id="gw-test", home="home-1"), uplink=UplinkConfig(**defaults)
    )


def alert(
    severity: Severity = Severity.CRITICAL, n: int = 0, type_: AlertType | None = None
) -> Alert:
    stamp = Clock(assume_synced=True).now()
    kind = (
        type_
        or {
            Severity.CRITICAL: AlertType.EMERGENCY_BUTTON,
            Severity.WARNING: AlertType.NIGHT_DOOR,
            Severity.INFO: AlertType.LOW_BATTERY,
        }[severity]
    )
    a = Alert.raise_(kind, stamp, severity=severity, evidence={"n": n}, room="bedroom")
    return replace(a, ts=datetime.now(UTC))


class Subscriber:
    """The platform's side: a paho client on its own thread (tests only), subscribed to the
    gateway's topics with a persistent session so a broker restart loses nothing for it."""

    def __init__(
        self, broker: Any, topic: str = "anxin/v1/#", *, client_id: str = "platform"
    ) -> None:
        self.broker = broker
        self.topic = topic
        self.messages: list[tuple[str, dict[str, Any], Any]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        c.reconnect_delay_set(0.05, 0.2)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *a: self.connected.clear()
        c.on_message = self._on_message
        self.client = c

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        client.subscribe(self.topic, qos=1)
        self.connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            body = json.loads(msg.payload) if msg.payload else {}
        except ValueError:
            body = {"_raw": msg.payload}
        with self.lock:
            self.messages.append((msg.topic, body, msg))

    def start(self) -> Subscriber:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect(
            self.broker.host, self.broker.port, 30, clean_start=False, properties=props
        )
        self.client.loop_start()
        assert self.connected.wait(10), "subscriber did not connect"
        time.sleep(0.1)
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def of(self, suffix: str) -> list[dict[str, Any]]:
        with self.lock:
            return [b for t, b, _ in self.messages if t.endswith(suffix)]

    def wait_for(self, pred: Callable[[Subscriber], bool], timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self):
                return True
            time.sleep(0.05)
        return pred(self)

    def validate_all(self) -> int:
        """Validate every message received against its schema; returns how many."""
        n = 0
        with self.lock:
            msgs = list(self.messages)
        for topic, body, _ in msgs:
            parts = topic.split("/")
            kind = parts[-2] if parts[-2] in ("reply", "cmd") else parts[-1]
            if kind == "cmd":
                continue
            validate(kind, body)
            n += 1
        return n


def check_no_loss_in_order(committed: list[Any], platform: Subscriber) -> None:
    """Every committed alert arrived; duplicates only by id; first arrivals in seq order
    within each severity."""
    got = platform.of("/alert")
    by_id: dict[str, dict[str, object]] = {}
    firsts: list[dict[str, object]] = []
    for m in got:
        prev = by_id.get(str(m["id"]))
        if prev is None:
            by_id[str(m["id"])] = m
            firsts.append(m)
        else:
            assert prev == m, "a duplicate must be the same message"
    assert set(by_id) == {r.msg_id for r in committed}, "lost or unknown alerts"
    for sev in ("critical", "warning", "info"):
        seqs = [int(str(m["seq"])) for m in firsts if m["severity"] == sev]
        assert seqs == sorted(seqs), f"{sev} alerts out of order"
    platform.validate_all()
