"""Commands from the platform, and escalation of critical alerts nobody handled."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from uplink_helpers import Subscriber, alert, make_config, validate

from gateway.config import SecretsConfig
from gateway.model import AlertState, Sensor, SensorKind, Severity, Transport
from gateway.notify import LoggingNotifier, Notifier
from gateway.uplink import Uplink


async def until(pred, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(uplink: Uplink) -> AsyncIterator[None]:
    task = asyncio.create_task(uplink.run())
    try:
        await until(lambda: uplink.connected or uplink.cfg.uplink.broker_url.endswith(":1"))
        yield
    finally:
        await uplink.close()
        assert task.done()


class Platform:
    """Sends commands like the platform would: MQTT 5 with response topic, or plain."""

    def __init__(self, broker: Any) -> None:
        self.replies: list[tuple[str, dict[str, Any], bytes | None]] = []
        self.lock = threading.Lock()
        self.c = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="cmd-sender", protocol=paho.MQTTv5
        )
        self.c.on_message = self._on_message
        self.c.connect(broker.host, broker.port)
        self.c.subscribe("platform/replies/#", qos=1)
        self.c.subscribe("anxin/v1/gw-test/reply/#", qos=1)
        self.c.loop_start()
        time.sleep(0.2)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        corr = getattr(msg.properties, "CorrelationData", None)
        with self.lock:
            self.replies.append((msg.topic, json.loads(msg.payload), corr))

    def send(
        self, name: str, payload: bytes, *, response: str | None = None, corr: bytes | None = None
    ) -> None:
        props = None
        if response:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = response
            if corr:
                props.CorrelationData = corr
        self.c.publish(
            f"anxin/v1/gw-test/cmd/{name}", payload, qos=1, properties=props
        ).wait_for_publish(5)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def platform(mosquitto):  # type: ignore[no-untyped-def]
    p = Platform(mosquitto)
    yield p
    p.close()


async def test_ack_marks_the_alert_handled_and_sends_its_new_state(mosquitto, store, platform):
    watcher = Subscriber(mosquitto, "anxin/v1/gw-test/alert", client_id="watch").start()
    row = store.commit_alert(alert(Severity.CRITICAL))
    alert_id = row.ref
    assert alert_id
    uplink = Uplink(make_config(mosquitto), store)
    try:
        async with running(uplink):
            await until(lambda: store.pending_count() == 0)
            await asyncio.to_thread(
                platform.send,
                "ack",
                json.dumps({"id": "r1", "alert_id": alert_id, "by": "operator 7"}).encode(),
                response="platform/replies/gw",
                corr=b"\x01\x02",
            )
            await until(lambda: len(platform.replies) >= 1)
            await until(lambda: len(watcher.of("/alert")) >= 2)
    finally:
        watcher.stop()
    topic, reply, corr = platform.replies[0]
    assert topic == "platform/replies/gw"
    assert corr == b"\x01\x02"
    assert reply["ok"] is True
    assert reply["request_id"] == "r1"
    assert reply["result"] == {"alert_id": alert_id, "state": "acknowledged", "changed": True}
    validate("reply", reply)
    a = store.alert(alert_id)
    assert a is not None
    assert a.state is AlertState.ACKNOWLEDGED
    states = [s for s, _, _ in store.alert_history(alert_id)]
    assert AlertState.ACKNOWLEDGED in states
    notes = [n for s, _, n in store.alert_history(alert_id) if s is AlertState.ACKNOWLEDGED]
    assert notes == ["acknowledged by operator 7"]
    update = watcher.of("/alert")[-1]
    assert update["state"] == "acknowledged"
    assert update["alert_id"] == alert_id
    assert update["note"] == "acknowledged by operator 7"
    watcher.validate_all()


@pytest.mark.parametrize(
    ("name", "payload", "code"),
    [
        ("ack", b"{not json", "malformed"),
        ("ack", b"[1, 2]", "malformed"),
        ("ack", b"{}", "malformed"),
        ("ack", b'{"alert_id": "nope"}', "not_found"),
        ("reboot", b"{}", "unknown_command"),
        ("ack", b"\xff\xfe", "malformed"),
    ],
)
async def test_bad_commands_get_an_error_reply_and_change_nothing(
    mosquitto, store, platform, name, payload, code
):
    row = store.commit_alert(alert(Severity.CRITICAL))
    uplink = Uplink(make_config(mosquitto), store)
    async with running(uplink):
        await until(lambda: store.pending_count() == 0)
        before = store.alert_history(str(row.ref))
        await asyncio.to_thread(platform.send, name, payload)
        await until(lambda: len(platform.replies) >= 1)
    topic, reply, _ = platform.replies[0]
    assert topic == f"anxin/v1/gw-test/reply/{name}"
    assert reply["ok"] is False
    assert reply["error"]["code"] == code
    validate("reply", reply)
    assert store.alert_history(str(row.ref)) == before
    assert store.pending_count() == 0


async def test_ping_sensors_and_config_with_secrets_masked(mosquitto, store, platform):
    store.sync_sensors(
        [Sensor("btn-1", SensorKind.BUTTON, Transport.BLE, "A4:C1:38:00:00:01", "bedroom")]
    )
    cfg = make_config(mosquitto)
    cfg = replace(cfg, secrets=SecretsConfig(mqtt_username="gw", mqtt_password="hunter2"))
    # Credentials the anonymous test broker ignores, so the connection still succeeds.
    uplink = Uplink(cfg, store)
    async with running(uplink):
        for name in ("ping", "sensors", "config"):
            await asyncio.to_thread(platform.send, name, json.dumps({"id": name}).encode())
        await until(lambda: len(platform.replies) >= 3)
    by_cmd = {r["cmd"]: r for _, r, _ in platform.replies}
    for r in by_cmd.values():
        validate("reply", r)
        assert r["ok"] is True
    assert by_cmd["ping"]["result"]["queue_depth"] >= 0
    assert by_cmd["sensors"]["result"]["sensors"][0]["id"] == "btn-1"
    conf = by_cmd["config"]["result"]["config"]
    assert conf["secrets"]["mqtt_password"] == "***"
    assert "hunter2" not in json.dumps(by_cmd)


class FailingNotifier:
    name = "broken-modem"

    async def notify(self, alert, *, attempt):  # type: ignore[no-untyped-def]
        raise OSError("modem not answering")


async def test_unhandled_critical_alert_escalates_and_repeats_until_acknowledged(store):
    logging_notifier = LoggingNotifier()
    failing = FailingNotifier()
    assert isinstance(logging_notifier, Notifier)
    assert isinstance(failing, Notifier)
    # No broker at all: escalation must not depend on the uplink being connected.
    cfg = make_config(None, escalate_after_s=0.3, repeat_every_s=0.4)
    crit = store.commit_alert(alert(Severity.CRITICAL))
    warn = store.commit_alert(alert(Severity.WARNING))
    uplink = Uplink(cfg, store, notifiers=[failing, logging_notifier])
    async with running(uplink):
        await until(lambda: len(logging_notifier.sent) >= 2, 10)
        store.set_alert_state(str(crit.ref), AlertState.ACKNOWLEDGED)
        await asyncio.sleep(1.0)
        sent = len(logging_notifier.sent)
        await asyncio.sleep(0.6)
        assert len(logging_notifier.sent) == sent, "escalation must stop once acknowledged"
    assert {a for a, _ in logging_notifier.sent} == {crit.ref}
    assert [n for _, n in logging_notifier.sent] == list(range(1, sent + 1))
    history = store.alert_history(str(crit.ref))
    notes = [n for s, _, n in history if s is AlertState.ESCALATED]
    assert len(notes) == sent
    assert notes[0] == "attempt 1: log"
    assert not [s for s, _, _ in store.alert_history(str(warn.ref)) if s is AlertState.ESCALATED]


async def test_escalation_schedule_survives_a_restart(store):
    cfg = make_config(None, escalate_after_s=0.2, repeat_every_s=30)
    crit = store.commit_alert(alert(Severity.CRITICAL))
    first = LoggingNotifier()
    up = Uplink(cfg, store, notifiers=[first])
    async with running(up):
        await until(lambda: len(first.sent) == 1, 10)
    second = LoggingNotifier()
    up2 = Uplink(cfg, store, notifiers=[second])
    async with running(up2):
        await asyncio.sleep(1.0)
    assert second.sent == [], "the repeat is not due yet after the restart"
    assert [s for s, _, _ in store.alert_history(str(crit.ref))].count(AlertState.ESCALATED) == 1
