"""Durability: an alert whose commit returned survives SIGKILL, and the file stays sound.

A child process commits alerts in a loop (with readings and state changes in between, as the
service would) and prints each alert id only after ``commit_alert`` returned. The parent
kills it with SIGKILL at a random moment, then checks that every printed id is in the
database with its outbox row, and that ``PRAGMA integrity_check`` says ok. The same file is
reused across rounds, so each round also recovers the WAL the previous kill left behind.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import ROOT

from gateway.model import Alert, AlertType, Reading, ReadingKind, Severity
from gateway.store import Store

ROUNDS = 50

CHILD = r"""
import sys
from datetime import UTC, datetime
from gateway.model import Alert, AlertState, AlertType, Reading, ReadingKind, Severity
from gateway.store import Store

store = Store(sys.argv[1], budget_bytes=64 << 20, reserve_bytes=1 << 20).open()
print("ready", flush=True)
n = 0
while True:
    now = datetime.now(UTC)
    if n % 3 == 0:
        store.add_readings([
            Reading("motion-living", ReadingKind.MOTION, True, now, float(n), "boot", True)
            for _ in range(50)
        ])
    row = store.commit_alert(
        Alert(AlertType.EMERGENCY_BUTTON, Severity.CRITICAL, now, sensor_id="button-bed",
              evidence={"n": n})
    )
    print("A", row.ref, flush=True)
    if n % 4 == 1:
        store.set_alert_state(row.ref, AlertState.ACKNOWLEDGED, note="carer called")
        print("S", row.ref, flush=True)
    n += 1
"""


def _check(db: Path, lines: list[str]) -> None:
    """``lines``: "A id" once commit_alert returned, "S id" once the acknowledgement did."""
    ids = [line[2:] for line in lines if line.startswith("A ")]
    acked = [line[2:] for line in lines if line.startswith("S ")]
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = {r[0] for r in conn.execute("SELECT id FROM alerts")}
        queued = {r[0] for r in conn.execute("SELECT ref FROM outbox WHERE kind='alert'")}
        states = {r[0] for r in conn.execute("SELECT alert_id FROM alert_states")}
        closed = {r[0] for r in conn.execute("SELECT id FROM alerts WHERE state='acknowledged'")}
        ack_rows = {
            r[0]
            for r in conn.execute(
                "SELECT alert_id FROM alert_states WHERE state='acknowledged' AND note IS NOT NULL"
            )
        }
        ack_msgs = {
            r[0]
            for r in conn.execute("SELECT ref FROM outbox WHERE body LIKE '%\"acknowledged\"%'")
        }
    finally:
        conn.close()
    assert not [i for i in acked if i not in closed], "reported acknowledgement lost"
    assert not [i for i in acked if i not in ack_rows], "acknowledgement without history row"
    assert not [i for i in acked if i not in ack_msgs], "acknowledgement not queued"
    lost = [i for i in ids if i not in stored]
    assert not lost, f"{len(lost)} alerts reported committed but missing: {lost[:5]}"
    assert not [i for i in ids if i not in queued], "alert stored without its outbox row"
    assert not [i for i in ids if i not in states], "alert stored without its state row"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_loses_no_reported_alert(tmp_path: Path) -> None:
    db = tmp_path / "anxin.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(int(os.environ.get("ANXIN_TEST_SEED", "20260301")))
    reported: list[str] = []
    for round_no in range(ROUNDS):
        child = subprocess.Popen(
            [sys.executable, str(script), str(db)], stdout=subprocess.PIPE, text=True, env=env
        )
        assert child.stdout is not None
        try:
            assert child.stdout.readline().strip() == "ready", f"child failed in round {round_no}"
            # Let it commit a few (0-8) alerts, then kill it somewhere inside the loop.
            for _ in range(rng.randint(0, 8)):
                line = child.stdout.readline().strip()
                assert line, f"child died in round {round_no}"
                reported.append(line)
            time.sleep(rng.uniform(0.0, 0.03))
        finally:
            child.send_signal(signal.SIGKILL)
            rest = child.stdout.read()
            child.wait()
            child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        # Only whole lines were reported: text after the last newline was cut off by the kill.
        reported.extend(line for line in rest.split("\n")[:-1] if line)
        _check(db, reported)
    assert sum(1 for x in reported if x.startswith("A ")) >= ROUNDS, "hardly any commits"
    assert any(x.startswith("S ") for x in reported), "no state change was reported"


def test_wal_and_full_sync(store: Store) -> None:
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_threads_commit_alerts_and_readings_together(store: Store) -> None:
    """The service runs the store on a worker thread; other callers may share it."""
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    refs: list[str] = []

    def alerts() -> None:
        for i in range(100):
            refs.append(
                store.commit_alert(Alert(AlertType.TEST, Severity.INFO, t0, evidence={"i": i})).ref
                or ""
            )

    def readings() -> None:
        for _ in range(50):
            store.add_readings([Reading("m", ReadingKind.MOTION, True, t0, 0.0, "b", True)] * 40)

    threads = [threading.Thread(target=f) for f in (alerts, readings, alerts, readings)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert {a.id for a in store.alerts(limit=1000)} == set(refs)
    assert len(refs) == 200
    assert store.stats.readings_committed == 4000
    assert store.last_reading_id() == 4000
    assert store.integrity_ok()


def test_commit_alert_is_idempotent(store: Store) -> None:
    a = Alert(AlertType.FALL, Severity.CRITICAL, datetime(2026, 3, 1, tzinfo=UTC), room="bathroom")
    first = store.commit_alert(a)
    again = store.commit_alert(a)
    assert again.seq == first.seq
    assert again.msg_id == first.msg_id
    assert store.pending_count() == 1
    assert len(store.alert_history(a.id)) == 1
