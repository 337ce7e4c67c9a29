"""Store ingest benchmark: readings/s with group commit, alert commits/s with FULL sync.

Baseline, measured in the same run on the same machine and disk: plain sqlite3
``executemany`` of the same rows (already encoded as tuples) into the same schema, in the
same batches, with the same pragmas (WAL, synchronous=FULL). The Store path starts from
``Reading`` objects, so it pays for encoding them; the ratio says what the API costs.

    python bench/store_ingest.py [--readings 200000] [--batch 200] [--alerts-s 3]

The last line is a JSON object: readings_per_s, baseline_readings_per_s, ratio
(baseline / store, lower is better, target <= 1.5), alert_commits_per_s and percentiles of
the alert commit latency.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.model import Alert, AlertType, Reading, ReadingKind, Severity
from gateway.store import MB, Store
from gateway.store.db import _INSERT_READING, _reading_row
from gateway.store.migrations import MIGRATIONS

KINDS = [
    (ReadingKind.DISTANCE, "cm", lambda i: 80.0 + (i % 300) * 0.5),
    (ReadingKind.OCCUPANCY, None, lambda i: i % 7 != 0),
    (ReadingKind.HEART_RATE, "bpm", lambda i: 60 + i % 30),
    (ReadingKind.BUTTON, None, lambda i: "press"),
    (ReadingKind.TEMPERATURE, "degC", lambda i: 21.5),
]


def make_readings(n: int) -> list[Reading]:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        kind, unit, value = KINDS[i % len(KINDS)]
        extra = {"gate": i % 9} if i % 10 == 0 else None
        out.append(
            Reading(
                f"sensor-{i % 12}",
                kind,
                value(i),
                t0 + timedelta(milliseconds=20 * i),
                1000.0 + 0.02 * i,
                "9f0c3a52-boot",
                True,
                unit=unit,
                extra=extra or {},
            )
        )
    return out


def bench_store(path: Path, readings: list[Reading], batch: int) -> float:
    store = Store(path, budget_bytes=4096 * MB, reserve_bytes=1 * MB).open()
    try:
        start = time.perf_counter()
        for i in range(0, len(readings), batch):
            store.add_readings(readings[i : i + batch])
        elapsed = time.perf_counter() - start
        assert store.stats.readings_committed == len(readings)
    finally:
        store.close()
    return len(readings) / elapsed


def bench_baseline(path: Path, readings: list[Reading], batch: int) -> float:
    rows = [_reading_row(r) for r in readings]  # encoded outside the timing
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        for script in MIGRATIONS:
            conn.executescript(script)
        start = time.perf_counter()
        for i in range(0, len(rows), batch):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT_READING, rows[i : i + batch])
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        assert conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == len(rows)
    finally:
        conn.close()
    return len(rows) / elapsed


def bench_alerts(path: Path, seconds: float) -> tuple[float, list[float]]:
    store = Store(path, budget_bytes=4096 * MB, reserve_bytes=1 * MB).open()
    lat: list[float] = []
    try:
        t0 = datetime(2026, 3, 1, tzinfo=UTC)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            a = Alert(
                AlertType.EMERGENCY_BUTTON,
                Severity.CRITICAL,
                t0,
                sensor_id="button",
                evidence={"gesture": "press"},
            )
            t = time.perf_counter()
            store.commit_alert(a)
            lat.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - start
    finally:
        store.close()
    return len(lat) / elapsed, lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readings", type=int, default=200_000, help="readings per run")
    ap.add_argument("--batch", type=int, default=200, help="readings per group commit")
    ap.add_argument("--rounds", type=int, default=6, help="alternating rounds; best of each")
    ap.add_argument("--alerts-s", type=float, default=3.0, help="seconds of alert commits")
    ap.add_argument(
        "--dir",
        default="/var/tmp",
        help="where the databases go; use the disk the gateway writes to, not a tmpfs",
    )
    args = ap.parse_args()
    readings = make_readings(args.readings)
    store_rates: list[float] = []
    base_rates: list[float] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        for r in range(args.rounds):  # alternate, so drift in machine load hits both
            if r % 2:
                base_rates.append(bench_baseline(d / f"base{r}.db", readings, args.batch))
                store_rates.append(bench_store(d / f"store{r}.db", readings, args.batch))
            else:
                store_rates.append(bench_store(d / f"store{r}.db", readings, args.batch))
                base_rates.append(bench_baseline(d / f"base{r}.db", readings, args.batch))
            print(
                f"round {r}: store {store_rates[-1]:,.0f}/s  baseline {base_rates[-1]:,.0f}/s",
                file=sys.stderr,
            )
        alert_rate, lat = bench_alerts(d / "alerts.db", args.alerts_s)
        fs = os.statvfs(d)
    store_best, base_best = max(store_rates), max(base_rates)
    q = statistics.quantiles(lat, n=100)
    print(
        json.dumps(
            {
                "readings_per_s": round(store_best),
                "baseline_readings_per_s": round(base_best),
                "ratio": round(base_best / store_best, 3),
                "readings_per_s_median": round(statistics.median(store_rates)),
                "baseline_readings_per_s_median": round(statistics.median(base_rates)),
                "batch": args.batch,
                "readings": args.readings,
                "alert_commits_per_s": round(alert_rate, 1),
                "alert_commit_ms_p50": round(q[49] * 1000, 3),
                "alert_commit_ms_p99": round(q[98] * 1000, 3),
                "alerts": len(lat),
                "synchronous": "FULL",
                "fs_block": fs.f_bsize,
                "dir": args.dir,
                "sqlite": sqlite3.sqlite_version,
            }
        )
    )


if __name__ == "__main__":
    main()
