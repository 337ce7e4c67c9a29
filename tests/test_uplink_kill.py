"""The gateway SIGKILLed mid-flight and restarted: every committed alert arrives."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT
from uplink_helpers import Subscriber, check_no_loss_in_order

from gateway.store import Store

CHILD = ROOT / "tests" / "uplink_child.py"


def spawn(port: int, db: Path, count: int, interval: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(CHILD),
            "--port",
            str(port),
            "--db",
            str(db),
            "--count",
            str(count),
            "--interval",
            str(interval),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def read_until(proc: subprocess.Popen[str], pred, timeout: float = 60) -> list[str]:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if pred(lines):
            return lines
    raise AssertionError(f"child output did not reach the condition: {lines[-5:]}")


def test_gateway_killed_mid_flight_then_restarted(mosquitto, tmp_path):
    platform = Subscriber(mosquitto).start()
    db = tmp_path / "gw.db"
    try:
        first = spawn(mosquitto.port, db, count=300, interval=0.002)
        try:
            read_until(first, lambda ls: sum(x.startswith("committed") for x in ls) >= 120)
            first.kill()  # SIGKILL: no offline, no flush, mid-commit or mid-publish
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait(10)
            _close_pipes(first)
        # The broker publishes the will for the vanished gateway.
        assert platform.wait_for(
            lambda s: any(m["state"] == "offline" for m in s.of("/status")), 20
        )
        second = spawn(mosquitto.port, db, count=0, interval=0)
        try:
            read_until(second, lambda ls: "drained" in ls)
            assert platform.wait_for(lambda s: len(s.of("/status")) >= 2, 10)
        finally:
            assert second.stdin is not None
            second.stdin.close()
            second.wait(20)
            _close_pipes(second)
        assert second.returncode == 0
        with Store(db) as store:
            committed = _all_alert_rows(store)
        assert len(committed) >= 120
        assert platform.wait_for(
            lambda s: {m["id"] for m in s.of("/alert")} >= {r.msg_id for r in committed}, 20
        )
    finally:
        platform.stop()
    check_no_loss_in_order(committed, platform)


class _Row:
    def __init__(self, msg_id: str) -> None:
        self.msg_id = msg_id


def _all_alert_rows(store: Store) -> list[_Row]:
    rows = store.conn.execute(
        "SELECT msg_id FROM outbox WHERE kind='alert' ORDER BY seq"
    ).fetchall()
    return [_Row(r[0]) for r in rows]


def _close_pipes(proc: subprocess.Popen[str]) -> None:
    for f in (proc.stdin, proc.stdout):
        if f is not None and not f.closed:
            f.close()
