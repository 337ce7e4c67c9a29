"""SMS escalation through a modem's AT port, against an emulated modem on a real pty."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import run_cli
from hypothesis import given
from hypothesis import strategies as st
from modem_emulator import EmulatedModem

from gateway import config
from gateway.clock import Clock
from gateway.errors import ConfigError, DeviceUnavailableError, OperationTimeout, TransientError
from gateway.model import Alert, AlertState, AlertType
from gateway.notify.channels import SmsNotifier, build_notifiers
from gateway.notify.sms import SMS_UCS2_CHARS, Modem, ModemError, fit_sms, mask_number
from gateway.notify.text import compose
from gateway.store import Store
from gateway.uplink import Uplink

SH = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def modem(tmp_path: Path) -> Iterator[EmulatedModem]:
    m = EmulatedModem(tmp_path / "ttyUSB2").start()
    yield m
    m.close()


def toml(port: Path, *recipients: str, extra: str = "") -> str:
    nums = ", ".join(f'"{n}"' for n in recipients)
    return f"""
[gateway]
id = "gw-1"
home = "home-1"
name = "幸福里3号楼501"

[[rooms]]
id = "bedroom"
name = "卧室"

[uplink]
broker_url = "mqtt://127.0.0.1:1"
escalate_after_s = 1
repeat_every_s = 600
reconnect_min_s = 0.05
reconnect_max_s = 1

[notify.sms]
port = "{port}"
recipients = [{nums}]
timeout_s = 5
{extra}
"""


def button_alert() -> Alert:
    return Alert.raise_(AlertType.EMERGENCY_BUTTON, Clock(assume_synced=True).now(), room="bedroom")


def test_send_puts_chinese_text_through_ucs2_text_mode(modem: EmulatedModem) -> None:
    m = Modem(str(modem.dev.link), timeout_s=5)
    ref = m.send("+8613800138000", "【安心】卧室 紧急呼叫，请立即联系。")
    assert ref == 1
    assert modem.state.sent == [("+8613800138000", "【安心】卧室 紧急呼叫，请立即联系。")]
    cmds = modem.state.commands
    # text mode, UCS2 both for the text and the number, data coding scheme 8
    assert {"AT+CMGF=1", 'AT+CSCS="UCS2"', "AT+CSMP=17,167,0,8"} <= set(cmds)
    assert cmds.index('AT+CSCS="UCS2"') < next(i for i, c in enumerate(cmds) if c.startswith("AT+CMGS"))
    # The port is released after each message: a second send opens it again.
    assert m.send("13900000000", "second") == 2
    assert [n for n, _ in modem.state.sent] == ["+8613800138000", "13900000000"]


def test_sim_pin_is_entered_from_the_secrets(modem: EmulatedModem) -> None:
    modem.state.sim = "SIM PIN"
    with pytest.raises(ModemError, match="wants a PIN; put sms_pin in the secrets"):
        Modem(str(modem.dev.link), timeout_s=5).send("10086", "x")
    assert modem.state.sent == []
    Modem(str(modem.dev.link), timeout_s=5, pin="1234").send("10086", "x")
    assert modem.state.sent == [("10086", "x")]


def test_no_sim_card_says_so(modem: EmulatedModem) -> None:
    modem.state.sim = ""
    with pytest.raises(ModemError, match="SIM not ready") as err:
        Modem(str(modem.dev.link), timeout_s=5).send("10086", "x")
    assert "CME ERROR: 10" in str(err.value)


def test_network_refusal_is_an_error_with_its_code(modem: EmulatedModem) -> None:
    modem.state.cms_error = 500
    with pytest.raises(ModemError) as err:
        Modem(str(modem.dev.link), timeout_s=5).send("+8613800138000", "x")
    assert err.value.code == "500"
    assert "+861380013****" in str(err.value)  # the number is masked in logs
    assert "13800138000" not in str(err.value)


def test_silent_network_times_out_and_the_next_send_recovers(modem: EmulatedModem) -> None:
    modem.state.silent_after_text = True
    m = Modem(str(modem.dev.link), timeout_s=0.5)
    t0 = time.monotonic()
    with pytest.raises(OperationTimeout, match="no answer"):
        m.send("10086", "x")
    assert time.monotonic() - t0 < 5
    modem.state.silent_after_text = False
    assert m.send("10086", "again") >= 1
    assert modem.state.sent == [("10086", "again")]


def test_unplugged_modem_is_a_clear_device_error(tmp_path: Path, modem: EmulatedModem) -> None:
    with pytest.raises(DeviceUnavailableError, match=r"SMS modem .*ttyUSB9: cannot open"):
        Modem(str(tmp_path / "ttyUSB9")).send("10086", "x")
    modem.dev.unplug()  # the USB dongle pulled: the link now points nowhere
    with pytest.raises(DeviceUnavailableError):
        Modem(str(modem.dev.link), timeout_s=1).send("10086", "x")


def test_status_tells_the_installer_sim_network_and_signal(modem: EmulatedModem) -> None:
    modem.state.creg, modem.state.csq = 5, 99
    st_ = Modem(str(modem.dev.link)).status()
    assert (st_.sim, st_.registration, st_.signal, st_.operator) == ("READY", "roaming", None, "CHINA MOBILE")
    assert st_.can_send
    assert st_.line() == "SIM READY; network roaming (CHINA MOBILE); signal unknown"
    modem.state.creg = 2
    assert not Modem(str(modem.dev.link)).status().can_send


@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize("type_", list(AlertType))
def test_every_message_fits_one_sms(type_: AlertType, language: str) -> None:
    a = Alert.raise_(type_, Clock().now(), room="bedroom")
    text = compose(a, attempt=12, home="幸福里小区3号楼2单元501室", tz=SH, language=language,
                   room_name="卫生间")
    assert len(fit_sms(text).encode("utf-16-be")) <= 2 * SMS_UCS2_CHARS
    if language == "zh":
        assert "第12次" in fit_sms(text) or len(text) > SMS_UCS2_CHARS


def test_message_says_what_where_and_since_when() -> None:
    a = Alert(type=AlertType.FALL, severity=button_alert().severity,
              ts=datetime(2026, 11, 23, 6, 5, tzinfo=UTC), room="bathroom")
    zh = compose(a, attempt=2, home="501", tz=SH, room_name="卫生间")
    assert zh == "【安心】501 卫生间 14:05 疑似跌倒，平台未处理(第2次)，请立即联系或上门查看。"
    en = compose(a, attempt=1, home="501", tz=SH, language="en", room_name="bathroom")
    assert en == "Anxin 501: FALL in bathroom at 14:05, not handled (1). Check now."


@given(st.text(max_size=200))
def test_fit_sms_never_exceeds_one_message(text: str) -> None:
    out = fit_sms(text)
    assert len(out.encode("utf-16-be")) <= 2 * SMS_UCS2_CHARS
    assert out == text or out.endswith("…")


def test_mask_number() -> None:
    assert mask_number("+8613800138000") == "+861380013****"
    assert mask_number("10086") == "****"


async def test_one_bad_number_does_not_stop_the_others(tmp_path: Path, modem: EmulatedModem) -> None:
    cfg = config.loads(toml(modem.dev.link, "13800000001", "13800000002"))
    sms = SmsNotifier(cfg)
    modem.state.cms_error = 500  # the first number is refused
    await sms.notify(button_alert(), attempt=1)
    assert [n for n, _ in modem.state.sent] == ["13800000002"]
    modem.state.sim = ""
    with pytest.raises(TransientError, match="SIM not ready"):
        await sms.notify(button_alert(), attempt=2)


def test_config_refuses_half_an_sms_setup(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nobody to text"):
        config.loads(toml(tmp_path / "tty"))
    with pytest.raises(ConfigError, match=r"phone numbers like .*'138-0013'") as err:
        config.loads(toml(tmp_path / "tty", "138-0013"))
    assert err.value.line is not None


async def test_unhandled_button_press_is_texted_while_the_broker_is_down(
    tmp_path: Path, modem: EmulatedModem, store: Store
) -> None:
    """The whole path: no internet, a critical alert nobody acknowledges → an SMS, recorded."""
    cfg = config.loads(toml(modem.dev.link, "+8613800138000"))
    notifiers = build_notifiers(cfg)
    assert [n.name for n in notifiers] == ["log", "sms"]
    row = store.commit_alert(button_alert())
    uplink = Uplink(cfg, store, notifiers=notifiers)
    task = asyncio.create_task(uplink.run())
    try:
        deadline = time.monotonic() + 20
        while not modem.state.sent:
            assert time.monotonic() < deadline, "no SMS within 20 s"
            await asyncio.sleep(0.05)
    finally:
        await uplink.close()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    ((number, text),) = modem.state.sent
    assert number == "+8613800138000"
    assert text.startswith("【安心】幸福里3号楼501 卧室 ")
    assert "紧急呼叫" in text
    assert "第1次" in text
    notes = [n for s, _, n in store.alert_history(str(row.ref)) if s is AlertState.ESCALATED]
    assert notes == ["attempt 1: log, sms"]


def test_cli_notify_test_reports_modem_and_sends(tmp_path: Path, modem: EmulatedModem) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(toml(modem.dev.link, "+8613800138000"))
    res = run_cli("notify", "test", "--config", str(cfg), "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SIM READY; network home (CHINA MOBILE); signal 21/31" in res.stdout
    assert "sms: sent to +861380013****" in res.stdout
    last = json.loads(res.stdout.strip().splitlines()[-1])
    assert last["ok"] is True
    assert last["modem"]["signal"] == 21
    assert "测试消息" in modem.state.sent[0][1]
    modem.state.creg = 3  # registration denied: nothing is sent, the exit status says so
    res = run_cli("notify", "test", "--config", str(cfg))
    assert res.returncode == 1
    assert "network denied" in res.stdout
    assert len(modem.state.sent) == 1


def test_a_modem_without_numeric_errors_still_sends(modem: EmulatedModem) -> None:
    modem.state.cmee = False
    assert Modem(str(modem.dev.link), timeout_s=5).send("10086", "x") == 1
    assert modem.state.sent == [("10086", "x")]


async def test_sms_stops_after_max_per_alert_while_the_escalation_goes_on(
    tmp_path: Path, modem: EmulatedModem, store: Store
) -> None:
    text = toml(modem.dev.link, "+8613800138000").replace("timeout_s = 5", "timeout_s = 5\nmax_per_alert = 2")
    text = text.replace("repeat_every_s = 600", "repeat_every_s = 10")
    cfg = config.loads(text)
    row = store.commit_alert(button_alert())
    uplink = Uplink(cfg, store, notifiers=build_notifiers(cfg))
    esc = uplink.escalator
    esc.after_s, esc.every_s = 0.0, 0.0  # escalate on every check, to run through attempts
    for _ in range(4):
        await esc.check()
    notes = [n for s, _, n in store.alert_history(str(row.ref)) if s is AlertState.ESCALATED]
    assert notes == ["attempt 1: log, sms", "attempt 2: log, sms", "attempt 3: log", "attempt 4: log"]
    assert len(modem.state.sent) == 2  # two texts, then the cap
    assert "第2次" in modem.state.sent[1][1]
