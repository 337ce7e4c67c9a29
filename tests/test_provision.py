"""First-boot provisioning from the boot partition: checked, atomic, secrets off the card."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import run_cli

from gateway import config
from gateway.errors import ConfigError
from gateway.provision import provision

ROOT = Path(__file__).resolve().parent.parent
GOOD = """secrets_file = "secrets.toml"
[gateway]
id = "gw-0042"
home = "home-0042"
[[rooms]]
id = "bedroom"
[[sensors]]
id = "button-bed"
kind = "button"
transport = "ble"
address = "A4:C1:38:00:00:01"
room = "bedroom"
key = "button-bed"
"""
SECRETS = 'mqtt_password = "s3cret"\n[keys]\nbutton-bed = "0123456789abcdef0123456789abcdef"\n'


def card(tmp_path: Path, cfg: str = GOOD, secrets: str | None = SECRETS) -> Path:
    src = tmp_path / "boot" / "anxin"
    src.mkdir(parents=True)
    (src / "gateway.toml").write_text(cfg)
    if secrets is not None:
        (src / "secrets.toml").write_text(secrets)
        (src / "secrets.toml").chmod(0o755)  # what a FAT partition shows
    return src


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_good_config_is_installed_and_secrets_leave_the_card(tmp_path: Path) -> None:
    src, dst = card(tmp_path), tmp_path / "etc"
    out = provision(src, dst, now=datetime(2026, 11, 23, 8, 0, tzinfo=UTC))
    assert out.ok, out.message
    assert (dst / "gateway.toml").read_text() == GOOD
    assert (dst / "secrets.toml").read_text() == SECRETS
    assert mode(dst / "secrets.toml") == 0o600
    assert mode(dst / "gateway.toml") == 0o644
    # The gateway loads what was installed, with its secrets.
    cfg = config.load(dst / "gateway.toml")
    assert cfg.secrets.mqtt_password == "s3cret"
    # The card: no secrets, the config renamed so it runs once, a note for the installer.
    assert sorted(p.name for p in src.iterdir()) == ["PROVISIONED.txt", "gateway.toml.installed"]
    note = (src / "PROVISIONED.txt").read_text()
    assert "gateway gw-0042, home home-0042, 1 sensors, 1 rooms" in note
    assert "secrets were removed from this card" in note


def test_bad_config_installs_nothing_and_says_why_on_the_card(tmp_path: Path) -> None:
    dst = tmp_path / "etc"
    first = provision(card(tmp_path / "a"), dst)
    assert first.ok
    before = {p.name: p.read_bytes() for p in dst.iterdir() if p.is_file()}
    bad = GOOD.replace('room = "bedroom"', 'room = "kitchen"')
    src = card(tmp_path / "b", bad, 'mqtt_password = "new"\n[keys]\nbutton-bed = "0123456789abcdef0123456789abcdef"\n')
    out = provision(src, dst)
    assert not out.ok
    # The previous config and secrets are back, byte for byte; no backup left half-made.
    assert {p.name: p.read_bytes() for p in dst.iterdir() if p.is_file()} == before
    assert config.load(dst / "gateway.toml").secrets.mqtt_password == "s3cret"
    # The card keeps its files (to fix on a laptop) and gets ERROR.txt naming line and key.
    assert (src / "gateway.toml").read_text() == bad
    assert (src / "secrets.toml").exists()
    err = (src / "ERROR.txt").read_text()
    assert "NOT installed" in err
    assert ":12: sensors[0].room: unknown room 'kitchen'" in err


def test_a_fixed_card_replaces_the_config_and_keeps_a_backup(tmp_path: Path) -> None:
    dst = tmp_path / "etc"
    assert provision(card(tmp_path / "a"), dst).ok
    src = card(tmp_path / "b", GOOD.replace("gw-0042", "gw-0043"), secrets=None)
    (src / "ERROR.txt").write_text("old error")
    out = provision(src, dst, now=datetime(2026, 11, 24, 9, 30, tzinfo=UTC))
    assert out.ok, out.message
    assert config.load(dst / "gateway.toml").gateway.id == "gw-0043"
    assert "gw-0042" in (dst / ".backup-20261124T093000Z" / "gateway.toml").read_text()
    assert not (src / "ERROR.txt").exists()
    assert (dst / "secrets.toml").read_text() == SECRETS  # untouched: none on the card


def test_nothing_to_provision_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no gateway\.toml"):
        provision(tmp_path, tmp_path / "etc")


def test_unknown_owner_is_refused_before_anything_is_touched(tmp_path: Path) -> None:
    src, dst = card(tmp_path), tmp_path / "etc"
    with pytest.raises(ConfigError, match="user 'no-such-user' does not exist"):
        provision(src, dst, owner="no-such-user")
    assert not dst.exists()
    assert (src / "secrets.toml").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_secrets_are_owned_by_the_service_user(tmp_path: Path) -> None:
    src, dst = card(tmp_path), tmp_path / "etc"
    assert provision(src, dst, owner="nobody").ok
    import pwd

    assert (dst / "secrets.toml").stat().st_uid == pwd.getpwnam("nobody").pw_uid


def test_cli_exit_status_follows_the_outcome(tmp_path: Path) -> None:
    src, dst = card(tmp_path, GOOD.replace("gw-0042", "gw 42")), tmp_path / "etc"
    res = run_cli("provision", "--from", str(src), "--to", str(dst))
    assert res.returncode == 1
    assert "gateway.id" in res.stdout
    (src / "gateway.toml").write_text(GOOD)
    res = run_cli("provision", "--from", str(src), "--to", str(dst))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "installed gateway.toml, secrets.toml" in res.stdout


def test_units_are_wired_together() -> None:
    unit = (ROOT / "deploy/raspberrypi/anxin-provision.service").read_text()
    assert "Before=anxin.service" in unit
    assert "anxin provision --from /boot/firmware/anxin --to /etc/anxin --owner anxin" in unit
    assert "anxin-provision.service" in (ROOT / "deploy/raspberrypi/anxin.service").read_text()
    install = (ROOT / "deploy/raspberrypi/install.sh").read_text()
    assert "99-anxin.rules" in install
    assert "anxin-provision.service" in install
