"""`anxin hil run`: every shipped scenario passes against the real gateway process and a
real broker, with its latency budgets; the reports are machine-readable; bad scenarios are
refused with the key that is wrong; a scenario whose expectation is not met fails."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.hil import load_scenario
from tests.conftest import ROOT, run_cli

SCENARIOS = sorted((ROOT / "tests" / "hil").glob("*.yaml"))
ALERT_TYPES_BUILT = {"emergency_button", "fall", "fall_radar", "smoke", "low_battery", "sensor_offline"}


@pytest.mark.timeout(400)
def test_every_shipped_scenario_passes(tmp_path: Path) -> None:
    assert len(SCENARIOS) >= 6
    junit, results = tmp_path / "hil.xml", tmp_path / "hil.json"
    out = run_cli("hil", "run", *map(str, SCENARIOS), "--junit", str(junit), "--json", str(results), timeout=380)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(results.read_text())
    assert summary["failed"] == 0
    assert summary["passed"] == len(SCENARIOS)
    covered = {e["alert"] for s in summary["scenarios"] for e in s["expectations"]}
    assert covered >= ALERT_TYPES_BUILT
    for s in summary["scenarios"]:
        for e in s["expectations"]:
            assert e["latency_ms"] is not None
            assert e["latency_ms"] <= e["budget_ms"]
    suites = ET.parse(junit).getroot()
    assert suites.tag == "testsuites"
    assert len(suites.findall("testsuite")) == len(SCENARIOS)
    assert not suites.findall(".//failure")


def test_unmet_expectation_fails_the_run(tmp_path: Path) -> None:
    scenario = tmp_path / "wrong.yaml"
    scenario.write_text(
        f"name: expects a fall that never happens\nconfig: {ROOT / 'gateway' / 'data' / 'hil_home.toml'}\n"
        "duration_s: 4\nsteps:\n  - {at: 1, sensor: button-bedside, kind: button, value: press}\n"
        "expect:\n  - {alert: fall_radar, after: 1, within_ms: 1000}\n"
    )
    results = tmp_path / "r.json"
    out = run_cli("hil", "run", str(scenario), "--json", str(results), timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    summary = json.loads(results.read_text())
    sc = summary["scenarios"][0]
    assert not sc["ok"]
    assert sc["expectations"][0]["detail"] == "expected 1 fall_radar (raised), got 0"
    assert sc["unexpected"] == ["emergency_button"]  # only_expected: the press was not expected


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("steps: []\n", "duration_s", "missing 'duration_s'"),
        ("duration_s: -1\n", "duration_s", "expected a number >= 0"),
        ("duration_s: 5\nsteps:\n  - {sensor: b, kind: button}\n", "steps[0]", "missing 'at'"),
        ("duration_s: 5\nsteps:\n  - {at: 1, broker: explode}\n", "steps[0].broker", "expected one of"),
        ("duration_s: 5\nexpect:\n  - {alert: fall, after: 1}\n", "expect[0]", "missing 'within_ms'"),
        ("- just a list\n", None, "a scenario is a YAML mapping"),
        ("duration_s: [\n", None, "cannot read scenario"),
    ],
)
def test_bad_scenarios_name_the_key(tmp_path: Path, text: str, key: str | None, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_scenario(path)
    assert exc.value.key == key
    assert message in str(exc.value)
    assert str(path) in str(exc.value)
