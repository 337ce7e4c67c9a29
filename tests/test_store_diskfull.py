"""Disk full: alerts still commit, readings are pruned or dropped and counted, nothing corrupts.

Two ways to run out of room, both real:

* a tiny tmpfs (needs root and mount; skipped elsewhere): the store fills it itself, and then
  another file fills what is left, as logs do on a Pi's SD card;
* RLIMIT_FSIZE in a child process (works anywhere): writes past the limit fail with EFBIG.
  The child ignores SIGXFSZ, whose default action would kill it, so SQLite sees the error.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import ROOT

from gateway.model import Alert, AlertType, Reading, ReadingKind, Severity
from gateway.store import MB, Store

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def batch(n: int, k: int) -> list[Reading]:
    start = T0 + timedelta(hours=k)
    return [
        Reading(
            f"radar-{i % 3}",
            ReadingKind.DISTANCE,
            100.0 + i,
            start + timedelta(seconds=i),
            float(i),
            "boot-1",
            True,
            unit="cm",
        )
        for i in range(n)
    ]


def button(n: int) -> Alert:
    return Alert(
        AlertType.EMERGENCY_BUTTON, Severity.CRITICAL, T0, sensor_id="button", evidence={"n": n}
    )


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A fresh 8 MiB tmpfs."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the RLIMIT_FSIZE test covers this case")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def fill_disk(path: Path) -> int:
    """Write a file until the filesystem refuses; returns its size."""
    written = 0
    with open(path, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
                written += 65536
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return written


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_store_never_fills_the_disk_itself(tiny_fs: Path) -> None:
    store = Store(tiny_fs / "anxin.db", budget_bytes=512 * MB, reserve_bytes=512 * 1024).open()
    try:
        assert (tiny_fs / "anxin.db.reserve").stat().st_size == 512 * 1024
        for k in range(120):  # ~14 MB of readings onto an 8 MiB filesystem
            store.add_readings(batch(1000, k))
        assert store.stats.pruned_readings > 0, "the disk's size acted as the budget"
        assert store.stats.readings_committed + store.stats.readings_dropped == 120_000
        assert store.stats.readings_dropped < 5_000, "readings are pruned, hardly ever dropped"
        assert free_bytes(tiny_fs) >= 512 * 1024, "room kept back for the alerts"
        # The newest readings are the ones kept.
        last = store.conn.execute("SELECT MAX(ts) FROM readings").fetchone()[0]
        assert last == "2026-03-05T23:16:39.000Z"
        committed = [store.commit_alert(button(i)) for i in range(50)]
        assert store.stats.reserve_used == 0, "no reserve was needed"
        assert len(store.alerts()) == len(committed)
        assert store.integrity_ok()
    finally:
        store.close()


def test_disk_filled_by_another_file(tiny_fs: Path) -> None:
    db = tiny_fs / "anxin.db"
    store = Store(db, budget_bytes=512 * MB, reserve_bytes=1 * MB).open()
    try:
        for k in range(10):
            store.add_readings(batch(500, k))
        fill_disk(tiny_fs / "journal.log")
        assert free_bytes(tiny_fs) < 65536
        # Readings: no exception; each one is either committed or counted as dropped.
        before = store.stats.readings_committed
        for k in range(10, 30):
            store.add_readings(batch(500, k))
        assert store.stats.readings_committed - before + store.stats.readings_dropped == 20 * 500
        # Alerts: every one commits (the reserve file gives the filesystem room back).
        committed = [store.commit_alert(button(i)) for i in range(60)]
        assert store.stats.alerts_committed == 60
        assert not (tiny_fs / "anxin.db.reserve").exists(), "the reserve file was released"
        assert store.pending_count() >= 60
        assert store.integrity_ok()
    finally:
        store.close()
    # After a restart on the still-full disk everything committed is there.
    with Store(db, budget_bytes=512 * MB, reserve_bytes=1 * MB) as again:
        assert {a.id for a in again.alerts()} == {r.ref for r in committed}
        assert again.integrity_ok()


CHILD = r"""
import json, resource, signal, sys
from datetime import UTC, datetime, timedelta
from gateway.errors import StoreError
from gateway.model import Alert, AlertType, Reading, ReadingKind, Severity
from gateway.store import MB, Store

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
t0 = datetime(2026, 3, 1, tzinfo=UTC)
store = Store(sys.argv[1], budget_bytes=512 * MB, reserve_bytes=256 * 1024).open()
offered = 0
ids = []
errors = []
for k in range(100):
    rows = [Reading("radar", ReadingKind.DISTANCE, 100.0 + i, t0 + timedelta(hours=k, seconds=i),
                    float(i), "boot", True, unit="cm") for i in range(1000)]
    offered += len(rows)
    store.add_readings(rows)
    if k % 5 == 0:
        try:
            ids.append(store.commit_alert(Alert(AlertType.SMOKE, Severity.CRITICAL, t0)).ref)
        except StoreError as exc:
            errors.append(str(exc))
s = store.stats
store.close()
print(json.dumps({"offered": offered, "committed": s.readings_committed,
                  "dropped": s.readings_dropped, "pruned": s.pruned_readings,
                  "alerts": ids, "errors": errors}))
"""


@pytest.mark.parametrize("limit_mb", [2, 6])
def test_file_size_limit_in_child(tmp_path: Path, limit_mb: int) -> None:
    """2 MiB: the WAL hits the limit before its checkpoint; 6 MiB: the database file does."""
    db = tmp_path / "anxin.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    done = subprocess.run(
        [sys.executable, str(script), str(db), str(limit_mb * MB)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["errors"] == [], "every alert commits"
    assert len(out["alerts"]) == 20
    assert out["committed"] + out["dropped"] == out["offered"]
    assert out["dropped"] > 0 or out["pruned"] > 0, "the limit was reached"
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = {r[0] for r in conn.execute("SELECT id FROM alerts")}
        assert set(out["alerts"]) <= stored
        assert conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0] > 0
    finally:
        conn.close()
