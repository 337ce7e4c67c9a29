"""The MQTT contract v1 as code: topics and payloads. Pure: no I/O, no paho.

Every up message is built here, so the JSON Schemas under ``docs/schemas`` and the code
have one place to disagree. See ``docs/mqtt-contract.yaml`` for the contract itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.clock import Stamp, rfc3339
from gateway.model import Reading

SCHEMA = "anxin/v1"
"""The ``schema`` field of every message; bumped only with an incompatible change."""

EVENT_PRIORITY = 3
"""Outbox priority of event batches: after every alert (severity ranks are 0, 1 and 2),
so a backlog of readings never holds back even an ``info`` alert."""

EVENT_CURSOR = "uplink.event_cursor"
"""Counter holding the id of the last reading turned into an event batch."""

COMMANDS = ("ack", "ping", "sensors", "config")


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one gateway under the configured root."""

    root: str
    gw: str

    @property
    def base(self) -> str:
        return f"{self.root}/{self.gw}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def alert(self) -> str:
        return f"{self.base}/alert"

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def telemetry(self) -> str:
        return f"{self.base}/telemetry"

    @property
    def cmd_filter(self) -> str:
        return f"{self.base}/cmd/+"

    def cmd(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    def reply(self, name: str) -> str:
        return f"{self.base}/reply/{name}"

    def for_kind(self, kind: str) -> str:
        """The topic of an outbox row of ``kind`` (alert, event, telemetry, status)."""
        return f"{self.base}/{kind}"

    def command_name(self, topic: str) -> str | None:
        prefix = f"{self.base}/cmd/"
        if not topic.startswith(prefix):
            return None
        name = topic[len(prefix) :]
        return name if name and "/" not in name else None


def clock_block(synced: bool, mono: float, boot_id: str) -> dict[str, Any]:
    """``clock``: lets the platform correct times stamped before NTP synced."""
    return {"synced": bool(synced), "mono": round(float(mono), 3), "boot_id": boot_id}


def envelope(
    *, msg_id: str, seq: int, ts: datetime, clock: Mapping[str, Any], gw: str, home: str
) -> dict[str, Any]:
    """The fields every up message carries, in the contract's order."""
    return {
        "schema": SCHEMA,
        "id": msg_id,
        "seq": seq,
        "ts": rfc3339(ts),
        "clock": dict(clock),
        "gw": gw,
        "home": home,
    }


def outbox_payload(
    *,
    kind: str,
    msg_id: str,
    seq: int,
    created_ts: datetime,
    body: Mapping[str, Any],
    gw: str,
    home: str,
    now: Stamp,
) -> dict[str, Any]:
    """The message for one outbox row: the envelope, then what the store kept.

    An alert's clock is the one it was stamped with when raised (the row holds it); other
    rows carry the clock they were created under when present, else the current one.
    """
    if kind == "alert":
        clock = clock_block(
            bool(body.get("clock_synced")),
            float(body.get("mono") or 0.0),
            str(body.get("boot_id") or ""),
        )
        out = envelope(msg_id=msg_id, seq=seq, ts=created_ts, clock=clock, gw=gw, home=home)
        out.update(
            {
                "alert_id": body["alert_id"],
                "type": body["type"],
                "severity": body["severity"],
                "state": body["state"],
                "raised_ts": body["raised_ts"],
                "sensor": _sensor(body.get("sensor")),
                "evidence": dict(body.get("evidence") or {}),
            }
        )
        if body.get("note"):
            out["note"] = str(body["note"])
        return out
    clock = body.get("clock") or clock_block(now.synced, now.monotonic_s, now.boot_id)
    out = envelope(msg_id=msg_id, seq=seq, ts=created_ts, clock=clock, gw=gw, home=home)
    out.update({k: v for k, v in body.items() if k != "clock"})
    return out


def spliced_event(
    *, msg_id: str, seq: int, created_ts: datetime, raw_body: str, gw: str, home: str
) -> bytes:
    """An ``event`` message built around the body's stored JSON text, without decoding it.

    Same message as :func:`outbox_payload` gives (an event body carries its own ``clock``
    and no envelope key), keys in another order: a batch of 200 readings is ~30 kB, and
    decoding and encoding it again was most of the cost of draining a backlog."""
    body = raw_body.strip()
    if not body.startswith("{") or '"clock"' not in body:
        raise ValueError("event body without clock")
    head = {
        "schema": SCHEMA,
        "id": msg_id,
        "seq": seq,
        "ts": rfc3339(created_ts),
        "gw": gw,
        "home": home,
    }
    text = json.dumps(head, ensure_ascii=False, separators=(",", ":"))
    return (text[:-1] + "," + body[1:]).encode()


def _sensor(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, Mapping) or value.get("id") is None:
        return None
    return {"id": value.get("id"), "kind": value.get("kind"), "room": value.get("room")}


def event_body(rows: Sequence[tuple[int, Reading]], stamp: Stamp) -> dict[str, Any]:
    """The body of an ``event`` outbox row: a batch of readings, oldest first."""
    return {
        "clock": clock_block(stamp.synced, stamp.monotonic_s, stamp.boot_id),
        "first_reading": rows[0][0],
        "last_reading": rows[-1][0],
        "readings": [reading_json(r) for _, r in rows],
    }


def reading_json(r: Reading) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sensor": r.sensor_id,
        "kind": r.kind.value,
        "value": r.value,
        "ts": rfc3339(r.ts),
        "mono": round(r.monotonic_s, 3),
        "synced": r.clock_synced,
    }
    if r.unit is not None:
        out["unit"] = r.unit
    if r.extra:
        out["extra"] = dict(r.extra)
    return out


def status_body(
    state: str, *, version: str, uptime_s: float, queue_depth: int, protocol: str
) -> dict[str, Any]:
    return {
        "state": state,
        "version": version,
        "uptime_s": round(uptime_s, 1),
        "queue_depth": int(queue_depth),
        "protocol": protocol,
    }


def reply_payload(
    *,
    msg_id: str,
    ts: datetime,
    gw: str,
    home: str,
    cmd: str,
    request_id: str | None,
    result: Mapping[str, Any] | None = None,
    error: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """An answer to a command. Replies are not part of the ordered ``seq`` stream."""
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "id": msg_id,
        "ts": rfc3339(ts),
        "gw": gw,
        "home": home,
        "cmd": cmd,
        "request_id": request_id,
        "ok": error is None,
    }
    if error is not None:
        out["error"] = {"code": error[0], "message": error[1]}
    else:
        out["result"] = dict(result or {})
    return out


def dumps(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode()
