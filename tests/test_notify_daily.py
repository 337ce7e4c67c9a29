"""The family's daily "all normal": what it says, when, once a day, through the real modem path."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from modem_emulator import EmulatedModem

from gateway import config
from gateway.clock import Stamp
from gateway.errors import ConfigError, TransientError
from gateway.model import Alert, AlertState, AlertType, Reading, ReadingKind
from gateway.notify.channels import SmsNotifier
from gateway.notify.daily import DailySummary, Day, summary_text
from gateway.notify.sms import SMS_UCS2_CHARS
from gateway.store import Store

SH = ZoneInfo("Asia/Shanghai")


def local(h: int, m: int = 0, day: int = 23) -> datetime:
    return datetime(2026, 11, day, h, m, tzinfo=SH)


def stamp(ts: datetime) -> Stamp:
    return Stamp(ts.astimezone(UTC), 0.0, "boot", True)


def reading(ts: datetime, kind: ReadingKind = ReadingKind.MOTION) -> Reading:
    return Reading.at(stamp(ts), "motion-living", kind, True)


def toml(port: Path | None, at: str = "20:00") -> str:
    sms = f'[notify.sms]\nport = "{port}"\nrecipients = ["+8613800138000"]\ntimeout_s = 5\n' if port else ""
    return f"""
[gateway]
id = "gw-1"
home = "home-1"
name = "501室"

[notify]
daily_summary_at = "{at}"
{sms}"""


class Channel:
    name = "fake"

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.fail = False

    async def send_text(self, text: str) -> None:
        if self.fail:
            raise TransientError("modem not answering")
        self.texts.append(text)


@pytest.fixture
def modem(tmp_path: Path) -> Iterator[EmulatedModem]:
    m = EmulatedModem(tmp_path / "ttyUSB2").start()
    yield m
    m.close()


def test_texts_say_what_the_day_was() -> None:
    normal = Day("2026-11-23", local(7, 12), local(19, 40), 146, ())
    assert summary_text(normal, home="501室", language="zh", tz=SH) == (
        "【安心】501室 11/23 今日首次活动07:12，最近活动19:40，共146次活动，无告警，一切正常。")
    eventful = Day("2026-11-23", local(7, 12), local(19, 40), 80,
                   ((AlertType.EMERGENCY_BUTTON, AlertState.ACKNOWLEDGED),
                    (AlertType.FALL, AlertState.RAISED), (AlertType.TEST, AlertState.RAISED)))
    text = summary_text(eventful, home="501室", language="zh", tz=SH)
    assert text.endswith("告警2条（紧急呼叫1、疑似跌倒1），1条未处理。")
    silent = Day("2026-11-23", None, None, 0, ())
    assert "没有检测到任何活动" in summary_text(silent, home="501室", language="zh", tz=SH)
    en = summary_text(normal, home="501", language="en", tz=SH)
    assert en == "Anxin 501 11/23: first active 07:12, last 19:40, 146 events, no alerts. All normal."
    for day in (normal, eventful, silent):
        assert len(summary_text(day, home="501室", language="zh", tz=SH)) <= SMS_UCS2_CHARS


async def test_sent_once_at_the_time_from_the_day_in_the_store(store: Store) -> None:
    cfg = config.loads(toml(None))
    store.add_readings([reading(local(3, 10)),  # a toilet trip in the night: not the first
                        reading(local(6, 58)), reading(local(7, 5), ReadingKind.IN_BED),
                        reading(local(9, 30), ReadingKind.RSSI),  # not activity
                        reading(local(18, 2)), reading(local(5, 0, day=22))])  # yesterday
    store.commit_alert(Alert.raise_(AlertType.EMERGENCY_BUTTON, stamp(local(10, 0))))
    ch = Channel()
    daily = DailySummary(cfg, store, [ch])
    assert not await daily.maybe_send(local(19, 59))
    assert await daily.maybe_send(local(20, 0))
    assert not await daily.maybe_send(local(20, 1))  # once a day
    assert ch.texts == ["【安心】501室 11/23 今日首次活动06:58，最近活动18:02；告警1条（紧急呼叫1），1条未处理。"]
    # A restart the same evening does not send it again; the next day does.
    again = DailySummary(cfg, store, [ch])
    assert not await again.maybe_send(local(21, 0))
    assert await again.maybe_send(local(20, 30, day=24))
    assert "今天没有检测到任何活动" in ch.texts[-1]


async def test_a_failed_send_is_tried_again(store: Store) -> None:
    ch = Channel()
    ch.fail = True
    daily = DailySummary(config.loads(toml(None)), store, [ch])
    assert not await daily.maybe_send(local(20, 0))
    ch.fail = False
    assert await daily.maybe_send(local(20, 1))
    assert len(ch.texts) == 1


async def test_reaches_the_family_by_sms(modem: EmulatedModem, store: Store) -> None:
    cfg = config.loads(toml(modem.dev.link))
    store.add_readings([reading(local(7, 0)), reading(local(12, 0))])
    assert await DailySummary(cfg, store, [SmsNotifier(cfg)]).maybe_send(local(20, 0))
    ((number, text),) = modem.state.sent
    assert number == "+8613800138000"
    assert "一切正常" in text


def test_bad_time_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"notify.daily_summary_at: got '8pm'"):
        config.loads(toml(None, at="8pm"))


async def test_the_service_runs_it_and_health_beside_the_alarm_path(tmp_path: Path, modem: EmulatedModem) -> None:
    """`anxin run`'s service: with a summary time already past, the family gets today's."""
    import asyncio
    import time

    from gateway.service import Service

    cfg = config.loads(toml(modem.dev.link, at="00:00").replace(
        "[notify]", f'[storage]\npath = "{tmp_path / "gw.db"}"\n\n[notify]'))
    svc = Service(cfg)
    task = asyncio.create_task(svc.run())
    try:
        deadline = time.monotonic() + 20
        while not modem.state.sent:
            assert time.monotonic() < deadline, "no daily summary within 20 s"
            await asyncio.sleep(0.05)
    finally:
        svc.request_stop()
        await asyncio.wait_for(task, 10)
    assert "今天没有检测到任何活动" in modem.state.sent[0][1]
    assert {"health", "daily-summary"} <= set(svc.health)
