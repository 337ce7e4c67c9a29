"""`anxin hil run`: every shipped scenario passes against the real gateway process and a
real broker, with its latency budgets; the reports are machine-readable; bad scenarios are
refused with the key that is wrong; a scenario whose expectation is not met fails. Two of
the scenarios run real firmware on emulated boards (bed pad on a pty, button through a mock
BlueZ); the gateway then opens only those transports."""

from __future__ import annotations

import importlib.util
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.hil import Result, _gateway_cmd, _judge, load_scenario
from gateway.store import Store
from tests.conftest import ROOT, SHARED_DATA, run_cli

SCENARIOS = sorted((ROOT / "tests" / "hil").glob("*.yaml"))
if shutil.which("dbus-daemon") is None or importlib.util.find_spec("dbusmock") is None:
    # The emulated BLE firmware needs a mock BlueZ (dbus-daemon, python-dbusmock): as test_ble_bluez, not here.
    SCENARIOS = [s for s in SCENARIOS if s.name != "button_firmware.yaml" and not s.name.startswith("pendant_sisfall")]
ALERT_TYPES_BUILT = {
    "emergency_button", "fall", "fall_radar", "smoke", "gas", "water_leak", "tamper", "low_battery", "sensor_offline",
    "inactivity", "bed_exit_no_return", "not_up", "night_door",
}


@pytest.mark.timeout(400)
def test_every_shipped_scenario_passes(tmp_path: Path) -> None:
    assert len(SCENARIOS) >= 6
    junit, results = tmp_path / "hil.xml", tmp_path / "hil.json"
    # The SisFall scenarios need ../shared/data beside the checkout (CI has it); without it they are skipped.
    skip = [] if SHARED_DATA.is_dir() else ["--skip-missing-data"]
    # Three at a time (each its own broker, gateway and boards): mostly waiting, so a third of the time.
    out = run_cli("hil", "run", *map(str, SCENARIOS), "--junit", str(junit), "--json", str(results), *skip,
                  "--jobs", "3", timeout=380)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(results.read_text())
    assert summary["failed"] == 0
    assert summary["passed"] + summary["skipped"] == len(SCENARIOS)
    if SHARED_DATA.is_dir():
        assert summary["skipped"] == 0
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
        ("duration_s: 5\nsteps:\n  - {at: 1, device: toaster, action: press}\n", "steps[0].device",
         "expected one of ['bedpad', 'button', 'pendant']"),
        ("duration_s: 5\nsteps:\n  - {at: 1, device: bedpad}\n", "steps[0]", "missing 'action'"),
        ("duration_s: 5\nsteps:\n  - {at: 1, device: bedpad, action: press}\n", "steps[0].action",
         "expected one of ['occupy', 'unplug_mat', 'vacate']"),
        ("duration_s: 5\nexpect:\n  - {event: [bed, in_bed], after: 1, within_ms: 9}\n", "expect[0].event",
         "expected {sensor, kind, value}"),
        ("duration_s: 5\nexpect:\n  - {event: {sensor: bed, kind: in_bed}, after: 1, within_ms: 9}\n",
         "expect[0].event", "missing 'value'"),
        ("duration_s: 5\nsteps:\n  - {at: 1, device: bedpad, recording: F01_SA01_R01}\n", "steps[0].recording",
         "only the pendant replays recordings"),
        ("duration_s: 5\nsteps:\n  - {at: 1, device: pendant, recording: F01}\n", "steps[0].recording",
         "expected a SisFall recording such as F01_SA01_R01"),
        ("duration_s: 5\nsteps:\n  - {at: 1, device: pendant, recording: D01_SA01_R01, seconds: x}\n",
         "steps[0].seconds", "expected a number >= 0"),
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


def test_firmware_steps_and_event_expectations_parse(tmp_path: Path) -> None:
    path = tmp_path / "fw.yaml"
    path.write_text(
        "duration_s: 9\nsteps:\n  - {at: 4, device: button, action: press}\n"
        "  - {at: 2, device: bedpad, action: occupy}\n  - {at: 3, sensor: m, kind: motion, value: true}\n"
        "expect:\n  - {event: {sensor: bed-pad, kind: in_bed, value: true}, after: 2, within_ms: 8000}\n"
    )
    sc = load_scenario(path)
    assert [(d.at_s, d.device, d.action) for d in sc.device_steps] == [(2, "bedpad", "occupy"), (4, "button", "press")]
    assert sc.devices == ("bedpad", "button")
    assert len(sc.sensor_steps) == 1
    (exp,) = sc.expect
    assert exp.event == ("bed-pad", "in_bed", True)
    assert exp.alert == "event bed-pad in_bed=true"


@pytest.mark.parametrize(
    ("devices", "flags"),
    [((), ["--no-hardware"]), (("bedpad",), ["--no-ble"]), (("button",), ["--no-serial"]),
     (("bedpad", "button"), [])],
)
def test_gateway_opens_only_the_emulated_hardware(devices: tuple[str, ...], flags: list[str]) -> None:
    cmd = _gateway_cmd(Path("g.toml"), Path("s.jsonl"), 0.0, devices)
    assert [a for a in cmd if a.startswith("--no-")] == flags


def test_event_expectation_judged_on_readings_at_the_platform(tmp_path: Path) -> None:
    path = tmp_path / "ev.yaml"
    path.write_text(
        "duration_s: 9\nexpect:\n  - {event: {sensor: bed-pad, kind: in_bed, value: true}, after: 2, within_ms: 1000}\n"
        "  - {event: {sensor: bed-pad, kind: in_bed, value: false}, after: 0, within_ms: 1000}\n"
    )
    result = Result(load_scenario(path))
    reading = {"sensor": "bed-pad", "kind": "in_bed", "value": True}
    result.received = [
        {"t": 100.5, "topic": "anxin/v1/gw/event", "payload": {"readings": [dict(reading, value=False)]}},
        {"t": 102.4, "topic": "anxin/v1/gw/event", "payload": {"readings": [reading]}},
    ]
    _judge(result, 100.0)
    late, early = result.outcomes
    assert (late.ok, early.ok) == (True, True)
    assert late.latency_ms == pytest.approx(400)
    result.outcomes.clear()
    _judge(result, 99.0)  # the true reading 1.4 s after its cause, the false one 1.5 s: over budget
    assert [(o.ok, round(o.latency_ms or 0)) for o in result.outcomes] == [(False, 1400), (False, 1500)]
    result.outcomes.clear()
    _judge(result, 101.1)  # the false reading came before its cause (beyond the 0.5 s grace): missing
    assert (result.outcomes[1].ok, result.outcomes[1].detail) == (False, "expected 1 event bed-pad in_bed=false, got 0")


def test_build_drivers_leaves_out_one_transport(tmp_path: Path, store: Store) -> None:
    from gateway import assemble, config
    from gateway.clock import Clock
    from gateway.hil import DEFAULT_HOME, _render_config

    cfg = config.load(_render_config(DEFAULT_HOME, tmp_path, "mqtt://127.0.0.1:1"))  # BLE and serial sensors

    def kinds(**flags: bool) -> list[str]:
        return sorted(type(d).__name__ for d in assemble.build_drivers(cfg, store, Clock(), **flags))

    assert kinds() == ["BleDriver", "PendantDriver", "SerialDriver"]
    assert kinds(ble=False) == ["SerialDriver"]
    assert kinds(serial=False) == ["BleDriver", "PendantDriver"]
    assert kinds(hardware=False, ble=True, serial=True) == []


def test_at_most_fails_when_an_alert_repeats(tmp_path: Path) -> None:
    scenario = tmp_path / "twice.yaml"
    scenario.write_text(
        f"name: two presses but at most one expected\nconfig: {ROOT / 'gateway' / 'data' / 'hil_home.toml'}\n"
        "duration_s: 4\nack: false\nsteps:\n"
        "  - {at: 1, sensor: button-bedside, kind: button, value: press}\n"
        "  - {at: 1.5, sensor: button-bedside, kind: button, value: press}\n"
        "expect:\n  - {alert: emergency_button, after: 1, within_ms: 2000, at_most: 1}\n"
    )
    results = tmp_path / "r.json"
    out = run_cli("hil", "run", str(scenario), "--json", str(results), timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    detail = json.loads(results.read_text())["scenarios"][0]["expectations"][0]["detail"]
    assert detail == "expected at most 1 emergency_button (raised), got 2"


def test_jobs_need_the_rigs_own_broker(tmp_path: Path) -> None:
    out = run_cli("hil", "run", str(ROOT / "tests" / "hil" / "smoke.yaml"), "--jobs", "2",
                  "--broker", "mqtt://127.0.0.1:1", timeout=60)
    assert out.returncode == 1
    assert "--jobs needs the rig's own broker" in out.stderr
