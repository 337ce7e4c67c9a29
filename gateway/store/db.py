"""The SQLite store: readings, alerts and their states, the outbox, sensors, counters.

Guarantees (see DESIGN.md, "Storage guarantees"):

* WAL with ``synchronous=FULL``: a commit that returned is on the disk. Alerts and their
  state changes commit one at a time, before anything is sent or shown; readings come in
  batches (group commit), so one fsync covers many.
* The outbox is the only thing the uplink reads. Each row has a ``seq`` from AUTOINCREMENT,
  which SQLite never reuses, so ``seq`` is strictly increasing across restarts and pruning.
* A hard size budget through ``PRAGMA max_page_count``. Readings and delivered messages are
  pruned oldest-first when the database nears it; alerts never are.
* Disk full: alerts still commit. Two reserves cover the two ways space runs out: the
  budget keeps ``reserve`` pages that only alert commits may use (the page cap is raised
  for them alone), and a preallocated reserve file beside the database is deleted to give
  the filesystem back room when the disk itself is full.

The class is synchronous and thread-safe behind one lock; :mod:`gateway.store.aio` runs it
on one dedicated thread for the asyncio loop.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from gateway.clock import rfc3339, utc_now
from gateway.errors import StorageFullError, StoreError
from gateway.model import (
    Alert,
    AlertState,
    AlertType,
    Reading,
    ReadingKind,
    Sensor,
    SensorKind,
    Severity,
    new_id,
)
from gateway.store.migrations import LATEST, MIGRATIONS

log = logging.getLogger(__name__)

MB = 1024 * 1024
_T = TypeVar("_T")
_FULL_MARKERS = ("database or disk is full", "disk i/o error")
# A write refused for want of room: ENOSPC gives SQLITE_FULL; EFBIG (a file-size limit, or
# a filesystem's largest file) gives SQLITE_IOERR_WRITE. Both are handled as "full": the
# reading is dropped and counted, the alert retried from the reserve; a write error that
# persists after that is raised.
_FULL_CODES = frozenset({sqlite3.SQLITE_FULL, getattr(sqlite3, "SQLITE_IOERR_WRITE", 778)})
# Room the WAL may need on disk beyond its current size: SQLite checkpoints it at 1000
# pages by default, and one transaction can overshoot that.
_WAL_ALLOWANCE_PAGES = 1000 + 256
_DISK_CHECK_INTERVAL_S = 1.0


def _is_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code in _FULL_CODES
    return any(m in str(exc).lower() for m in _FULL_MARKERS)


_INSERT_READING = (
    "INSERT INTO readings(sensor_id, kind, value, unit, ts, mono, boot_id, synced, extra)"
    " VALUES (?,?,?,?,?,?,?,?,?)"
)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One message waiting for (or done with) the broker."""

    seq: int
    msg_id: str
    kind: str
    priority: int
    ref: str | None
    body: Mapping[str, Any]
    created_ts: datetime
    attempts: int
    delivered_ts: datetime | None = None


@dataclass(frozen=True, slots=True)
class SensorHealth:
    """What the registry knows of a sensor now."""

    sensor: Sensor
    last_seen_ts: datetime | None
    last_seen_mono: float | None
    battery_pct: float | None
    rssi_dbm: float | None


@dataclass(slots=True)
class StoreStats:
    readings_committed: int = 0
    readings_dropped: int = 0
    alerts_committed: int = 0
    pruned_readings: int = 0
    pruned_outbox: int = 0
    reserve_used: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Store:
    """The gateway's durable state in one SQLite file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        budget_bytes: int = 512 * MB,
        reserve_bytes: int = 8 * MB,
        readings_max_age: timedelta = timedelta(days=90),
        delivered_max_age: timedelta = timedelta(days=14),
    ) -> None:
        self.path = Path(path)
        self.budget_bytes = budget_bytes
        self.reserve_bytes = reserve_bytes
        self.readings_max_age = readings_max_age
        self.delivered_max_age = delivered_max_age
        self.stats = StoreStats()
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._page_size = 4096
        self._reserve_file = self.path.with_name(self.path.name + ".reserve")
        self._disk_checked = 0.0

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> Store:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        self._conn = conn
        try:
            # Refuse a newer schema before anything (even the journal mode) changes the file.
            self._check_version()
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=10000")
            self._page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            self._migrate()
            self._ensure_reserve_file()  # first, so the disk-derived cap sees it taken
            self._apply_budget(extra_pages=0)
        except sqlite3.DatabaseError as exc:
            conn.close()
            self._conn = None
            raise StoreError(f"database {self.path} is unusable: {exc}") from exc
        except BaseException:
            conn.close()
            self._conn = None
            raise
        return self

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error as exc:
                    log.warning("checkpoint on close failed: %s", exc)
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self.open() if self._conn is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("store is not open")
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _check_version(self) -> int:
        version = self.schema_version()
        if version > LATEST:
            raise StoreError(
                f"database {self.path} has schema {version}, newer than this gateway "
                f"understands ({LATEST}); refusing to touch it"
            )
        return version

    def _migrate(self) -> None:
        version = self._check_version()
        for number in range(version + 1, LATEST + 1):
            script = MIGRATIONS[number - 1]
            with self._tx() as conn:
                for statement in _split_sql(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={number}")
            log.info("store migrated to schema %d", number)

    # ------------------------------------------------------------------ size budget

    def _apply_budget(self, *, extra_pages: int) -> None:
        """Cap the file at the budget, or lower when the filesystem has less room.

        The disk-derived cap keeps ``reserve_bytes`` and the WAL's room free on the
        filesystem, so readings hit the cap (and prune) before the disk is full, and
        alerts, whose commits add ``extra_pages``, still find real space for those pages.
        """
        pages = (self.budget_bytes - self.reserve_bytes) // self._page_size
        disk = self._disk_cap_pages()
        if disk is not None:
            pages = min(pages, disk)
        pages = max(16, pages + extra_pages)
        self.conn.execute(f"PRAGMA max_page_count={int(pages)}")
        self._disk_checked = time.monotonic()

    def _disk_cap_pages(self) -> int | None:
        try:
            fs = os.statvfs(self.path.parent)
            wal = self.path.with_name(self.path.name + "-wal")
            wal_bytes = wal.stat().st_size if wal.exists() else 0
        except OSError:
            return None
        page = self._page_size
        free = fs.f_bavail * fs.f_frsize
        wal_room = max(0, _WAL_ALLOWANCE_PAGES * page - wal_bytes)
        count = int(self.conn.execute("PRAGMA page_count").fetchone()[0])
        return count + (free - wal_room - self.reserve_bytes) // page

    def _refresh_budget(self) -> None:
        """Follow the disk's free space (other programs fill it too), at most once a second."""
        if time.monotonic() - self._disk_checked >= _DISK_CHECK_INTERVAL_S:
            self._apply_budget(extra_pages=0)

    def size_bytes(self) -> int:
        count = int(self.conn.execute("PRAGMA page_count").fetchone()[0])
        free = int(self.conn.execute("PRAGMA freelist_count").fetchone()[0])
        return (count - free) * self._page_size

    def _ensure_reserve_file(self) -> None:
        if self._reserve_file.exists():
            return
        try:
            with open(self._reserve_file, "wb") as fh:
                os.posix_fallocate(fh.fileno(), 0, self.reserve_bytes)
        except OSError as exc:
            # Not fatal: the disk is already tight. Try again after the next prune.
            self._reserve_file.unlink(missing_ok=True)
            log.warning("could not preallocate reserve file %s: %s", self._reserve_file, exc)

    def _release_reserve_file(self) -> bool:
        if self._reserve_file.exists():
            self._reserve_file.unlink()
            self.stats.reserve_used += 1
            log.error(
                "disk full: released the %d-byte reserve so alerts can commit", self.reserve_bytes
            )
            return True
        return False

    # ------------------------------------------------------------------ counters

    def counter(self, name: str, default: int = 0) -> int:
        with self._lock:
            row = self.conn.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
        return int(row[0]) if row else default

    def set_counter(self, name: str, value: int) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO counters(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                (name, int(value)),
            )

    def advance_counter(self, name: str, value: int) -> bool:
        """Store ``value`` only if it is greater than the stored one (replay protection).

        Returns False, storing nothing, when ``value`` is not greater.
        """
        with self._tx() as conn:
            row = conn.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
            if row is not None and int(row[0]) >= value:
                return False
            conn.execute(
                "INSERT INTO counters(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                (name, int(value)),
            )
        return True

    # ------------------------------------------------------------------ day summary

    def activity_between(
        self, start: datetime, end: datetime, kinds: Iterable[str]
    ) -> tuple[datetime | None, datetime | None, int]:
        """First and last time, and count, of readings of ``kinds`` in [start, end)."""
        names = sorted(set(kinds))
        marks = ",".join("?" * len(names))
        with self._lock:
            first, last, n = self.conn.execute(
                f"SELECT MIN(ts), MAX(ts), COUNT(*) FROM readings WHERE ts >= ? AND ts < ?"  # noqa: S608 - only placeholders are formatted in
                f" AND kind IN ({marks})",
                (_ts(start.astimezone(UTC)), _ts(end.astimezone(UTC)), *names),
            ).fetchone()
        return _dt(first), _dt(last), int(n)

    def alerts_between(self, start: datetime, end: datetime) -> list[tuple[AlertType, AlertState]]:
        """Type and current state of the alerts raised in [start, end), oldest first."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT type, state FROM alerts WHERE ts >= ? AND ts < ? ORDER BY ts",
                (_ts(start.astimezone(UTC)), _ts(end.astimezone(UTC))),
            ).fetchall()
        return [(AlertType(t), AlertState(st)) for t, st in rows]

    # ------------------------------------------------------------------ learned state

    def learned(self, name: str) -> Any | None:
        with self._lock:
            row = self.conn.execute("SELECT value FROM learned WHERE name=?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_learned(self, name: str, value: Any) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO learned(name, value, updated_ts) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value=excluded.value,"
                " updated_ts=excluded.updated_ts",
                (name, _json(value), rfc3339(utc_now())),
            )

    def delete_learned(self, prefix: str = "") -> int:
        with self._tx() as conn:
            cur = conn.execute("DELETE FROM learned WHERE name LIKE ? || '%'", (prefix,))
        return cur.rowcount

    # ------------------------------------------------------------------ sensors

    def sync_sensors(self, sensors: Iterable[Sensor]) -> None:
        """Make the registry hold exactly the configured sensors, keeping their health."""
        sensors = list(sensors)
        with self._tx() as conn:
            for s in sensors:
                conn.execute(
                    "INSERT INTO sensors(id, kind, transport, address, room,"
                    " expected_interval_s, label) VALUES (?,?,?,?,?,?,?)"
                    " ON CONFLICT(id) DO UPDATE SET kind=excluded.kind,"
                    " transport=excluded.transport, address=excluded.address, room=excluded.room,"
                    " expected_interval_s=excluded.expected_interval_s, label=excluded.label",
                    (
                        s.id,
                        s.kind.value,
                        s.transport.value,
                        s.address,
                        s.room,
                        s.expected_interval_s,
                        s.label,
                    ),
                )
            keep = [s.id for s in sensors]
            marks = ",".join("?" * len(keep))
            conn.execute(f"DELETE FROM sensors WHERE id NOT IN ({marks})", keep)  # noqa: S608 - only placeholders

    def touch_sensor(
        self,
        sensor_id: str,
        ts: datetime,
        mono: float,
        *,
        battery_pct: float | None = None,
        rssi_dbm: float | None = None,
    ) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE sensors SET last_seen_ts=?, last_seen_mono=?,"
                " battery_pct=COALESCE(?, battery_pct), rssi_dbm=COALESCE(?, rssi_dbm) WHERE id=?",
                (rfc3339(ts), mono, battery_pct, rssi_dbm, sensor_id),
            )

    def sensors(self) -> list[SensorHealth]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT id, kind, transport, address, room, expected_interval_s, label,"
                " last_seen_ts, last_seen_mono, battery_pct, rssi_dbm FROM sensors ORDER BY id"
            ).fetchall()
        from gateway.model import Transport

        return [
            SensorHealth(
                sensor=Sensor(
                    r[0], SensorKind(r[1]), Transport(r[2]), r[3], r[4], r[5], label=r[6]
                ),
                last_seen_ts=_dt(r[7]),
                last_seen_mono=r[8],
                battery_pct=r[9],
                rssi_dbm=r[10],
            )
            for r in rows
        ]

    # ------------------------------------------------------------------ readings

    def add_readings(self, readings: Sequence[Reading]) -> int:
        """Commit a batch of readings in one transaction (one fsync). Returns the last id.

        When the budget or the disk is full, the oldest stored readings are pruned (about
        as many as the batch holds) and the batch tried once more. If it still does not
        fit, the newest part of the batch that fits is committed and only the rest is
        dropped and counted, so the gateway keeps running and alerts keep their reserve.
        Returns 0 when nothing was committed.
        """
        if not readings:
            return 0
        rows = [_reading_row(r) for r in readings]
        with self._lock:
            self._refresh_budget()
        try:
            return self._insert_readings(rows)
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
        self._checkpoint_quietly()
        self._prune_quietly(force_fraction=0.1, min_rows=len(rows))
        try:
            return self._insert_readings(rows)
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
        # Still full: keep the newest part that fits (halving), drop the older rest.
        keep = len(rows) // 2
        while keep > 0:
            try:
                last = self._insert_readings(rows[-keep:])
            except sqlite3.OperationalError as exc:
                if not _is_full(exc):
                    raise
                keep //= 2
                continue
            self._drop_readings(len(rows) - keep)
            return last
        self._drop_readings(len(rows))
        return 0

    def _insert_readings(self, rows: Sequence[tuple[Any, ...]]) -> int:
        with self._tx() as conn:
            conn.executemany(_INSERT_READING, rows)
            last = int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
        self.stats.readings_committed += len(rows)
        return last

    def _drop_readings(self, count: int) -> None:
        self.stats.readings_dropped += count
        log.error("store full: dropped %d readings after pruning", count)

    def _checkpoint_quietly(self) -> None:
        """Copy the WAL into the database and restart it, so commits reuse its space.

        On a full disk (or at a file-size limit) the WAL cannot grow; once restarted,
        new commits overwrite it from the start instead of extending it.
        """
        try:
            with self._lock:
                self.conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
            log.warning("store full: checkpoint failed: %s", exc)

    def _prune_quietly(self, *, force_fraction: float = 0.0, min_rows: int = 0) -> None:
        """Prune, but a disk too full even to delete is logged, not raised."""
        try:
            self.prune(force_fraction=force_fraction, min_rows=min_rows)
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
            log.warning("store full: pruning failed too: %s", exc)

    def readings_after(self, after_id: int, limit: int) -> list[tuple[int, Reading]]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT id, sensor_id, kind, value, unit, ts, mono, boot_id, synced, extra"
                " FROM readings WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [(r[0], _reading(r[1:])) for r in rows]

    def readings_between(
        self, start: datetime, end: datetime, kinds: Iterable[ReadingKind] | None = None
    ) -> list[Reading]:
        sql = (
            "SELECT sensor_id, kind, value, unit, ts, mono, boot_id, synced, extra FROM readings"
            " WHERE ts >= ? AND ts < ?"
        )
        args: list[Any] = [rfc3339(start), rfc3339(end)]
        if kinds is not None:
            ks = [k.value for k in kinds]
            sql += f" AND kind IN ({','.join('?' * len(ks))})"
            args += ks
        with self._lock:
            rows = self.conn.execute(sql + " ORDER BY id", args).fetchall()
        return [_reading(r) for r in rows]

    def last_reading_id(self) -> int:
        with self._lock:
            row = self.conn.execute("SELECT MAX(id) FROM readings").fetchone()
        return int(row[0] or 0)

    # ------------------------------------------------------------------ alerts

    def commit_alert(self, alert: Alert) -> OutboxRow:
        """Store a new alert and queue it for the uplink, durably, before returning.

        Uses the reserve when the store or the disk is full: an alert is never dropped
        for want of space. Idempotent: committing an alert whose id is already stored
        (a retry after an error whose commit did land) returns its first outbox row.
        """
        now = utc_now()

        def write(conn: sqlite3.Connection) -> OutboxRow:
            if conn.execute("SELECT 1 FROM alerts WHERE id=?", (alert.id,)).fetchone():
                existing = self._first_alert_row(conn, alert.id)
                if existing is None:
                    raise StoreError(f"alert {alert.id} was committed before; its message is gone")
                return existing
            conn.execute(
                "INSERT INTO alerts(id, type, severity, ts, sensor_id, sensor_kind, room, evidence,"
                " state, mono, boot_id, synced, updated_ts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    alert.id,
                    alert.type.value,
                    alert.severity.value,
                    rfc3339(alert.ts),
                    alert.sensor_id,
                    alert.sensor_kind.value if alert.sensor_kind else None,
                    alert.room,
                    _json(dict(alert.evidence)),
                    alert.state.value,
                    alert.monotonic_s,
                    alert.boot_id,
                    int(alert.clock_synced),
                    rfc3339(now),
                ),
            )
            conn.execute(
                "INSERT INTO alert_states(alert_id, state, ts, note) VALUES (?,?,?,NULL)",
                (alert.id, alert.state.value, rfc3339(now)),
            )
            return self._enqueue(
                conn, "alert", alert.severity.rank, alert.id, alert_body(alert), now
            )

        row = self._write_alert(write)
        self.stats.alerts_committed += 1
        return row

    def set_alert_state(
        self, alert_id: str, state: AlertState, *, note: str | None = None, notify: bool = True
    ) -> Alert | None:
        """Record a state change durably; queue the updated alert for the platform.

        Returns the updated alert, or None when the alert is unknown. ``delivered`` and
        ``escalated`` are recorded without a new message unless ``notify`` is set.
        A closed alert (acknowledged, cancelled, resolved) does not reopen.
        """
        now = utc_now()
        result: list[Alert | None] = [None]

        def write(conn: sqlite3.Connection) -> OutboxRow | None:
            current = _alert_row(conn, alert_id)
            if current is None:
                return None
            if current.state.closed and state not in (AlertState.RESOLVED,):
                result[0] = current
                return None
            updated = current.with_state(state)
            conn.execute(
                "UPDATE alerts SET state=?, updated_ts=? WHERE id=?",
                (state.value, rfc3339(now), alert_id),
            )
            conn.execute(
                "INSERT INTO alert_states(alert_id, state, ts, note) VALUES (?,?,?,?)",
                (alert_id, state.value, rfc3339(now), note),
            )
            result[0] = updated
            if not notify:
                return None
            body = alert_body(updated)
            if note:
                body["note"] = note
            return self._enqueue(conn, "alert", updated.severity.rank, alert_id, body, now)

        self._write_alert(write)
        return result[0]

    def record_alert_state(self, alert_id: str, state: AlertState, note: str | None = None) -> None:
        """A state history row only (delivered, escalated): the alert's state is unchanged."""
        now = rfc3339(utc_now())
        self._write_alert(
            lambda conn: conn.execute(
                "INSERT INTO alert_states(alert_id, state, ts, note) VALUES (?,?,?,?)",
                (alert_id, state.value, now, note),
            )
        )

    def _write_alert(self, write: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run one alert write in its own FULL-sync transaction, using the reserves if full.

        First the budget's reserved pages (the page cap is raised for this commit only),
        then, if the disk itself is full, the preallocated reserve file is deleted to give
        the filesystem room. Afterwards readings are pruned so the next alert finds room.
        """
        # One lock round it all: no reading batch may slip into the reserve meanwhile.
        with self._lock:
            try:
                with self._tx() as conn:
                    return write(conn)
            except sqlite3.OperationalError as exc:
                if not _is_full(exc):
                    raise StoreError(f"alert commit failed: {exc}") from exc
            self.stats.reserve_used += 1
            log.error("store full: committing alert from the reserved pages")
            try:
                self._apply_budget(extra_pages=self.reserve_bytes // self._page_size)
                self._checkpoint_quietly()
                for attempt in range(3):
                    try:
                        with self._tx() as conn:
                            return write(conn)
                    except sqlite3.OperationalError as exc:
                        if not _is_full(exc) or attempt == 2:
                            raise StoreError(f"alert commit failed: {exc}") from exc
                        if attempt == 0 and self._release_reserve_file():
                            self._checkpoint_quietly()
                        else:
                            self._prune_quietly(force_fraction=0.05)
                            self._checkpoint_quietly()
            finally:
                # Readings must not grow into the alerts' reserve; SQLite keeps the cap at
                # least at the current size, so this never undoes the commit above.
                self._apply_budget(extra_pages=0)
                self._prune_quietly()
            raise StorageFullError("alert could not be committed")  # pragma: no cover

    def alert(self, alert_id: str) -> Alert | None:
        with self._lock:
            return _alert_row(self.conn, alert_id)

    def alerts(self, *, open_only: bool = False, limit: int = 1000) -> list[Alert]:
        sql = "SELECT id FROM alerts"
        if open_only:
            sql += " WHERE state NOT IN ('acknowledged', 'cancelled', 'resolved')"
        with self._lock:
            ids = [r[0] for r in self.conn.execute(sql + " ORDER BY ts LIMIT ?", (limit,))]
            return [a for a in (_alert_row(self.conn, i) for i in ids) if a is not None]

    def open_alerts(self, severity: Severity | None = None, limit: int = 1000) -> list[Alert]:
        """Alerts not yet acknowledged, cancelled or resolved, oldest first, in one query
        (the escalation looks at them every few seconds)."""
        sql = (
            "SELECT id, type, severity, ts, sensor_id, sensor_kind, room, evidence, state, mono,"
            " boot_id, synced FROM alerts"
            " WHERE state NOT IN ('acknowledged', 'cancelled', 'resolved')"
        )
        args: list[Any] = []
        if severity is not None:
            sql += " AND severity = ?"
            args.append(severity.value)
        with self._lock:
            rows = self.conn.execute(sql + " ORDER BY ts LIMIT ?", [*args, limit]).fetchall()
        return [_alert_from(r) for r in rows]

    def alert_history(self, alert_id: str) -> list[tuple[AlertState, datetime, str | None]]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT state, ts, note FROM alert_states WHERE alert_id=? ORDER BY id", (alert_id,)
            ).fetchall()
        return [(AlertState(r[0]), _dt_req(r[1]), r[2]) for r in rows]

    # ------------------------------------------------------------------ outbox

    def _enqueue(
        self,
        conn: sqlite3.Connection,
        kind: str,
        priority: int,
        ref: str | None,
        body: Mapping[str, Any],
        now: datetime,
    ) -> OutboxRow:
        msg_id = new_id()
        cur = conn.execute(
            "INSERT INTO outbox(msg_id, kind, priority, ref, body, created_ts)"
            " VALUES (?,?,?,?,?,?)",
            (msg_id, kind, priority, ref, _json(body), rfc3339(now)),
        )
        seq = int(cur.lastrowid or 0)
        return OutboxRow(seq, msg_id, kind, priority, ref, body, now, 0)

    @staticmethod
    def _first_alert_row(conn: sqlite3.Connection, alert_id: str) -> OutboxRow | None:
        r = conn.execute(
            "SELECT seq, msg_id, kind, priority, ref, body, created_ts, attempts, delivered_ts"
            " FROM outbox WHERE kind='alert' AND ref=? ORDER BY seq LIMIT 1",
            (alert_id,),
        ).fetchone()
        if r is None:
            return None
        return OutboxRow(
            r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), _dt_req(r[6]), r[7], _dt(r[8])
        )

    def enqueue(
        self, kind: str, body: Mapping[str, Any], *, priority: int = 2, ref: str | None = None
    ) -> OutboxRow:
        """Queue a non-alert message (event batch, telemetry, status) for the uplink.

        Raises :class:`StorageFullError` when even pruning leaves no room: these messages
        do not use the alerts' reserve.
        """
        for attempt in range(2):
            now = utc_now()
            try:
                with self._tx() as conn:
                    return self._enqueue(conn, kind, priority, ref, body, now)
            except sqlite3.OperationalError as exc:
                if not _is_full(exc):
                    raise
                if attempt == 1:
                    raise StorageFullError(f"no room to queue a {kind} message: {exc}") from exc
                self._prune_quietly(force_fraction=0.05)
        raise StorageFullError("unreachable")  # pragma: no cover

    def enqueue_with_counter(
        self, kind: str, body: Mapping[str, Any], *, priority: int, counter: str, value: int
    ) -> OutboxRow:
        """Queue a message and set a counter in one transaction (the uplink's event cursor:
        a crash can neither lose a batch of readings nor send it twice under two ids)."""
        now = utc_now()
        with self._tx() as conn:
            row = self._enqueue(conn, kind, priority, None, body, now)
            conn.execute(
                "INSERT INTO counters(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                (counter, int(value)),
            )
        return row

    def record_sent(self, kind: str, body: Mapping[str, Any]) -> OutboxRow:
        """Take a ``seq`` and ``msg_id`` for a message sent outside the outbox (status,
        telemetry): the row is born delivered, so ``seq`` stays one per-gateway sequence."""
        now = utc_now()
        with self._tx() as conn:
            row = self._enqueue(conn, kind, 9, None, body, now)
            conn.execute("UPDATE outbox SET delivered_ts=? WHERE seq=?", (rfc3339(now), row.seq))
        return row

    def _pending_rows(self, limit: int, after: tuple[int, int] | None) -> list[Any]:
        """Undelivered outbox rows in sending order: priority, then seq; ``after`` = (priority, seq)."""
        sql = (
            "SELECT seq, msg_id, kind, priority, ref, body, created_ts, attempts FROM outbox"
            " WHERE delivered_ts IS NULL"
        )
        args: list[Any] = []
        if after is not None:
            sql += " AND (priority > ? OR (priority = ? AND seq > ?))"
            args += [after[0], after[0], after[1]]
        sql += " ORDER BY priority, seq LIMIT ?"
        args.append(limit)
        with self._lock:
            return self.conn.execute(sql, args).fetchall()

    def pending(self, limit: int = 100, *, after: tuple[int, int] | None = None) -> list[OutboxRow]:
        """Undelivered messages, critical first, then by seq; ``after`` = (priority, seq)."""
        rows = self._pending_rows(limit, after)
        return [
            OutboxRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), _dt_req(r[6]), r[7])
            for r in rows
        ]

    def pending_raw(
        self, limit: int = 100, *, after: tuple[int, int] | None = None
    ) -> list[tuple[OutboxRow, str]]:
        """Like :meth:`pending`, with each body as its stored JSON text too.

        Only alert bodies are parsed (the uplink reads their state); the others come back
        with an empty ``body`` so a batch of readings is sent without being decoded and
        encoded again."""
        rows = self._pending_rows(limit, after)
        return [
            (
                OutboxRow(
                    r[0], r[1], r[2], r[3], r[4],
                    json.loads(r[5]) if r[2] == "alert" else {},
                    _dt_req(r[6]), r[7],
                ),
                r[5],
            )
            for r in rows
        ]

    def pending_count(self) -> int:
        with self._lock:
            return int(
                self.conn.execute(
                    "SELECT COUNT(*) FROM outbox WHERE delivered_ts IS NULL"
                ).fetchone()[0]
            )

    def mark_delivered(self, seqs: Iterable[int]) -> None:
        seqs = list(seqs)
        if not seqs:
            return
        now = rfc3339(utc_now())
        with self._tx() as conn:
            conn.executemany(
                "UPDATE outbox SET delivered_ts=? WHERE seq=? AND delivered_ts IS NULL",
                [(now, s) for s in seqs],
            )

    def mark_delivered_recording(
        self, seqs: Iterable[int], alert_ids: Iterable[str], *, drop: Iterable[int] = ()
    ) -> None:
        """Mark rows delivered and record ``delivered`` in the history of ``alert_ids``, in
        one commit: the uplink's batch after a run of PUBACKs costs one fsync, not one each.

        Rows in ``drop`` are deleted instead (the uplink's event batches: the readings stay
        in ``readings``). Setting ``delivered_ts`` makes SQLite rewrite the whole record,
        and a batch of 200 readings is ~30 kB of overflow pages written to the WAL again
        only to say "sent"; deleting it writes a few freelist pages."""
        seqs = list(seqs)
        ids = list(alert_ids)
        dropped = list(drop)
        if not seqs and not ids and not dropped:
            return
        now = rfc3339(utc_now())
        with self._tx() as conn:
            for i in range(0, len(dropped), 500):
                part = dropped[i : i + 500]
                marks = ",".join("?" * len(part))
                conn.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", part)  # noqa: S608 - only placeholders
            for i in range(0, len(seqs), 500):
                part = seqs[i : i + 500]
                marks = ",".join("?" * len(part))
                sql = f"UPDATE outbox SET delivered_ts=? WHERE seq IN ({marks}) AND delivered_ts IS NULL"  # noqa: S608 - only placeholders
                conn.execute(sql, [now, *part])
            conn.executemany(
                "INSERT INTO alert_states(alert_id, state, ts, note) VALUES (?,?,?,NULL)",
                [(a, AlertState.DELIVERED.value, now) for a in ids],
            )

    def mark_attempt(self, seqs: Iterable[int]) -> None:
        with self._tx() as conn:
            conn.executemany(
                "UPDATE outbox SET attempts=attempts+1 WHERE seq=?", [(s,) for s in seqs]
            )

    def outbox_row(self, seq: int) -> OutboxRow | None:
        with self._lock:
            r = self.conn.execute(
                "SELECT seq, msg_id, kind, priority, ref, body, created_ts, attempts, delivered_ts"
                " FROM outbox WHERE seq=?",
                (seq,),
            ).fetchone()
        if r is None:
            return None
        return OutboxRow(
            r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), _dt_req(r[6]), r[7], _dt(r[8])
        )

    # ------------------------------------------------------------------ pruning

    def prune(
        self, *, now: datetime | None = None, force_fraction: float = 0.0, min_rows: int = 0
    ) -> tuple[int, int]:
        """Delete old readings and delivered messages; never alerts, never undelivered rows.

        Age limits always apply. Then, while the database is above 80 % of its budget (or
        when ``force_fraction`` asks for it), the oldest readings and delivered messages go
        in chunks. Returns (readings deleted, outbox rows deleted).
        """
        now = now or utc_now()
        r_cut = rfc3339(now - self.readings_max_age)
        o_cut = rfc3339(now - self.delivered_max_age)
        deleted_r = deleted_o = 0
        with self._tx() as conn:
            deleted_r += conn.execute("DELETE FROM readings WHERE ts < ?", (r_cut,)).rowcount
            deleted_o += conn.execute(
                "DELETE FROM outbox WHERE delivered_ts IS NOT NULL AND delivered_ts < ?", (o_cut,)
            ).rowcount
        target = (self.budget_bytes - self.reserve_bytes) * 0.8
        forced = force_fraction > 0
        for _ in range(1000):
            if not forced and self.size_bytes() <= target:
                break
            r, o = self._prune_chunk(force_fraction if forced else 0.05, min_rows if forced else 0)
            deleted_r += r
            deleted_o += o
            forced = False
            if r == 0 and o == 0:
                break
        if deleted_r or deleted_o:
            self._ensure_reserve_file()
            self._apply_budget(extra_pages=0)
        self.stats.pruned_readings += deleted_r
        self.stats.pruned_outbox += deleted_o
        return deleted_r, deleted_o

    def _prune_chunk(self, fraction: float, min_rows: int = 0) -> tuple[int, int]:
        with self._tx() as conn:
            total_r = int(conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
            n_r = max(1, min_rows, int(total_r * fraction)) if total_r else 0
            r = (
                conn.execute(
                    "DELETE FROM readings WHERE id IN"
                    " (SELECT id FROM readings ORDER BY id LIMIT ?)",
                    (n_r,),
                ).rowcount
                if n_r
                else 0
            )
            total_o = int(
                conn.execute(
                    "SELECT COUNT(*) FROM outbox WHERE delivered_ts IS NOT NULL"
                ).fetchone()[0]
            )
            n_o = max(1, int(total_o * fraction)) if total_o else 0
            o = (
                conn.execute(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox"
                    " WHERE delivered_ts IS NOT NULL ORDER BY seq LIMIT ?)",
                    (n_o,),
                ).rowcount
                if n_o
                else 0
            )
        return r, o

    def integrity_ok(self) -> bool:
        with self._lock:
            row = self.conn.execute("PRAGMA integrity_check").fetchone()
        return bool(row and row[0] == "ok")

    def healthy(self) -> bool:
        """A cheap liveness probe for the watchdog: the database answers a read."""
        try:
            with self._lock:
                self.conn.execute("SELECT 1 FROM counters LIMIT 1").fetchall()
        except (sqlite3.Error, StoreError):
            return False
        return True


# ---------------------------------------------------------------------- row helpers


def alert_body(alert: Alert) -> dict[str, Any]:
    """The alert as the outbox keeps it; the uplink adds the envelope of the contract."""
    return {
        "alert_id": alert.id,
        "type": alert.type.value,
        "severity": alert.severity.value,
        "state": alert.state.value,
        "raised_ts": rfc3339(alert.ts),
        "sensor": {
            "id": alert.sensor_id,
            "kind": alert.sensor_kind.value if alert.sensor_kind else None,
            "room": alert.room,
        },
        "evidence": dict(alert.evidence),
        "mono": alert.monotonic_s,
        "boot_id": alert.boot_id,
        "clock_synced": alert.clock_synced,
    }


def _alert_row(conn: sqlite3.Connection, alert_id: str) -> Alert | None:
    r = conn.execute(
        "SELECT id, type, severity, ts, sensor_id, sensor_kind, room, evidence, state, mono,"
        " boot_id, synced FROM alerts WHERE id=?",
        (alert_id,),
    ).fetchone()
    if r is None:
        return None
    return _alert_from(r)


def _alert_from(r: Sequence[Any]) -> Alert:
    return Alert(
        id=r[0],
        type=AlertType(r[1]),
        severity=Severity(r[2]),
        ts=_dt_req(r[3]),
        sensor_id=r[4],
        sensor_kind=SensorKind(r[5]) if r[5] else None,
        room=r[6],
        evidence=json.loads(r[7]),
        state=AlertState(r[8]),
        monotonic_s=r[9],
        boot_id=r[10],
        clock_synced=bool(r[11]),
    )


def _json_value(value: Any) -> str:
    """``_json`` with fast paths for the scalars most readings carry (same output)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    kind = type(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if kind is int:
        return int.__repr__(value)
    if kind is str:
        return _encode_str(value)
    return _json(value)


_KIND_TEXT: dict[ReadingKind, str] = {k: k.value for k in ReadingKind}
# The C string encoder behind json.dumps(str, ensure_ascii=False): same output, no overhead.
_encode_str: Callable[[str], str] = json.encoder.encode_basestring
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND_PREFIX: dict[int, str] = {}


def _ts(ts: datetime) -> str:
    """``rfc3339`` with a fast path for datetimes already in UTC (same output).

    Readings come many per second, so the "YYYY-MM-DDTHH:MM:SS" part is cached by the
    second; isoformat() per reading was most of what the Store added over plain sqlite3.
    """
    if ts.tzinfo is not UTC:
        return rfc3339(ts)
    d = ts - _EPOCH
    second = d.days * 86400 + d.seconds
    prefix = _SECOND_PREFIX.get(second)
    if prefix is None:
        if len(_SECOND_PREFIX) >= 4096:
            _SECOND_PREFIX.clear()
        prefix = _SECOND_PREFIX[second] = ts.replace(microsecond=0, tzinfo=None).isoformat()
    return f"{prefix}.{d.microseconds // 1000:03d}Z"


def _reading_row(r: Reading) -> tuple[Any, ...]:
    """A reading as the readings table stores it. The hot path of ingest."""
    return (
        r.sensor_id,
        _KIND_TEXT[r.kind],
        _json_value(r.value),
        r.unit,
        _ts(r.ts),
        r.monotonic_s,
        r.boot_id,
        1 if r.clock_synced else 0,
        _json(dict(r.extra)) if r.extra else None,
    )


def _reading(r: Sequence[Any]) -> Reading:
    return Reading(
        sensor_id=r[0],
        kind=ReadingKind(r[1]),
        value=json.loads(r[2]) if r[2] is not None else None,
        unit=r[3],
        ts=_dt_req(r[4]),
        monotonic_s=r[5],
        boot_id=r[6],
        clock_synced=bool(r[7]),
        extra=json.loads(r[8]) if r[8] else {},
    )


def _dt(text: str | None) -> datetime | None:
    return _dt_req(text) if text else None


def _dt_req(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
