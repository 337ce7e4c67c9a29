"""Backlog drain: 100,000 readings and 1,000 alerts queued while the broker is down.

The gateway keeps committing while the broker is down: readings in batches (group
commit), alerts one FULL commit each (critical, warning and info mixed); the uplink turns
the readings into ``event`` batches in the outbox as it would in service. Then the broker
starts and the uplink drains the outbox: every alert before any event batch, every
message marked delivered only on its PUBACK. Timed from the uplink's CONNACK to the last
PUBACK.

Baseline, in the same run against the same broker and subscriber: a bare paho QoS 1
publish loop (paho's own network thread, the same inflight window of 20) sending the same
payloads, timed from the first publish to the last PUBACK. The machine is shared and a
drain takes well under a second, so the drain is repeated (``--rounds``, the outbox rows
marked undelivered again, a fresh uplink), each beside a baseline run, and the medians are
reported; ``lost`` and ``alerts_first`` are from the first, real, drain.

    python bench/backlog_drain.py [--readings 100000] [--alerts 1000] [--dir DIR]

Last line: JSON with msgs_per_s, baseline_msgs_per_s, ratio, lost, alerts_first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import paho.mqtt.client as paho
from _mqtt import Mosquitto, subscriber
from paho.mqtt.enums import CallbackAPIVersion

from gateway.clock import parse_rfc3339
from gateway.config import Config, GatewayConfig, UplinkConfig
from gateway.model import Alert, AlertType, Reading, ReadingKind, Severity
from gateway.store import MB, OutboxRow, Store
from gateway.uplink import Uplink
from gateway.uplink.contract import EVENT_CURSOR

SEVERITIES = [Severity.CRITICAL, Severity.WARNING, Severity.INFO]
TYPES = {
    Severity.CRITICAL: AlertType.FALL,
    Severity.WARNING: AlertType.NIGHT_DOOR,
    Severity.INFO: AlertType.LOW_BATTERY,
}


def readings(n: int) -> list[Reading]:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    kinds = [
        (ReadingKind.DISTANCE, "cm"),
        (ReadingKind.OCCUPANCY, None),
        (ReadingKind.HEART_RATE, "bpm"),
    ]
    out = []
    for i in range(n):
        kind, unit = kinds[i % 3]
        value = (
            80.0 + i % 300
            if kind is ReadingKind.DISTANCE
            else (i % 7 != 0 if unit is None else 60 + i % 30)
        )
        out.append(
            Reading(
                f"sensor-{i % 12}",
                kind,
                value,
                t0 + timedelta(milliseconds=20 * i),
                1000.0 + 0.02 * i,
                "bench-boot",
                True,
                unit=unit,
            )
        )
    return out


CPU: dict[str, list[float]] = {"drain": [], "bare": []}


def collect(proc, lines: list[str]) -> None:  # type: ignore[no-untyped-def]
    for line in proc.stdout:
        lines.append(line)


async def drain(uplink: Uplink, store: Store, queued: int) -> float:
    """Seconds from the uplink's CONNACK until every queued message had its PUBACK."""
    target = uplink.stats.delivered + queued
    done = asyncio.Event()
    orig = uplink._on_publish

    def on_publish(mid: int, ok: bool, reason: str) -> None:
        orig(mid, ok, reason)
        if uplink.stats.delivered >= target:
            done.set()

    uplink._on_publish = on_publish  # type: ignore[method-assign]
    while not uplink.connected:  # noqa: ASYNC110 - the harness polls state the uplink changes
        await asyncio.sleep(0.0005)
    t_start, c_start = time.monotonic(), time.process_time()
    await asyncio.wait_for(done.wait(), 300)
    CPU["drain"].append(time.process_time() - c_start)
    return time.monotonic() - t_start


async def caught_up(lines: list[str], n: int) -> None:
    """Wait for the subscriber to have printed ``n`` messages, so rounds do not overlap."""
    deadline = time.monotonic() + 120
    while sum(1 for ln in lines if ln.count(" ") == 3) < n and time.monotonic() < deadline:  # noqa: ASYNC110 - the harness polls state the uplink changes
        await asyncio.sleep(0.05)


def make_uplink(cfg: Config, store: Store) -> tuple[Uplink, asyncio.Task[None]]:
    uplink = Uplink(cfg, store)
    return uplink, asyncio.create_task(uplink.run())


async def run(n_readings: int, n_alerts: int, rounds: int, workdir: Path) -> dict[str, object]:
    broker = Mosquitto(workdir, persistent=True)
    broker.start()
    sub = subscriber(
        broker.port, "anxin/v1/bench-gw/alert", "anxin/v1/bench-gw/event", "bench/baseline/#"
    )
    lines: list[str] = []
    reader = threading.Thread(target=collect, args=(sub, lines), daemon=True)
    reader.start()
    broker.stop()  # the subscriber's session (and what is queued for it) survives
    store = Store(workdir / "anxin.db", budget_bytes=1024 * MB, reserve_bytes=MB).open()
    cfg = Config(
        gateway=GatewayConfig(id="bench-gw", home="bench-home"),
        uplink=UplinkConfig(
            broker_url=broker.url,
            reconnect_min_s=0.05,
            reconnect_max_s=1.0,
            escalate_after_s=3600,
            telemetry_interval_s=3600,
            event_interval_s=0.05,
        ),
    )
    uplink, up_task = make_uplink(cfg, store)
    loop = asyncio.get_running_loop()
    # --- queue while the broker is down
    rs = readings(n_readings)
    for i in range(0, len(rs), 1000):
        await loop.run_in_executor(None, store.add_readings, rs[i : i + 1000])
    alert_ids = []
    t0 = datetime.now(UTC)
    for i in range(n_alerts):
        sev = SEVERITIES[i % 3]
        a = Alert(TYPES[sev], sev, t0, room="bedroom", evidence={"i": i}, boot_id="bench-boot")
        await loop.run_in_executor(None, store.commit_alert, a)
        alert_ids.append(a.id)
    last = store.last_reading_id()
    while store.counter(EVENT_CURSOR) < last:  # noqa: ASYNC110 - the harness polls state the uplink changes
        await asyncio.sleep(0.05)
    queued = store.pending_count()
    with store._tx() as conn:  # a copy, to queue the same messages again for the repeats
        conn.execute("CREATE TABLE bench_copy AS SELECT * FROM outbox WHERE delivered_ts IS NULL")
    # --- the broker comes back: the real drain, then repeats of it beside the baseline
    broker.start()
    drains = [await drain(uplink, store, queued)]
    while store.pending_count():  # noqa: ASYNC110 - the harness polls state the uplink changes
        await asyncio.sleep(0.05)
    await uplink.close()
    await asyncio.gather(up_task, return_exceptions=True)
    await caught_up(lines, queued)
    n_first = len(lines)
    rows = store.conn.execute(
        "SELECT seq, msg_id, kind, priority, ref, body, created_ts FROM bench_copy"
        " ORDER BY priority, seq"
    ).fetchall()
    payloads = [
        json.dumps(
            uplink._payload(
                OutboxRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), parse_rfc3339(r[6]), 0)
            ),
            separators=(",", ":"),
        ).encode()
        for r in rows
    ]
    bases = [bare_loop(broker.port, payloads)]
    await caught_up(lines, 2 * queued)
    for n in range(rounds - 1):
        with store._tx() as conn:  # queue the same messages again
            conn.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM bench_copy)")
            conn.execute("INSERT INTO outbox SELECT * FROM bench_copy")
        uplink, up_task = make_uplink(cfg, store)
        drains.append(await drain(uplink, store, queued))
        await uplink.close()
        await asyncio.gather(up_task, return_exceptions=True)
        await caught_up(lines, (3 + 2 * n) * queued)
        bases.append(bare_loop(broker.port, payloads))
        await caught_up(lines, (4 + 2 * n) * queued)
    store.close()
    await asyncio.sleep(1.0)
    sub.terminate()
    sub.wait(10)
    reader.join(10)
    sub.stdout.close()  # type: ignore[union-attr]
    broker.stop()
    # --- what the subscriber saw of the real drain
    kinds, keys, n_read = [], set(), 0
    for line in lines[:n_first]:
        parts = line.split()
        if len(parts) != 4 or parts[1].startswith("bench/"):
            continue
        kind = parts[1].rsplit("/", 1)[-1]
        kinds.append(kind)
        if kind == "alert":
            keys.add(parts[2])
        else:
            n_read += int(parts[3])
    lost_alerts = len(set(alert_ids) - keys)
    lost_readings = max(0, n_readings - n_read)
    first_event = kinds.index("event") if "event" in kinds else len(kinds)
    last_alert = max((i for i, k in enumerate(kinds) if k == "alert"), default=-1)
    rates = [queued / d for d in drains]
    base_rates = [len(payloads) / b for b in bases]
    ratios = [r / b for r, b in zip(rates, base_rates, strict=True)]
    return {
        "messages": queued,
        "readings": n_readings,
        "alerts": n_alerts,
        "rounds": rounds,
        "first_drain_s": round(drains[0], 3),
        "msgs_per_s": round(statistics.median(rates), 1),
        "baseline_msgs_per_s": round(statistics.median(base_rates), 1),
        "ratio": round(statistics.median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
        "drain_s": [round(d, 3) for d in drains],
        "baseline_s": [round(b, 3) for b in bases],
        "target_ratio": 0.7,
        "cpu_us_per_msg": round(statistics.median(CPU["drain"]) / queued * 1e6, 1),
        "baseline_cpu_us_per_msg": round(statistics.median(CPU["bare"]) / len(payloads) * 1e6, 1),
        "lost": lost_alerts + lost_readings,
        "lost_alerts": lost_alerts,
        "lost_readings": lost_readings,
        "alerts_first": last_alert < first_event,
    }


def bare_loop(port: int, payloads: list[bytes]) -> float:
    done = threading.Event()
    acked = [0]

    def on_publish(client, userdata, mid, rc, props):  # type: ignore[no-untyped-def]
        acked[0] += 1
        if acked[0] == len(payloads):
            done.set()

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=paho.MQTTv5)
    c.max_inflight_messages_set(20)
    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    time.sleep(0.2)
    t0, c0 = time.monotonic(), time.process_time()
    for i, p in enumerate(payloads):
        c.publish(f"bench/baseline/{i % 2}", p, qos=1)
    done.wait(300)
    elapsed = time.monotonic() - t0
    CPU["bare"].append(time.process_time() - c0)
    c.disconnect()
    c.loop_stop()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--readings", type=int, default=100_000, help="readings queued (default 100000)"
    )
    ap.add_argument("--alerts", type=int, default=1000, help="alerts queued (default 1000)")
    ap.add_argument(
        "--rounds", type=int, default=7, help="drains timed, each beside a baseline (default 7)"
    )
    ap.add_argument("--dir", help="directory for the database (default: a temporary one)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        result = asyncio.run(run(args.readings, args.alerts, args.rounds, Path(d)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
