"""The HIL pendant: SisFall recordings replayed by the pendant firmware's ADXL345 (host shim),
read where the data lies (a missing data set fails the scenario, or is skipped when the rig
says so). The scenarios themselves (a fall raises ``fall``, daily activities raise nothing,
through bleak and a mock BlueZ GATT server) run in test_hil's shipped-scenario test."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from firmware_stubs.host.__main__ import AccelPlayer
from gateway.errors import ConfigError
from gateway.hil import SISFALL_ENV, MissingDataError, Result, _judge, load_recording, load_scenario
from tests.conftest import ROOT, run_cli


def test_accel_player_rests_then_plays_from_the_next_sample_then_holds_the_last(tmp_path: Path) -> None:
    rec = tmp_path / "rec.txt"
    rec.write_text("1 2 3\n4 5 6\n\n-7 -8 900\n")
    player = AccelPlayer((0, 0, 256))
    assert [player(i) for i in range(3)] == [(0, 0, 256)] * 3
    player.play(rec)
    assert [player(i) for i in range(3, 8)] == [(1, 2, 3), (4, 5, 6), (-7, -8, 900), (-7, -8, 900), (-7, -8, 900)]
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\n")
    with pytest.raises(ValueError, match="expected 'x y z'"):
        player.play(bad)


@pytest.mark.data
def test_a_sisfall_recording_becomes_the_pendants_50_hz_counts(shared_data: Path) -> None:
    fall = load_recording("F01_SA01_R01", data_dir=shared_data / "sisfall")
    assert 740 <= len(fall) <= 760  # 15 s at 50 Hz
    assert all(-4096 <= v <= 4095 for row in fall for v in row)
    peak_g = max((x * x + y * y + z * z) ** 0.5 for x, y, z in fall) / 256
    assert peak_g > 2.0  # the impact survives the anti-alias filter
    walk = load_recording("D01_SA01_R01", seconds=10, data_dir=shared_data / "sisfall")
    assert len(walk) == 500
    with pytest.raises(ConfigError, match="no recording F01_SA99_R01"):
        load_recording("F01_SA99_R01", data_dir=shared_data / "sisfall")


def test_missing_sisfall_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match=r"SisFall data not found at .*nowhere"):
        load_recording("F01_SA01_R01", data_dir=tmp_path / "nowhere")


def _pendant_scenario(tmp_path: Path) -> Path:
    path = tmp_path / "fall.yaml"
    path.write_text(f"config: {ROOT / 'tests' / 'hil' / 'pendant_home.toml'}\nduration_s: 20\nsteps:\n"
                    "  - {at: 5, device: pendant, recording: F01_SA01_R01}\n"
                    "expect:\n  - {alert: fall, after: 5, within_ms: 23000}\n")
    return path


def test_a_scenario_without_its_data_fails_or_is_skipped_when_asked(tmp_path: Path) -> None:
    scenario, results, junit = _pendant_scenario(tmp_path), tmp_path / "r.json", tmp_path / "r.xml"
    env = {SISFALL_ENV: str(tmp_path / "nowhere")}
    out = run_cli("hil", "run", str(scenario), "--json", str(results), env=env, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    (sc,) = json.loads(results.read_text())["scenarios"]
    assert not sc["ok"]
    assert "SisFall data not found" in sc["error"]
    assert "SisFall data not found" in out.stdout
    out = run_cli("hil", "run", str(scenario), "--json", str(results), "--junit", str(junit),
                  "--skip-missing-data", env=env, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(results.read_text())
    assert (summary["passed"], summary["failed"], summary["skipped"]) == (0, 0, 1)
    assert "SKIP" in out.stdout
    assert ET.parse(junit).getroot().findall(".//skipped")


def test_a_link_event_may_be_capped_like_an_alert(tmp_path: Path) -> None:
    path = tmp_path / "ev.yaml"
    path.write_text("duration_s: 9\nexpect:\n"
                    "  - {event: {sensor: pendant, kind: link, value: up}, after: 0, within_ms: 8000, at_most: 1}\n")
    result = Result(load_scenario(path))
    up = {"sensor": "pendant", "kind": "link", "value": "up"}
    result.received = [{"t": 101.0, "topic": "anxin/v1/gw/event", "payload": {"readings": [up]}}]
    _judge(result, 100.0)
    assert result.ok
    result.outcomes.clear()
    result.received.append({"t": 105.0, "topic": "anxin/v1/gw/event", "payload": {"readings": [up]}})
    _judge(result, 100.0)  # connected twice: the stream broke and bleak reconnected
    assert result.outcomes[0].detail == 'expected at most 1 event pendant link="up", got 2'
    assert not result.ok
