"""Durable state: SQLite with migrations, an outbox, a size budget and a disk-full reserve."""

from gateway.store.db import MB, OutboxRow, SensorHealth, Store, StoreStats, alert_body

__all__ = ["MB", "OutboxRow", "SensorHealth", "Store", "StoreStats", "alert_body"]
