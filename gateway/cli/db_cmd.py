"""`anxin db`: look inside the gateway's database without changing it.

Opens the file read-only (the running service may hold it) through sqlite-utils and shows
what an installer or a maintainer asks first: is it sound, how big, how many readings,
which alerts are open, how deep the outbox is.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path
from typing import Any

from gateway import config
from gateway.cli.config_cmd import add_config_arg
from gateway.errors import StoreError
from gateway.store.migrations import LATEST


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("db", help="inspect the gateway database (read-only)")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    info = dsub.add_parser("info", help="schema, size, row counts, open alerts and outbox depth")
    check = dsub.add_parser("check", help="run PRAGMA integrity_check; exit 1 unless ok")
    for q in (info, check):
        add_config_arg(q)
        q.add_argument(
            "--db", metavar="PATH", help="database file (default: storage.path of the config)"
        )
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=_info)
    check.set_defaults(func=_check)


def _db_path(args: argparse.Namespace) -> Path:
    path = Path(args.db) if args.db else Path(config.load(args.config).storage.path)
    if not path.is_file():
        raise StoreError(f"database {path} does not exist")
    return path


def _open_ro(path: Path) -> sqlite3.Connection:
    try:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from exc


def collect(path: Path) -> dict[str, Any]:
    """What `anxin db info` shows, as plain data."""
    conn = _open_ro(path)
    try:
        return _collect(conn, path)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"database {path} is unreadable: {exc}") from exc
    finally:
        conn.close()


def _collect(conn: sqlite3.Connection, path: Path) -> dict[str, Any]:
    from sqlite_utils import Database

    db = Database(conn, recursive_triggers=False, execute_plugins=False)
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    tables = {name: db[name].count for name in sorted(db.table_names())}
    out: dict[str, Any] = {
        "path": str(path),
        "schema": version,
        "schema_supported": LATEST,
        "size_bytes": pages * page_size,
        "free_bytes": free * page_size,
        "tables": tables,
    }
    if "alerts" in tables:
        out["open_alerts"] = [
            {
                "id": r[0],
                "type": r[1],
                "severity": r[2],
                "state": r[3],
                "ts": r[4],
                "sensor": r[5],
                "room": r[6],
            }
            for r in conn.execute(
                "SELECT id, type, severity, state, ts, sensor_id, room FROM alerts"
                " WHERE state NOT IN ('acknowledged', 'cancelled', 'resolved') ORDER BY ts"
            )
        ]
    if "outbox" in tables:
        depth = dict(
            conn.execute(
                "SELECT priority, COUNT(*) FROM outbox WHERE delivered_ts IS NULL GROUP BY priority"
            ).fetchall()
        )
        oldest = conn.execute(
            "SELECT MIN(created_ts) FROM outbox WHERE delivered_ts IS NULL"
        ).fetchone()[0]
        out["outbox"] = {
            "pending": sum(depth.values()),
            "pending_by_priority": {str(k): v for k, v in sorted(depth.items())},
            "oldest_pending_ts": oldest,
            "delivered_kept": tables["outbox"] - sum(depth.values()),
        }
    if "readings" in tables:
        first, last = conn.execute("SELECT MIN(ts), MAX(ts) FROM readings").fetchone()
        out["readings"] = {"count": tables["readings"], "first_ts": first, "last_ts": last}
    if "counters" in tables:
        out["counters"] = dict(conn.execute("SELECT name, value FROM counters ORDER BY name"))
    return out


def _info(args: argparse.Namespace) -> int:
    data = collect(_db_path(args))
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    print(f"database   {data['path']}")
    print(f"schema     {data['schema']} (this gateway: {data['schema_supported']})")
    print(
        f"size       {data['size_bytes'] / 1e6:.1f} MB"
        f" ({data['free_bytes'] / 1e6:.1f} MB free pages)"
    )
    print("tables     " + ", ".join(f"{k} {v}" for k, v in data["tables"].items()))
    if "readings" in data:
        r = data["readings"]
        print(f"readings   {r['count']} from {r['first_ts']} to {r['last_ts']}")
    if "outbox" in data:
        o = data["outbox"]
        print(
            f"outbox     {o['pending']} pending (oldest {o['oldest_pending_ts']}),"
            f" {o['delivered_kept']} delivered kept"
        )
    alerts = data.get("open_alerts", [])
    print(f"open alerts {len(alerts)}")
    for a in alerts:
        print(
            f"  {a['ts']}  {a['severity']:<8} {a['type']:<20} {a['state']:<10}"
            f" {a['sensor'] or '-'} in {a['room'] or '-'}  {a['id']}"
        )
    return 0


def _check(args: argparse.Namespace) -> int:
    path = _db_path(args)
    conn = _open_ro(path)
    try:
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"database {path} is unreadable: {exc}") from exc
    finally:
        conn.close()
    print("\n".join(rows))
    return 0 if rows == ["ok"] else 1
