"""Schema migrations: from an empty file, from a real schema-1 database, and refusing newer ones.

tests/fixtures/store_v1.sqlite was written by tests/fixtures/make_store_v1.py (schema 1 only,
plain sqlite3); it is committed so that the upgrade path is tested against the bytes an old
gateway left on disk, not against what today's code would write.
"""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.errors import StoreError
from gateway.model import Alert, AlertState, AlertType, Severity
from gateway.store import Store
from gateway.store.migrations import LATEST, MIGRATIONS

FIXTURE = Path(__file__).parent / "fixtures" / "store_v1.sqlite"
ACKED = "0190f0a0-0000-7000-8000-000000000001"
OPEN = "0190f0a0-0000-7000-8000-000000000002"


def _schema(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Tables and indexes with their columns, as SQLite reports them (order-independent)."""
    conn = sqlite3.connect(path)
    try:
        out: dict[str, list[tuple[object, ...]]] = {}
        for kind, name in conn.execute(
            "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
        ):
            pragma = "table_info" if kind == "table" else "index_info"
            out[f"{kind}:{name}"] = [tuple(r) for r in conn.execute(f"PRAGMA {pragma}({name})")]
        return out
    finally:
        conn.close()


def _v1_copy(tmp_path: Path) -> Path:
    path = tmp_path / "old.db"
    shutil.copy(FIXTURE, path)
    return path


def test_fixture_is_schema_1() -> None:
    conn = sqlite3.connect(f"file:{FIXTURE}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM alerts").fetchone()[0] == 2
    finally:
        conn.close()
    assert LATEST >= 2, "the upgrade test needs at least one migration after schema 1"


def test_empty_file_gets_latest_schema(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    path.touch()  # an empty file, as left by a failed first start
    with Store(path) as store:
        assert store.schema_version() == LATEST
        assert store.integrity_ok()
        assert store.pending_count() == 0
        assert store.alerts() == []
        assert store.counter("uplink.seq") == 0


def test_v1_database_upgrades_and_keeps_everything(tmp_path: Path) -> None:
    path = _v1_copy(tmp_path)
    with Store(path) as store:
        assert store.schema_version() == LATEST
        assert store.integrity_ok()
        # counters (uplink seq, replay protection) survive
        assert store.counter("uplink.seq") == 41
        assert not store.advance_counter("replay:button-bed", 1234567)
        assert store.advance_counter("replay:button-bed", 1234568)
        # alerts and their history
        acked = store.alert(ACKED)
        assert acked is not None
        assert (acked.type, acked.severity, acked.state) == (
            AlertType.EMERGENCY_BUTTON,
            Severity.CRITICAL,
            AlertState.ACKNOWLEDGED,
        )
        assert dict(acked.evidence) == {"gesture": "press"}
        assert acked.ts == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
        assert [s for s, _ts, _n in store.alert_history(ACKED)] == [
            AlertState.RAISED,
            AlertState.DELIVERED,
            AlertState.ACKNOWLEDGED,
        ]
        assert [a.id for a in store.alerts(open_only=True)] == [OPEN]
        # the outbox: undelivered rows in order, critical first; delivered rows kept
        pending = store.pending()
        assert [(r.kind, r.priority, r.attempts) for r in pending] == [
            ("alert", 1, 0),
            ("events", 2, 3),
        ]
        assert pending[0].body == {"alert_id": OPEN, "state": "raised"}
        first = store.outbox_row(1)
        assert first is not None
        assert first.delivered_ts is not None
        # readings and sensors
        readings = [r for _id, r in store.readings_after(0, 100)]
        assert [(r.sensor_id, r.kind.value, r.value) for r in readings] == [
            ("bedpad", "in_bed", True),
            ("bedpad", "in_bed", False),
            ("button-bed", "battery", 97),
            ("button-bed", "button", "press"),
        ]
        assert dict(readings[2].extra) == {"packet_id": 17}
        health = {h.sensor.id: h for h in store.sensors()}
        assert health["button-bed"].battery_pct == 97.0
        assert health["button-bed"].last_seen_ts == datetime(2026, 3, 1, 7, 59, 58, tzinfo=UTC)
        # what schema 2 added works on the upgraded file
        store.put_learned("inactivity.quantiles", {"night": [1, 2, 3]})
        assert store.learned("inactivity.quantiles") == {"night": [1, 2, 3]}
        updated = store.set_alert_state(OPEN, AlertState.ACKNOWLEDGED, note="daughter called")
        assert updated is not None
        assert updated.state is AlertState.ACKNOWLEDGED
        assert store.alert_history(OPEN)[-1] == (
            AlertState.ACKNOWLEDGED,
            store.alert_history(OPEN)[-1][1],
            "daughter called",
        )
        # seq keeps rising past the old rows
        row = store.commit_alert(
            Alert(AlertType.TEST, Severity.INFO, datetime(2026, 3, 2, tzinfo=UTC))
        )
        assert row.seq > 4


def test_upgraded_schema_equals_fresh_schema(tmp_path: Path) -> None:
    old = _v1_copy(tmp_path)
    with Store(old):
        pass
    fresh = tmp_path / "fresh.db"
    with Store(fresh):
        pass
    assert _schema(old) == _schema(fresh)


def test_each_migration_step_from_every_version(tmp_path: Path) -> None:
    """A database at any released version n opens and reaches LATEST."""
    for n in range(len(MIGRATIONS) + 1):
        path = tmp_path / f"v{n}.db"
        conn = sqlite3.connect(path, isolation_level=None)
        for script in MIGRATIONS[:n]:
            conn.executescript(script)
        conn.execute(f"PRAGMA user_version={n}")
        conn.close()
        with Store(path) as store:
            assert store.schema_version() == LATEST, n
        assert _schema(path) == _schema(tmp_path / f"v{0}.db"), n


def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = _v1_copy(tmp_path)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={LATEST + 1}")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=rf"schema {LATEST + 1}, newer than this gateway"):
        Store(path).open()
    assert path.read_bytes() == before
    assert not path.with_name(path.name + ".reserve").exists()


def test_failed_migration_leaves_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration that fails half-way rolls back: the file stays at the old version."""
    import gateway.store.db as db

    path = _v1_copy(tmp_path)
    broken = (MIGRATIONS[0], MIGRATIONS[1] + ";\nCREATE TABLE learned (x INTEGER)")
    monkeypatch.setattr(db, "MIGRATIONS", broken)
    with pytest.raises(StoreError, match="unusable"):
        Store(path).open()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        cols = [r[1] for r in conn.execute("PRAGMA table_info(alert_states)")]
        assert "note" not in cols
    finally:
        conn.close()


def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        Store(path).open()
