"""Wrong configs: every message names the file, the line and the key, and what was expected.

Each case edits one thing in a valid config, loads it from a real file, and checks the whole
location (file, line, key) and the words that tell the installer what to write instead.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from gateway import config
from gateway.errors import ConfigError, SecretsPermissionError
from gateway.model import SensorKind, Transport

BASE = """\
secrets_file = "secrets.toml"

[gateway]
id = "gw-1"
home = "home-1"
timezone = "Europe/Berlin"

[[rooms]]
id = "bedroom"
kind = "bedroom"

[[rooms]]
id = "entrance"
kind = "entrance"

[[sensors]]
id = "button"
kind = "button"
transport = "ble"
address = "7C:C6:B6:00:00:01"
room = "bedroom"
key = "button"

[[sensors]]
id = "door"
kind = "door"
transport = "ble"
address = "7C:C6:B6:00:00:02"
room = "entrance"

[uplink]
broker_url = "mqtt://127.0.0.1:1883"
keepalive_s = 30

[detection.rules]
night_start = "22:00"
"""

SECRETS = """\
mqtt_password = "hunter2"

[keys]
button = "0123456789abcdef0123456789abcdef"
"""


def write(
    tmp_path: Path, text: str = BASE, secrets: str | None = SECRETS, mode: int = 0o600
) -> Path:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(text, encoding="utf-8")
    if secrets is not None:
        sec = tmp_path / "secrets.toml"
        sec.write_text(secrets, encoding="utf-8")
        sec.chmod(mode)
    return cfg


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing ``needle``."""
    for n, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return n
    raise AssertionError(f"{needle!r} not in the config")


@dataclass(frozen=True)
class Case:
    old: str
    new: str
    key: str | None
    line_needle: str | None  # None: the error has no line (whole-file problems)
    expect: tuple[str, ...]  # fragments of the message: what was wrong and what was expected


CASES: dict[str, Case] = {
    "toml_syntax": Case(
        'id = "gw-1"', 'id "gw-1"', None, 'id "gw-1"', ("not valid TOML", "Expected '='")
    ),
    "duplicate_toml_key": Case(
        "keepalive_s = 30",
        "keepalive_s = 30\nkeepalive_s = 40",
        None,
        "keepalive_s = 40",
        ("not valid TOML",),
    ),
    "missing_gateway": Case(
        '[gateway]\nid = "gw-1"\nhome = "home-1"\ntimezone = "Europe/Berlin"\n',
        "",
        "gateway",
        None,
        ("missing [gateway] table", "id and home"),
    ),
    "missing_id": Case(
        'id = "gw-1"\n',
        "",
        "gateway.id",
        "[gateway]",
        ("missing", "expected a string", "gateway id"),
    ),
    "wrong_type": Case(
        "keepalive_s = 30",
        'keepalive_s = "30"',
        "uplink.keepalive_s",
        "keepalive_s",
        ("expected an integer", "'30'"),
    ),
    "float_for_int": Case(
        "keepalive_s = 30",
        "keepalive_s = 30.5",
        "uplink.keepalive_s",
        "keepalive_s",
        ("expected an integer", "30.5"),
    ),
    "out_of_range": Case(
        "keepalive_s = 30",
        "keepalive_s = 2",
        "uplink.keepalive_s",
        "keepalive_s",
        ("got 2", "expected at least 5"),
    ),
    "unknown_key": Case(
        "keepalive_s = 30",
        "keep_alive_s = 30",
        "uplink.keep_alive_s",
        "keep_alive_s",
        (
            "unknown key",
            "did you mean 'keepalive_s'?",
            "expected one of:",
            "broker_url",
            "topic_root",
        ),
    ),
    "unknown_top_level_table": Case(
        "[uplink]",
        "[uplinks]",
        "uplinks",
        "[uplinks]",
        ("unknown key", "did you mean 'uplink'?"),
    ),
    "bad_enum": Case(
        'kind = "door"',
        'kind = "doorbell"',
        "sensors[1].kind",
        'kind = "doorbell"',
        ("got 'doorbell'", "expected one of", "'door'", "'motion'"),
    ),
    "bad_transport": Case(
        'transport = "ble"\naddress = "7C:C6:B6:00:00:02"',
        'transport = "zigbee"\naddress = "x"',
        "sensors[1].transport",
        "zigbee",
        ("got 'zigbee'", "'ble'", "'serial'", "'rf433'"),
    ),
    "rooms_not_array": Case(
        '[[rooms]]\nid = "bedroom"\nkind = "bedroom"\n\n'
        '[[rooms]]\nid = "entrance"\nkind = "entrance"\n',
        '[rooms]\nid = "bedroom"\n',
        "rooms",
        "[rooms]",
        ("expected a list ([[rooms]] tables)",),
    ),
    "duplicate_sensor_id": Case(
        'id = "door"',
        'id = "button"',
        "sensors[1].id",
        "REPLACED",
        ("duplicate sensor id 'button'", "sensors[0]"),
    ),
    "duplicate_address": Case(
        'address = "7C:C6:B6:00:00:02"',
        'address = "7c:c6:b6:00:00:01"',
        "sensors[1].address",
        "7c:c6:b6",
        ("already used by sensors[0]",),
    ),
    "sensor_missing_room": Case(
        'address = "7C:C6:B6:00:00:02"\nroom = "entrance"',
        'address = "7C:C6:B6:00:00:02"',
        "sensors[1].room",
        "REPLACED_HEADER",
        ("missing", "expected a string", "id of a room in [[rooms]]"),
    ),
    "unknown_room": Case(
        'room = "entrance"',
        'room = "hall"',
        "sensors[1].room",
        'room = "hall"',
        ("unknown room 'hall'", "rooms: bedroom, entrance"),
    ),
    "bad_room_kind": Case(
        'kind = "entrance"',
        'kind = "garage"',
        "rooms[1].kind",
        "garage",
        ("got 'garage'", "bedroom, bathroom, kitchen"),
    ),
    "bad_ble_mac": Case(
        'address = "7C:C6:B6:00:00:02"',
        'address = "7C:C6:B6:00:00"',
        "sensors[1].address",
        '7C:C6:B6:00:00"',
        ("got '7C:C6:B6:00:00'", "expected a BLE MAC address"),
    ),
    "bind_key_not_in_secrets": Case(
        'key = "button"',
        'key = "buton"',
        "sensors[0].key",
        'key = "buton"',
        ("bind key 'buton' is not in the secrets file [keys]",),
    ),
    "bad_time_zone": Case(
        '"Europe/Berlin"',
        '"Europe/Berlln"',
        "gateway.timezone",
        "Berlln",
        ("got 'Europe/Berlln'", "expected an IANA time zone"),
    ),
    "bad_hhmm": Case(
        'night_start = "22:00"',
        'night_start = "22:60"',
        "detection.rules.night_start",
        "22:60",
        ("got '22:60'", 'expected a time of day as "HH:MM"'),
    ),
    "bad_broker_scheme": Case(
        '"mqtt://127.0.0.1:1883"',
        '"http://127.0.0.1"',
        "uplink.broker_url",
        "http://",
        ("got 'http://127.0.0.1'", "expected a broker URL", "mqtts://"),
    ),
    "bad_broker_port": Case(
        '"mqtt://127.0.0.1:1883"',
        '"mqtt://127.0.0.1:port"',
        "uplink.broker_url",
        ":port",
        ("expected a broker URL with a numeric port",),
    ),
    "tls_file_missing": Case(
        "keepalive_s = 30",
        'keepalive_s = 30\ntls_ca = "/nonexistent/ca.pem"',
        "uplink.tls_ca",
        "tls_ca",
        ("file '/nonexistent/ca.pem' does not exist",),
    ),
    "bad_id_pattern": Case(
        'id = "gw-1"',
        'id = "gw 1"',
        "gateway.id",
        '"gw 1"',
        ("got 'gw 1'", "expected gateway id"),
    ),
    "day_cap_below_min_limit": Case(
        "[detection.rules]",
        "[detection.inactivity]\nday_busy_max_min = 60\n\n[detection.rules]",
        "detection.inactivity.day_busy_max_min",
        "day_busy_max_min",
        ("must be 0 (off) or at least min_limit_min (90)",),
    ),
    "section_not_a_table": Case(
        'secrets_file = "secrets.toml"\n',
        'secrets_file = "secrets.toml"\nlogging = "debug"\n',
        "logging",
        'logging = "debug"',
        ("expected a table, got str",),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_wrong_config_names_file_line_key_and_expectation(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    assert BASE.count(case.old) >= 1, "the case must change something"
    text = BASE.replace(case.old, case.new, 1)
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    err = info.value
    if case.line_needle is None:
        want_line = None
    elif case.line_needle == "REPLACED_HEADER":  # the [[table]] the missing key belongs in
        want_line = BASE[: BASE.index(case.old)].count("\n") + 1
        want_line = max(
            n for n, ln in enumerate(text.splitlines(), 1) if n <= want_line and ln.startswith("[[")
        )
    elif case.line_needle == "REPLACED":
        want_line = BASE[: BASE.index(case.old)].count("\n") + 1
    else:
        want_line = line_of(text, case.line_needle)
    assert (err.path, err.line, err.key) == (str(path), want_line, case.key), str(err)
    message = str(err)
    where = f"{path}:{want_line}: " if want_line is not None else f"{path}: "
    assert message.startswith(where + (f"{case.key}: " if case.key else "")), message
    for fragment in case.expect:
        assert fragment in message, f"{fragment!r} missing from: {message}"


def test_the_base_config_is_valid(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path))
    assert [s.id for s in cfg.sensors] == ["button", "door"]
    assert cfg.secrets.keys["button"] == "0123456789abcdef0123456789abcdef"
    assert cfg.uplink.keepalive_s == 30


# ---------------------------------------------------------------------------- secrets file


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_secrets_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path, mode=mode)
    with pytest.raises(SecretsPermissionError) as info:
        config.load(path)
    sec = tmp_path / "secrets.toml"
    assert info.value.path == str(sec)
    assert str(info.value).startswith(f"{sec}: ")
    assert f"mode {mode:o}" in str(info.value)
    assert f"chmod 600 {sec}" in str(info.value)


def test_secrets_file_missing_points_at_secrets_file_key(tmp_path: Path) -> None:
    path = write(tmp_path, secrets=None)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    err = info.value
    assert (err.path, err.line, err.key) == (str(path), 1, "secrets_file")
    assert f"secrets file {str(tmp_path / 'secrets.toml')!r} does not exist" in str(err)


def test_bad_bind_key_points_at_secrets_line(tmp_path: Path) -> None:
    secrets = SECRETS.replace("0123456789abcdef0123456789abcdef", "0123-not-hex")
    path = write(tmp_path, secrets=secrets)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    err = info.value
    sec = tmp_path / "secrets.toml"
    assert (err.path, err.line, err.key) == (str(sec), 4, "keys.button")
    assert "expected a BTHome bind key: 32 hex digits" in str(err)
    assert "0123-not-hex" not in str(err), "a secret must not be echoed"


def test_unknown_key_in_secrets_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, secrets=SECRETS.replace("mqtt_password", "mqtt_pasword"))
    with pytest.raises(ConfigError) as info:
        config.load(path)
    err = info.value
    assert (err.path, err.line, err.key) == (str(tmp_path / "secrets.toml"), 1, "mqtt_pasword")
    assert "did you mean 'mqtt_password'?" in str(err)


def test_secrets_syntax_error_names_secrets_line(tmp_path: Path) -> None:
    path = write(tmp_path, secrets=SECRETS.replace('button = "', "button = "))
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.path == str(tmp_path / "secrets.toml")
    assert info.value.line == 4
    assert "not valid TOML" in str(info.value)


# ---------------------------------------------------------------------------- the file itself


def test_config_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path / "nope.toml")
    assert (
        str(info.value)
        == f"{tmp_path / 'nope.toml'}: config file does not exist (pass --config FILE)"
    )


def test_config_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path)
    assert info.value.path == str(tmp_path)
    assert "cannot read the config file" in str(info.value)


def test_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_bytes(b'[gateway]\nid = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert "not UTF-8" in str(info.value)


# ---------------------------------------------------------------------------- the shipped example


def _example_copy(tmp_path: Path) -> Path:
    """The example as an installer would place it: secrets chmod 600 (git keeps no modes)."""
    for name in ("gateway.toml", "secrets.toml"):
        shutil.copy(ROOT / "examples" / name, tmp_path / name)
    (tmp_path / "secrets.toml").chmod(0o600)
    return tmp_path / "gateway.toml"


def test_example_config_loads(tmp_path: Path) -> None:
    cfg = config.load(_example_copy(tmp_path))
    assert {r.kind for r in cfg.rooms} == {"bedroom", "living", "kitchen", "bathroom", "entrance"}
    kinds = {s.id: (s.kind, s.transport) for s in cfg.sensors}
    assert kinds["button-bed"] == (SensorKind.BUTTON, Transport.BLE)
    assert kinds["door-front"] == (SensorKind.DOOR, Transport.BLE)
    assert kinds["bedpad"] == (SensorKind.BED, Transport.SERIAL)
    assert kinds["radar-bedroom"] == (SensorKind.RADAR_PRESENCE, Transport.SERIAL)
    assert kinds["pendant"][0] is SensorKind.PENDANT
    assert kinds["smoke-kitchen"] == (SensorKind.SMOKE, Transport.RF433)
    motion_rooms = sorted(s.room for s in cfg.sensors if s.kind is SensorKind.MOTION)
    assert motion_rooms == ["bathroom", "living"]
    assert cfg.sensor("radar-bedroom") is not None
    assert dict(cfg.sensor("radar-bedroom").options) == {"protocol": "ld2410", "baud": 256000}  # type: ignore[union-attr]
    assert cfg.detection.rules.entrance_door == "door-front"
    for s in cfg.sensors:
        if s.key:
            assert s.key in cfg.secrets.keys


# ---------------------------------------------------------------------------- anxin config check


def test_cli_config_check_prints_effective_config_masked(tmp_path: Path) -> None:
    result = run_cli("config", "check", "--config", str(_example_copy(tmp_path)))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "change-me" not in out
    assert "00000000000000000000000000000001" not in out
    assert 'mqtt_password = "***"' in out
    assert 'button-bed = "***"' in out
    assert "keepalive_s = 30" in out, "defaults are part of the effective config"
    assert "5 rooms, 8 sensors" in out


def test_cli_config_check_json_masked(tmp_path: Path) -> None:
    import json

    result = run_cli("config", "check", "--json", "--config", str(_example_copy(tmp_path)))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["secrets"]["mqtt_password"] == "***"
    assert set(data["secrets"]["keys"].values()) == {"***"}
    assert data["gateway"]["id"] == "gw-0001"


def test_cli_config_check_error_exits_1_with_location(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace('room = "entrance"', 'room = "hall"'))
    result = run_cli("config", "check", "--config", str(path))
    assert result.returncode == 1
    line = line_of(BASE, 'room = "entrance"')
    assert result.stderr.strip() == (
        f"anxin: error: {path}:{line}: sensors[1].room: "
        "unknown room 'hall'; rooms: bedroom, entrance"
    )
    assert result.stdout == ""


def test_cli_config_check_refuses_readable_secrets(tmp_path: Path) -> None:
    path = write(tmp_path, mode=0o644)
    result = run_cli("config", "check", "--config", str(path))
    assert result.returncode == 1
    assert "chmod 600" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


def test_cli_config_env_var(tmp_path: Path) -> None:
    path = write(tmp_path)
    result = run_cli("config", "check", env={"ANXIN_CONFIG": str(path)})
    assert result.returncode == 0, result.stderr
    assert f"# OK: {path}" in result.stdout


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_config(tmp_path: Path) -> None:
    path = write(tmp_path)
    path.chmod(0)
    with pytest.raises(ConfigError, match="cannot read the config file"):
        config.load(path)
