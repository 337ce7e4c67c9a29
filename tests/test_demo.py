"""`anxin demo` runs headless with a time limit, and the platform got the whole story."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli


@pytest.mark.timeout(200)
def test_demo_headless_delivers_the_story() -> None:
    out = run_cli("demo", "--no-tty", timeout=180)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["ok"] is True
    assert summary["missing"] == []
    alerts = summary["alerts"]
    assert alerts["emergency_button:raised"] == 1
    assert alerts["emergency_button:acknowledged"] == 1
    assert alerts["fall:raised"] == 1
    assert alerts["fall:cancelled"] == 1
    assert alerts["fall_radar:raised"] == 1
    assert not [k for k in alerts if k.split(":")[0] not in {"emergency_button", "fall", "fall_radar"}]
    # readings taken during the broker outage reached the platform after it came back
    assert summary["event_readings"] >= 18
    text = out.stdout
    assert "internet link goes down" in text
    assert "the backlog drains" in text
    assert "status offline" in text
    assert text.count("status online") >= 2
    assert "\x1b[" not in text  # --no-tty: no colours
