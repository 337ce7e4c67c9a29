"""The contract as code, as AsyncAPI and as JSON Schema agree; pure parts of the uplink."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from jsonschema import ValidationError
from uplink_helpers import SCHEMAS, alert, validate

from gateway.backoff import Backoff
from gateway.clock import Clock
from gateway.model import Reading, ReadingKind, Severity
from gateway.store import alert_body
from gateway.uplink.contract import (
    Topics,
    event_body,
    outbox_payload,
    reply_payload,
    spliced_event,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"
STAMP = Clock(assume_synced=True).now()
MSG_ID = "019a5c1e-2b7d-7c41-9a3e-5b0c1d2e3f40"


def test_asyncapi_document_names_every_schema_and_its_examples_validate() -> None:
    doc = yaml.safe_load((DOCS / "mqtt-contract.yaml").read_text())
    assert doc["asyncapi"].startswith("3.")
    refs = {
        m["payload"]["schema"]["$ref"].removeprefix("./schemas/").removesuffix(".json"): m
        for m in doc["components"]["messages"].values()
    }
    on_disk = {p.stem for p in SCHEMAS.glob("*.json")} - {"common"}
    assert set(refs) == on_disk
    for name, message in refs.items():
        for example in message.get("examples", []):
            validate(name, example["payload"])
    qos = {k: v["bindings"]["mqtt"]["qos"] for k, v in doc["operations"].items()}
    assert qos == {
        "sendStatus": 1,
        "sendAlert": 1,
        "sendEvent": 1,
        "sendTelemetry": 0,
        "receiveCommand": 1,
    }


def test_alert_payload_is_the_envelope_plus_the_stored_alert() -> None:
    a = alert(Severity.CRITICAL, 3)
    body = alert_body(a)
    now = datetime.now(UTC)
    p = outbox_payload(
        kind="alert", msg_id=MSG_ID, seq=7, created_ts=now, body=body, gw="gw", home="h", now=STAMP
    )
    validate("alert", p)
    assert list(p)[:7] == ["schema", "id", "seq", "ts", "clock", "gw", "home"]
    assert p["id"] == MSG_ID
    assert p["alert_id"] == a.id
    assert p["clock"] == {"synced": True, "mono": round(a.monotonic_s, 3), "boot_id": a.boot_id}
    assert p["evidence"] == {"n": 3}


def test_a_wrong_payload_fails_its_schema() -> None:
    body = alert_body(alert())
    p = outbox_payload(
        kind="alert",
        msg_id=MSG_ID,
        seq=1,
        created_ts=datetime.now(UTC),
        body=body,
        gw="gw",
        home="h",
        now=STAMP,
    )
    for broken in (
        {**p, "severity": "urgent"},
        {**p, "extra": 1},
        {**p, "id": "not-a-uuid"},
        {k: v for k, v in p.items() if k != "seq"},
    ):
        with pytest.raises(ValidationError):
            validate("alert", broken)


def test_spliced_event_equals_the_decoded_one() -> None:
    rows = [
        (i + 1, Reading.at(STAMP, f"s{i}", ReadingKind.DISTANCE, 80.5 + i, unit="cm"))
        for i in range(5)
    ]
    body = event_body(rows, STAMP)
    raw = json.dumps(body, separators=(",", ":"))
    now = datetime.now(UTC)
    spliced = json.loads(
        spliced_event(msg_id=MSG_ID, seq=9, created_ts=now, raw_body=raw, gw="gw", home="h")
    )
    decoded = outbox_payload(
        kind="event", msg_id=MSG_ID, seq=9, created_ts=now, body=body, gw="gw", home="h", now=STAMP
    )
    assert spliced == decoded
    validate("event", spliced)
    with pytest.raises(ValueError, match="clock"):
        spliced_event(msg_id=MSG_ID, seq=9, created_ts=now, raw_body="{}", gw="gw", home="h")


def test_reply_payloads() -> None:
    now = datetime.now(UTC)
    ok = reply_payload(
        msg_id=MSG_ID, ts=now, gw="gw", home="h", cmd="ping", request_id=None, result={"pong": "x"}
    )
    bad = reply_payload(
        msg_id=MSG_ID,
        ts=now,
        gw="gw",
        home="h",
        cmd="x",
        request_id="r",
        error=("unknown_command", "no"),
    )
    validate("reply", ok)
    validate("reply", bad)
    with pytest.raises(ValidationError):
        validate("reply", {**ok, "error": {"code": "failed", "message": "x"}})


def test_topics() -> None:
    t = Topics("anxin/v1", "gw-1")
    assert t.status == "anxin/v1/gw-1/status"
    assert t.cmd_filter == "anxin/v1/gw-1/cmd/+"
    assert t.command_name("anxin/v1/gw-1/cmd/ack") == "ack"
    assert t.command_name("anxin/v1/gw-2/cmd/ack") is None
    assert t.command_name("anxin/v1/gw-1/cmd/a/b") is None
    assert t.reply("ping") == "anxin/v1/gw-1/reply/ping"


def test_backoff_grows_with_jitter_within_bounds_and_resets() -> None:
    b = Backoff(0.5, 30.0, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(12)]
    assert all(0.5 <= d <= 30.0 for d in delays)
    assert max(delays[:3]) <= 2.0  # 0.5, 1, 2 ceilings
    assert len({round(d, 6) for d in delays}) == len(delays), "jittered, not fixed steps"
    assert max(delays[8:]) > 4.0
    b.reset()
    assert b.next_delay() <= 0.5 + 1e-9
    with pytest.raises(ValueError, match="min_s"):
        Backoff(0, 1)
