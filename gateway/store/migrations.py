"""Numbered schema migrations. Never edit a released one; append a new one.

``PRAGMA user_version`` holds the number of migrations applied. Each migration runs in its
own transaction, so a power cut in the middle leaves the previous version intact.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema (gateway 0.1.0-dev)
    """
    CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    CREATE TABLE sensors (
        id                  TEXT PRIMARY KEY,
        kind                TEXT NOT NULL,
        transport           TEXT NOT NULL,
        address             TEXT NOT NULL,
        room                TEXT NOT NULL,
        expected_interval_s REAL,
        label               TEXT NOT NULL DEFAULT '',
        last_seen_ts        TEXT,
        last_seen_mono      REAL,
        battery_pct         REAL,
        rssi_dbm            REAL
    );
    CREATE TABLE readings (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        sensor_id TEXT NOT NULL,
        kind      TEXT NOT NULL,
        value     TEXT,
        unit      TEXT,
        ts        TEXT NOT NULL,
        mono      REAL NOT NULL,
        boot_id   TEXT NOT NULL,
        synced    INTEGER NOT NULL,
        extra     TEXT
    );
    CREATE INDEX readings_ts ON readings(ts);
    CREATE TABLE alerts (
        id          TEXT PRIMARY KEY,
        type        TEXT NOT NULL,
        severity    TEXT NOT NULL,
        ts          TEXT NOT NULL,
        sensor_id   TEXT,
        sensor_kind TEXT,
        room        TEXT,
        evidence    TEXT NOT NULL,
        state       TEXT NOT NULL,
        mono        REAL NOT NULL,
        boot_id     TEXT NOT NULL,
        synced      INTEGER NOT NULL,
        updated_ts  TEXT NOT NULL
    );
    CREATE INDEX alerts_state ON alerts(state);
    CREATE TABLE alert_states (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        alert_id TEXT NOT NULL REFERENCES alerts(id),
        state    TEXT NOT NULL,
        ts       TEXT NOT NULL
    );
    CREATE INDEX alert_states_alert ON alert_states(alert_id);
    CREATE TABLE outbox (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        msg_id       TEXT NOT NULL UNIQUE,
        kind         TEXT NOT NULL,
        priority     INTEGER NOT NULL,
        ref          TEXT,
        body         TEXT NOT NULL,
        created_ts   TEXT NOT NULL,
        delivered_ts TEXT,
        attempts     INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX outbox_pending ON outbox(priority, seq) WHERE delivered_ts IS NULL;
    """,
    # 2: a note on each alert state change (who acknowledged, why cancelled), the detectors'
    # learned state, and the reading cursor the uplink batches events from.
    """
    ALTER TABLE alert_states ADD COLUMN note TEXT;
    CREATE TABLE learned (
        name       TEXT PRIMARY KEY,
        value      TEXT NOT NULL,
        updated_ts TEXT NOT NULL
    );
    CREATE INDEX outbox_delivered ON outbox(delivered_ts) WHERE delivered_ts IS NOT NULL;
    """,
)

LATEST = len(MIGRATIONS)
