"""No loss, order kept: broker restarts, a broker refusing us, a full inflight window."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Broker
from uplink_helpers import Subscriber, alert, check_no_loss_in_order, make_config, persistent_conf

from gateway.model import Severity
from gateway.store import OutboxRow, Store
from gateway.uplink import Uplink

RESTARTS = int(os.environ.get("ANXIN_UPLINK_RESTARTS", "20"))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path, extra_conf=persistent_conf(tmp_path))
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def platform(broker: Broker) -> Iterator[Subscriber]:
    sub = Subscriber(broker).start()
    yield sub
    sub.stop()


async def until(pred, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_broker_restarted_many_times_while_alerts_flow(broker, store, platform):
    uplink = Uplink(make_config(broker, reconnect_min_s=0.02, reconnect_max_s=0.2), store)
    task = asyncio.create_task(uplink.run())
    committed: list[OutboxRow] = []
    sevs = [Severity.CRITICAL, Severity.WARNING, Severity.INFO]
    try:
        for cycle in range(RESTARTS):
            for i in range(3):
                committed.append(store.commit_alert(alert(sevs[(cycle + i) % 3], cycle)))
                uplink.wake()
            await asyncio.sleep(0.05)
            await asyncio.to_thread(broker.stop)
            for i in range(3):  # committed while the broker is down
                committed.append(store.commit_alert(alert(sevs[i], cycle)))
                uplink.wake()
            await asyncio.to_thread(broker.start)
            await until(lambda: uplink.connected, 10)
        await until(lambda: store.pending_count() == 0)
        await until(lambda: len({m["id"] for m in platform.of("/alert")}) >= len(committed))
    finally:
        await uplink.close()
    assert task.done()
    assert uplink.stats.connects >= RESTARTS
    check_no_loss_in_order(committed, platform)


async def test_broker_refusing_the_connection_for_a_while(tmp_path, store):
    broker = Broker(tmp_path, extra_conf=persistent_conf(tmp_path))
    broker.start()
    platform = Subscriber(broker).start()
    broker.stop()
    # The same broker, now refusing everyone (CONNACK "not authorised").
    broker.extra_conf += "allow_anonymous false\n"
    broker.start()
    uplink = Uplink(make_config(broker, reconnect_min_s=0.05, reconnect_max_s=0.3), store)
    task = asyncio.create_task(uplink.run())
    committed = [store.commit_alert(alert(Severity.CRITICAL, i)) for i in range(10)]
    try:
        await until(lambda: uplink.stats.connect_failures >= 8)
        assert not uplink.connected
        assert store.pending_count() == 10
        assert uplink.healthy(), "a broker outage is not the gateway's fault"
        broker.stop()
        broker.extra_conf = broker.extra_conf.replace("allow_anonymous false\n", "")
        broker.start()
        await until(lambda: store.pending_count() == 0)
        assert platform.wait_for(lambda s: len(s.of("/alert")) >= 10, 20)
    finally:
        await uplink.close()
        platform.stop()
        broker.stop()
    assert task.done()
    check_no_loss_in_order(committed, platform)


async def test_full_inflight_window_respects_receive_maximum(broker, store, platform):
    # mosquitto announces Receive Maximum 20 (max_inflight_messages); we ask for more.
    uplink = Uplink(make_config(broker, max_inflight=50), store)
    task = asyncio.create_task(uplink.run())
    try:
        await until(lambda: uplink.connected)
        await asyncio.sleep(0.2)
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)  # the broker stops answering: no PUBACKs
        try:
            committed = [store.commit_alert(alert(Severity.WARNING, i)) for i in range(60)]
            uplink.wake()
            await until(lambda: len(uplink._inflight) >= 20, 10)
            await asyncio.sleep(0.5)
            assert len(uplink._inflight) == 20
            assert store.pending_count() == 60
            # A critical alert waits for a free slot, then goes before the warnings.
            crit = store.commit_alert(alert(Severity.CRITICAL, 99))
            uplink.wake()
            await asyncio.sleep(0.2)
            assert len(uplink._inflight) == 20
        finally:
            broker.proc.send_signal(signal.SIGCONT)
        await until(lambda: store.pending_count() == 0)
        await until(lambda: len({m["id"] for m in platform.of("/alert")}) >= 61)
    finally:
        await uplink.close()
    assert task.done()
    assert uplink.stats.max_inflight_seen == 20
    check_no_loss_in_order([*committed, crit], platform)
    firsts = [m["id"] for m in platform.of("/alert")]
    assert firsts.index(crit.msg_id) < firsts.index(committed[-1].msg_id)


def test_store_fixture_is_separate(store: Store) -> None:
    assert store.pending_count() == 0


async def test_broker_killed_with_messages_in_flight(broker, store, platform):
    """Messages the broker never acknowledged are sent again: marking on publish (not on
    PUBACK) would lose every one of them here."""
    uplink = Uplink(make_config(broker, reconnect_min_s=0.05, reconnect_max_s=0.3), store)
    task = asyncio.create_task(uplink.run())
    committed = [store.commit_alert(alert(Severity.CRITICAL, i)) for i in range(5)]
    try:
        await until(lambda: len(platform.of("/alert")) >= 5)
        await asyncio.sleep(1.2)  # the broker's autosave keeps the subscriber's session
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)
        committed += [store.commit_alert(alert(Severity.WARNING, i)) for i in range(30)]
        uplink.wake()
        await until(lambda: len(uplink._inflight) == 20, 10)
        assert store.pending_count() == 30
        await asyncio.to_thread(broker.kill)  # the stopped broker dies with them unread
        await asyncio.to_thread(broker.start)
        await until(lambda: store.pending_count() == 0)
        await until(lambda: len({m["id"] for m in platform.of("/alert")}) >= 35)
    finally:
        await uplink.close()
    assert task.done()
    check_no_loss_in_order(committed, platform)
