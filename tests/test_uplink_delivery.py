"""The outbox reaches a real mosquitto: order, PUBACK bookkeeping, status, schemas."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from uplink_helpers import Subscriber, alert, make_config

from gateway.clock import Clock
from gateway.model import AlertState, Reading, ReadingKind, Severity
from gateway.store import OutboxRow, Store
from gateway.uplink import Uplink
from gateway.uplink.contract import EVENT_CURSOR


@contextlib.asynccontextmanager
async def running(uplink: Uplink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(uplink.run())
    try:
        yield task
    finally:
        await uplink.close()
        assert task.done()


async def until(pred, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@pytest.fixture
def platform(mosquitto):  # type: ignore[no-untyped-def]
    sub = Subscriber(mosquitto).start()
    yield sub
    sub.stop()


async def test_alerts_arrive_in_priority_then_seq_order_and_are_marked(mosquitto, store, platform):
    committed = []
    for i in range(5):
        committed.append(store.commit_alert(alert(Severity.INFO, i)))
        committed.append(store.commit_alert(alert(Severity.WARNING, i)))
        committed.append(store.commit_alert(alert(Severity.CRITICAL, i)))
    uplink = Uplink(make_config(mosquitto), store)
    async with running(uplink):
        await until(lambda: len(platform.of("/alert")) >= 15)
        await until(lambda: store.pending_count() == 0)
    got = platform.of("/alert")
    assert [m["id"] for m in got] == [
        r.msg_id for r in sorted(committed, key=lambda r: (r.priority, r.seq))
    ]
    assert [m["seq"] for m in got if m["severity"] == "critical"] == sorted(
        r.seq for r in committed if r.priority == 0
    )
    first = got[0]
    assert first["schema"] == "anxin/v1"
    assert first["gw"] == "gw-test"
    assert first["home"] == "home-1"
    assert first["state"] == "raised"
    assert first["sensor"] is None
    assert first["clock"]["synced"] is True
    history = [s for s, _, _ in store.alert_history(first["alert_id"])]
    assert history == [AlertState.RAISED, AlertState.DELIVERED]
    assert platform.validate_all() >= 15


async def test_wake_sends_a_new_alert_without_waiting(mosquitto, store, platform):
    uplink = Uplink(make_config(mosquitto), store)
    async with running(uplink):
        await until(lambda: uplink.connected)
        row = store.commit_alert(alert())
        uplink.wake()
        assert await uplink.wait_delivered(row.seq, 10)
        await until(lambda: any(m["id"] == row.msg_id for m in platform.of("/alert")))


async def test_readings_become_event_batches_with_a_durable_cursor(mosquitto, store, platform):
    stamp = Clock(assume_synced=False).now()
    store.add_readings(
        [Reading.at(stamp, "door-1", ReadingKind.CONTACT, i % 2 == 0) for i in range(450)]
    )
    uplink = Uplink(make_config(mosquitto, event_batch_max=200), store)
    async with running(uplink):
        await until(lambda: sum(len(m["readings"]) for m in platform.of("/event")) >= 450)
        await until(lambda: store.pending_count() == 0)
    events = platform.of("/event")
    assert [len(m["readings"]) for m in events] == [200, 200, 50]
    assert events[0]["readings"][0]["sensor"] == "door-1"
    assert events[0]["clock"]["synced"] is False
    assert store.counter(EVENT_CURSOR) == store.last_reading_id()
    # Delivered batches leave the outbox (the readings stay): no 30 kB rewrite to mark them.
    await until(
        lambda: store.conn.execute("SELECT COUNT(*) FROM outbox WHERE kind='event'").fetchone()[0]
        == 0
    )
    assert len(store.readings_after(0, 1000)) == 450
    platform.validate_all()


async def test_status_online_retained_then_offline_on_close(mosquitto, store, platform):
    uplink = Uplink(make_config(mosquitto), store)
    async with running(uplink):
        await until(lambda: len(platform.of("/status")) >= 1)
        online = platform.of("/status")[0]
        assert online["state"] == "online"
        assert online["protocol"] == "5"
        assert online["queue_depth"] >= 0
        assert uplink.healthy()
    await until(lambda: [m["state"] for m in platform.of("/status")][-1:] == ["offline"])
    assert not uplink.healthy()
    # The retained message a newcomer sees is the last one: offline.
    late = Subscriber(mosquitto, "anxin/v1/gw-test/status", client_id="late").start()
    try:
        assert late.wait_for(lambda s: len(s.of("/status")) == 1, 5)
        assert late.of("/status")[0]["state"] == "offline"
    finally:
        late.stop()
    seqs = [m["seq"] for m in platform.of("/status")]
    assert seqs == sorted(seqs)
    platform.validate_all()


async def test_last_will_says_offline_when_the_gateway_vanishes(mosquitto, store, platform):
    uplink = Uplink(make_config(mosquitto, keepalive_s=5), store)
    task = asyncio.create_task(uplink.run())
    try:
        await until(lambda: uplink.connected)
        conn = uplink._conn
        assert conn is not None
        conn.abort()  # the socket drops without DISCONNECT, as when the process dies
        await until(lambda: "offline" in [m["state"] for m in platform.of("/status")])
    finally:
        await uplink.close()
    assert task.done()
    platform.validate_all()


async def test_telemetry_is_sent_and_valid(mosquitto, store, platform):
    uplink = Uplink(make_config(mosquitto), store)
    async with running(uplink):
        await until(lambda: len(platform.of("/telemetry")) >= 1)
    tel = platform.of("/telemetry")[0]
    assert tel["uplink"]["connects"] == 1
    assert platform.validate_all() >= 2
    raw = next(m for t, _, m in platform.messages if t.endswith("/telemetry"))
    assert raw.qos == 0
    assert json.loads(raw.payload)["id"] == tel["id"]


def test_unusable_broker_url_still_builds(tmp_path: Path) -> None:
    s = Store(tmp_path / "x.db").open()
    try:
        up = Uplink(make_config(None, broker_url="mqtts://broker.example:8883"), s)
        assert up.endpoint.port == 8883
        assert up.endpoint.tls is not None
    finally:
        s.close()


async def test_alerts_still_go_when_status_cannot_take_a_seq(
    mosquitto, store, platform, monkeypatch
):
    import sqlite3

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "record_sent", full)
    row = store.commit_alert(alert())
    uplink = Uplink(make_config(mosquitto), store)
    async with running(uplink):
        assert await uplink.wait_delivered(row.seq, 10)
        await until(lambda: len(platform.of("/status")) >= 1)
    assert platform.of("/status")[0]["state"] == "online"
    platform.validate_all()


async def test_wake_from_another_thread(mosquitto, store, platform):
    uplink = Uplink(make_config(mosquitto), store)
    async with running(uplink):
        await until(lambda: uplink.connected)
        await asyncio.sleep(0.05)  # the drain is now waiting for a wake (or its 1 s look)

        def commit_and_wake() -> OutboxRow:
            row = store.commit_alert(alert())
            uplink.wake()
            return row

        row = await asyncio.to_thread(commit_and_wake)
        assert await uplink.wait_delivered(row.seq, 10)


async def test_waiting_for_a_row_already_acknowledged_returns_at_once(mosquitto, store, platform):
    """`anxin send-test-alert` may start waiting after the PUBACK arrived: that is delivered."""
    uplink = Uplink(make_config(mosquitto), store)
    async with running(uplink):
        await until(lambda: uplink.connected)
        row = store.commit_alert(alert())
        uplink.wake()
        await until(lambda: uplink.stats.delivered >= 1)
        t0 = time.monotonic()
        assert await uplink.wait_delivered(row.seq, 5)
        assert time.monotonic() - t0 < 1, "answered from the recent PUBACKs, not by waiting"
