"""Alarm latency: a button reading entering the gateway -> its alert at a subscriber.

The measured path is the product's: the reading goes to a rule (button press ->
emergency_button, critical), the alert is committed to the store (``synchronous=FULL``, so
one fsync) on a worker thread as the service does, ``Uplink.wake()``, the uplink publishes
at QoS 1, mosquitto on loopback forwards it, a subscriber in another process stamps it.

Baseline, in the same run, interleaved sample by sample so both see the same load: one
fsync of a small write to a file in the same directory, then a bare paho QoS 1 publish
(paho's own network thread) to the same broker and subscriber.

    python bench/alarm_latency.py [--n 1000] [--dir DIR]

Last line: JSON with p50_ms, p99_ms, baseline_p50_ms, baseline_p99_ms, ratio_p99 and n.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import paho.mqtt.client as paho
from _mqtt import Mosquitto, percentile, subscriber
from paho.mqtt.enums import CallbackAPIVersion

from gateway.clock import Clock
from gateway.config import Config, GatewayConfig, UplinkConfig
from gateway.model import Alert, AlertType, Reading, ReadingKind
from gateway.store import MB, Store
from gateway.uplink import Uplink


def rule(reading: Reading) -> Alert | None:
    """The emergency-button rule, as the detectors apply it."""
    if reading.kind is ReadingKind.BUTTON and reading.value == "press":
        return Alert.raise_(
            AlertType.EMERGENCY_BUTTON, Clock(assume_synced=True).now(), room="bedroom"
        )
    return None


async def arrivals(proc, sink: dict[str, float], events: dict[str, asyncio.Event]) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, proc.stdout.readline)
        if not line:
            return
        parts = line.split()
        if len(parts) != 4:
            continue
        t, _topic, key, _n = parts
        sink[key] = float(t)
        ev = events.get(key)
        if ev is not None:
            ev.set()


async def run(n: int, workdir: Path) -> dict[str, object]:
    broker = Mosquitto(workdir)
    broker.start()
    sub = subscriber(broker.port, "anxin/v1/bench-gw/alert", "bench/baseline")
    store = Store(workdir / "anxin.db", budget_bytes=256 * MB, reserve_bytes=MB).open()
    cfg = Config(
        gateway=GatewayConfig(id="bench-gw", home="bench-home"),
        uplink=UplinkConfig(
            broker_url=broker.url, escalate_after_s=3600, telemetry_interval_s=3600
        ),
    )
    uplink = Uplink(cfg, store)
    up_task = asyncio.create_task(uplink.run())
    seen: dict[str, float] = {}
    events: dict[str, asyncio.Event] = {}
    reader = asyncio.create_task(arrivals(sub, seen, events))
    bare = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=paho.MQTTv5)
    bare.connect("127.0.0.1", broker.port)
    bare.loop_start()
    loop = asyncio.get_running_loop()
    fsync_file = workdir / "fsync.probe"
    fd = os.open(fsync_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    lat: list[float] = []
    base: list[float] = []
    fsyncs: list[float] = []
    try:
        while not uplink.connected:  # noqa: ASYNC110 - the harness polls state the uplink changes
            await asyncio.sleep(0.01)
        stamp = Clock(assume_synced=True)
        for i in range(n + 20):  # the first 20 of each warm up and are not counted
            # --- the product path
            t0 = time.monotonic()
            reading = Reading.at(stamp.now(), "btn-1", ReadingKind.BUTTON, "press")
            alert = rule(reading)
            assert alert is not None
            ev = events[alert.id] = asyncio.Event()
            await loop.run_in_executor(None, store.commit_alert, alert)
            uplink.wake()
            await asyncio.wait_for(ev.wait(), 30)
            if i >= 20:
                lat.append((seen[alert.id] - t0) * 1000)
            del events[alert.id]
            await asyncio.sleep(0.005)
            # --- the baseline: one fsync on the same disk + a bare paho QoS 1 round trip
            key = f"b{i}"
            ev = events[key] = asyncio.Event()
            t0 = time.monotonic()
            await loop.run_in_executor(None, _fsync, fd)
            t1 = time.monotonic()
            bare.publish("bench/baseline", key.encode(), qos=1)
            await asyncio.wait_for(ev.wait(), 30)
            if i >= 20:
                base.append((seen[key] - t0) * 1000)
                fsyncs.append((t1 - t0) * 1000)
            del events[key]
            await asyncio.sleep(0.005)
    finally:
        os.close(fd)
        bare.disconnect()
        bare.loop_stop()
        await uplink.close()
        await asyncio.gather(up_task, return_exceptions=True)
        store.close()
        sub.terminate()
        sub.wait(10)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        sub.stdout.close()  # type: ignore[union-attr]
        broker.stop()
    p99, b99 = percentile(lat, 0.99), percentile(base, 0.99)
    return {
        "n": len(lat),
        "p50_ms": round(percentile(lat, 0.5), 3),
        "p90_ms": round(percentile(lat, 0.9), 3),
        "p99_ms": round(p99, 3),
        "max_ms": round(max(lat), 3),
        "baseline_p50_ms": round(percentile(base, 0.5), 3),
        "baseline_p99_ms": round(b99, 3),
        "fsync_p50_ms": round(percentile(fsyncs, 0.5), 3),
        "fsync_p99_ms": round(percentile(fsyncs, 0.99), 3),
        "ratio_p99": round(p99 / b99, 2),
        "target_ratio_p99": 3.0,
        "within_target": p99 <= 3 * b99,
    }


def _fsync(fd: int) -> None:
    os.write(fd, b"x" * 64)
    os.fsync(fd)


def main() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="alerts measured (default 1000)")
    ap.add_argument("--dir", help="directory for the database (default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        result = asyncio.run(run(args.n, Path(d)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
