"""`anxin send-test-alert` and `anxin tail` against a real broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, run_cli

from gateway.store import Store


def write_config(tmp_path: Path, broker) -> Path:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(
        f"""
[gateway]
id = "gw-cli"
home = "home-9"

[uplink]
broker_url = "{broker.url}"
reconnect_min_s = 0.05
reconnect_max_s = 1

[storage]
path = "{tmp_path / "anxin.db"}"
budget_mb = 32
reserve_mb = 1
""",
        encoding="utf-8",
    )
    return cfg


def test_send_test_alert_standalone_reports_puback_and_arrival(mosquitto, tmp_path):
    cfg = write_config(tmp_path, mosquitto)
    tail = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "tail",
            "--config",
            str(cfg),
            "--count",
            "1",
            "--timeout",
            "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert tail.stderr is not None
        assert "listening on anxin/v1/gw-cli/#" in tail.stderr.readline()
        time.sleep(0.3)
        res = run_cli("send-test-alert", "--config", str(cfg), "--standalone", "--timeout", "20")
        assert res.returncode == 0, res.stderr
        assert "delivered: broker acknowledged it" in res.stdout
        assert "seen by a subscriber" in res.stdout
        out, _ = tail.communicate(timeout=30)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.communicate()
    assert "alert" in out
    assert "INFO" in out
    assert "test raised" in out
    with Store(tmp_path / "anxin.db") as store:
        assert store.pending_count() == 0
        (a,) = store.alerts()
        assert a.type.value == "test"


def test_send_test_alert_without_a_service_says_so(mosquitto, tmp_path):
    cfg = write_config(tmp_path, mosquitto)
    res = run_cli("send-test-alert", "--config", str(cfg), "--timeout", "1")
    assert res.returncode == 1
    assert "NOT delivered" in res.stderr
    assert "--standalone" in res.stderr


def test_tail_json_lines(mosquitto, tmp_path):
    cfg = write_config(tmp_path, mosquitto)
    res = run_cli("tail", "--config", str(cfg), "--json", "--timeout", "0.5")
    assert res.returncode == 0
    assert res.stdout == ""
