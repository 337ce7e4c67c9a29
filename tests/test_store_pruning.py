"""Pruning under a size budget: readings and delivered messages go oldest-first, by age and by
size; alerts and undelivered messages never go. Batches that do not fit are cut, not lost whole.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.errors import StorageFullError
from gateway.model import Alert, AlertType, Reading, ReadingKind, Severity
from gateway.store import Store

T0 = datetime(2026, 3, 1, tzinfo=UTC)
KB = 1024


def readings(n: int, start: datetime = T0, step_s: float = 1.0) -> list[Reading]:
    return [
        Reading(
            f"radar-{i % 3}",
            ReadingKind.DISTANCE,
            100.0 + i % 250,
            start + timedelta(seconds=i * step_s),
            float(i),
            "boot-1",
            True,
            unit="cm",
            extra={"gate": i % 8},
        )
        for i in range(n)
    ]


def alert(n: int, ts: datetime = T0) -> Alert:
    return Alert(
        AlertType.EMERGENCY_BUTTON, Severity.CRITICAL, ts, sensor_id="button", evidence={"n": n}
    )


def ids(store: Store, sql: str) -> list[int]:
    return [int(r[0]) for r in store.conn.execute(sql)]


def small_store(
    tmp_path: Path, budget_kb: int = 2048, reserve_kb: int = 256, **kw: timedelta
) -> Store:
    return Store(
        tmp_path / "small.db", budget_bytes=budget_kb * KB, reserve_bytes=reserve_kb * KB, **kw
    ).open()


def file_pages_bytes(store: Store) -> int:
    return int(store.conn.execute("PRAGMA page_count").fetchone()[0]) * int(
        store.conn.execute("PRAGMA page_size").fetchone()[0]
    )


def test_age_limits_prune_readings_and_delivered_only(tmp_path: Path) -> None:
    store = small_store(
        tmp_path,
        budget_kb=64 * 1024,
        readings_max_age=timedelta(days=7),
        delivered_max_age=timedelta(days=2),
    )
    try:
        store.add_readings(readings(100, T0 - timedelta(days=30), step_s=60))  # old
        store.add_readings(readings(50, T0 - timedelta(days=1)))  # recent
        old_alert = store.commit_alert(alert(1, T0 - timedelta(days=300)))
        delivered = [store.enqueue("events", {"n": i}) for i in range(10)]
        undelivered = [store.enqueue("events", {"n": i}) for i in range(10, 15)]
        store.mark_delivered(r.seq for r in delivered)
        # Readings: only age counts (the delivered rows were marked just now).
        assert store.prune(now=T0) == (100, 0)
        assert store.conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 50
        # Three days later the delivered messages are past their age; nothing else is.
        r, o = store.prune(now=datetime.now(UTC) + timedelta(days=3))
        assert o == 10
        assert ids(store, "SELECT seq FROM outbox ORDER BY seq") == [old_alert.seq] + [
            u.seq for u in undelivered
        ]
        assert store.alert(old_alert.ref or "") is not None, "alerts are never pruned"
        assert store.pending_count() == 6
        assert store.stats.pruned_outbox == 10
        assert store.stats.pruned_readings == 100 + r
    finally:
        store.close()


def test_size_budget_prunes_oldest_first_and_keeps_alerts(tmp_path: Path) -> None:
    store = small_store(tmp_path)
    try:
        alerts = [store.commit_alert(alert(i)) for i in range(5)]
        delivered = [store.enqueue("telemetry", {"pad": "x" * 500, "n": i}) for i in range(40)]
        store.mark_delivered(r.seq for r in delivered)
        undelivered = [store.enqueue("events", {"n": i}) for i in range(20)]
        last = 0
        for k in range(80):  # ~4 MB of readings into a 2 MB budget
            last = store.add_readings(readings(500, T0 + timedelta(hours=k)))
        assert store.stats.pruned_readings > 0
        assert store.stats.readings_dropped == 0, "small batches always fit after pruning"
        kept = ids(store, "SELECT id FROM readings ORDER BY id")
        assert kept[-1] == last
        assert kept == list(range(kept[0], last + 1)), "pruned oldest-first, no holes"
        assert store.stats.readings_committed == 80 * 500
        # Alerts and undelivered messages are all there; delivered ones went oldest-first.
        assert [a.id for a in store.alerts()] == [a.ref for a in alerts]
        assert {r.seq for r in store.pending(1000)} == {r.seq for r in alerts + undelivered}
        left = ids(store, "SELECT seq FROM outbox WHERE delivered_ts IS NOT NULL ORDER BY seq")
        assert left == [r.seq for r in delivered][len(delivered) - len(left) :]
        assert store.stats.pruned_outbox == len(delivered) - len(left)
        assert file_pages_bytes(store) <= 2048 * KB
        assert store.integrity_ok()
    finally:
        store.close()


def test_explicit_prune_goes_below_target(tmp_path: Path) -> None:
    store = small_store(tmp_path)
    try:
        for k in range(30):
            store.add_readings(readings(500, T0 + timedelta(hours=k)))
        target = (2048 - 256) * KB * 0.8
        store.prune(now=T0)
        assert store.size_bytes() <= target
        assert store.conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0] > 0
    finally:
        store.close()


def test_oversized_batch_keeps_its_newest_part(tmp_path: Path) -> None:
    """A batch larger than the whole budget: the newest part is kept, the rest counted."""
    store = small_store(tmp_path)
    try:
        batch = readings(40_000)
        last = store.add_readings(batch)
        assert last > 0, "a batch that does not fit whole must not be dropped whole"
        stored = [r for _id, r in store.readings_after(0, 100_000)]
        assert stored, "part of the batch is stored"
        assert stored == batch[-len(stored) :], "the newest part, in order"
        assert store.stats.readings_dropped == len(batch) - len(stored)
        assert store.stats.readings_committed == len(stored)
        assert file_pages_bytes(store) <= 2048 * KB
        assert store.integrity_ok()
    finally:
        store.close()


def _fill_with_undelivered(store: Store) -> int:
    """Queue messages, smaller and smaller, until not even a tiny one fits."""
    n = 0
    for pad in (1000, 100, 0):
        while True:
            assert n < 100_000, "the budget never filled"
            try:
                store.enqueue("events", {"pad": "y" * pad, "n": n})
            except StorageFullError:
                break
            n += 1
    return n


def test_budget_full_of_undelivered_alerts_still_commit(tmp_path: Path) -> None:
    store = small_store(tmp_path)
    try:
        queued = _fill_with_undelivered(store)
        assert queued > 100
        # Readings find nothing to prune: what does not fit in the pages the readings
        # table already has is dropped and counted, no exception.
        store.add_readings(readings(200))
        fit = store.stats.readings_committed
        assert fit < 100
        assert store.stats.readings_dropped == 200 - fit
        # Alerts commit from the reserved pages, many of them.
        committed = [store.commit_alert(alert(i)) for i in range(50)]
        assert store.stats.reserve_used >= 1
        assert store.pending_count() == queued + 50
        assert {a.id for a in store.alerts()} == {r.ref for r in committed}
        # ... and readings did not grow into the reserve afterwards.
        # (Pruning may swap the few stored readings for newer ones in the same pages.)
        pages = file_pages_bytes(store)
        before = store.stats.readings_committed
        store.add_readings(readings(1000))
        now_fit = store.stats.readings_committed - before
        assert now_fit < 100
        assert store.stats.readings_dropped == 1200 - fit - now_fit
        assert file_pages_bytes(store) == pages
        assert store.integrity_ok()
    finally:
        store.close()
    with Store(tmp_path / "small.db", budget_bytes=2048 * KB, reserve_bytes=256 * KB) as again:
        assert len(again.alerts()) == 50
        assert again.pending_count() == queued + 50


def test_budget_is_a_hard_cap_on_the_file(tmp_path: Path) -> None:
    store = small_store(tmp_path)
    try:
        for k in range(40):
            store.add_readings(readings(1000, T0 + timedelta(hours=k)))
            assert file_pages_bytes(store) <= (2048 - 256) * KB + 64 * KB
    finally:
        store.close()
    conn = sqlite3.connect(tmp_path / "small.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
