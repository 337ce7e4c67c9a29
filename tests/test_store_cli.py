"""`anxin db info` and `anxin db check`, run as the installer would, against real files."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from conftest import run_cli

from gateway.model import Alert, AlertState, AlertType, Reading, ReadingKind, Severity
from gateway.store import Store

T0 = datetime(2026, 3, 1, tzinfo=UTC)
FIXTURE = Path(__file__).parent / "fixtures" / "store_v1.sqlite"


def test_db_info_json_while_the_store_is_open(store: Store) -> None:
    store.add_readings(
        [Reading("pad", ReadingKind.IN_BED, True, T0, 1.0, "b", True) for _ in range(7)]
    )
    raised = store.commit_alert(Alert(AlertType.FALL, Severity.CRITICAL, T0, room="bathroom"))
    done = store.commit_alert(Alert(AlertType.TEST, Severity.INFO, T0))
    store.set_alert_state(done.ref or "", AlertState.RESOLVED)
    store.mark_delivered([done.seq])
    result = run_cli("db", "info", "--json", "--db", str(store.path))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["tables"]["readings"] == 7
    assert data["readings"]["first_ts"] == "2026-03-01T00:00:00.000Z"
    assert [a["id"] for a in data["open_alerts"]] == [raised.ref]
    assert data["open_alerts"][0]["room"] == "bathroom"
    assert data["outbox"]["pending"] == 2  # the fall, and the test alert's "resolved" update
    assert data["outbox"]["pending_by_priority"] == {"0": 1, "2": 1}
    assert data["outbox"]["delivered_kept"] == 1
    assert data["schema"] == data["schema_supported"]


def test_db_info_text_uses_the_config_storage_path(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copy(FIXTURE, db)
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f'[gateway]\nid = "gw"\nhome = "h"\n\n[storage]\npath = "{db}"\n')
    before = db.read_bytes()
    result = run_cli("db", "info", "--config", str(cfg))
    assert result.returncode == 0, result.stderr
    assert "schema     1 (this gateway: 2)" in result.stdout
    assert "open alerts 1" in result.stdout
    assert "sensor_offline" in result.stdout
    assert db.read_bytes() == before, "inspection must not migrate or write"


def test_db_check_ok_and_corrupt(tmp_path: Path) -> None:
    good = tmp_path / "good.db"
    with Store(good) as s:
        s.add_readings([Reading("m", ReadingKind.MOTION, True, T0, 0.0, "b", True)] * 3000)
    result = run_cli("db", "check", "--db", str(good))
    assert (result.returncode, result.stdout.strip()) == (0, "ok")
    bad = tmp_path / "bad.db"
    data = bytearray(good.read_bytes())
    page = 4096
    data[3 * page : 6 * page] = b"\xa5" * (3 * page)  # trash three b-tree pages
    bad.write_bytes(bytes(data))
    result = run_cli("db", "check", "--db", str(bad))
    assert result.returncode == 1
    assert "ok" not in result.stdout.split()


def test_db_missing_file(tmp_path: Path) -> None:
    result = run_cli("db", "info", "--db", str(tmp_path / "none.db"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"anxin: error: database {tmp_path / 'none.db'} does not exist"
