"""The family's daily "all normal" (DESIGN.md: "a daily 'all normal' if they want it").

At ``[notify] daily_summary_at`` (home time) the gateway texts the SMS recipients and the
apprise services one line about the day so far: when the resident was first active after
the night and last active, how many sensor events, and the day's alerts with how many are still open. Silence
is not a summary: a day with no activity at all says so and asks the family to call.

Sent once a day: the date of the last one is kept in the store, so a restart neither sends
it twice nor, after a gateway that was off at that time, skips it (it goes out on start,
until midnight).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Protocol

from gateway.clock import Clock
from gateway.config import Config
from gateway.errors import AnxinError
from gateway.model import ACTIVITY_KINDS, AlertState, AlertType
from gateway.notify.text import type_name
from gateway.store import Store

log = logging.getLogger(__name__)

LEARNED_KEY = "notify.daily_summary"
_CLOSED = frozenset({AlertState.ACKNOWLEDGED, AlertState.CANCELLED, AlertState.RESOLVED})
RunDb = Callable[..., Awaitable[Any]]


class TextChannel(Protocol):
    name: str

    async def send_text(self, text: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Day:
    date: str
    first: datetime | None
    last: datetime | None
    events: int
    alerts: tuple[tuple[AlertType, AlertState], ...]



def summary_text(day: Day, *, home: str, language: str, tz: Any) -> str:
    """One SMS about the day (fits 70 UCS2 characters for a short home name)."""
    alerts = [(t, s) for t, s in day.alerts if t is not AlertType.TEST]
    counts = Counter(t for t, _ in alerts)
    still_open = sum(1 for _, s in alerts if s not in _CLOSED)

    def hm(d: datetime) -> str:
        return d.astimezone(tz).strftime("%H:%M")

    md = day.date[5:].replace("-", "/")
    if language == "en":
        if day.first is None:
            return f"Anxin {home} {md}: NO activity seen today. Please call to check."
        head = f"Anxin {home} {md}: first active {hm(day.first)}, last {hm(day.last or day.first)}"
        if not alerts:
            return f"{head}, {day.events} events, no alerts. All normal."
        kinds = ", ".join(f"{type_name(t, 'en')} {n}" for t, n in counts.most_common(3))
        return f"{head}; alerts: {kinds}; {still_open} open."
    if day.first is None:
        return f"【安心】{home} {md} 今天没有检测到任何活动，请打电话确认。"
    head = f"【安心】{home} {md} 今日首次活动{hm(day.first)}，最近活动{hm(day.last or day.first)}"
    if not alerts:
        return f"{head}，共{day.events}次活动，无告警，一切正常。"
    kinds = "、".join(f"{type_name(t, 'zh')}{n}" for t, n in counts.most_common(3))
    return f"{head}；告警{len(alerts)}条（{kinds}），{still_open}条未处理。"


class DailySummary:
    def __init__(self, cfg: Config, store: Store, channels: Sequence[TextChannel], *,
                 clock: Clock | None = None, run_db: RunDb | None = None,
                 check_every_s: float = 30.0) -> None:
        assert cfg.notify.daily_summary_at is not None
        self.cfg = cfg
        self.store = store
        self.channels = list(channels)
        self.clock = clock or Clock()
        self.run_db: RunDb = run_db or asyncio.to_thread
        self.check_every_s = check_every_s
        hh, mm = cfg.notify.daily_summary_at.split(":")
        self.at = time(int(hh), int(mm))

    async def run(self) -> None:
        while True:
            await self.maybe_send()
            await asyncio.sleep(self.check_every_s)

    async def maybe_send(self, now: datetime | None = None) -> bool:
        """Send today's summary if it is time and not yet done; True when sent."""
        tz = self.cfg.gateway.tz
        local = (now or self.clock.now().wall).astimezone(tz)
        if local.time() < self.at:
            return False
        today = local.date().isoformat()
        if await self.run_db(self.store.learned, LEARNED_KEY) == today:
            return False
        day = await self.run_db(self.day, local)
        text = summary_text(day, home=self.cfg.gateway.name or self.cfg.gateway.home,
                            language=self.cfg.notify.language, tz=tz)
        reached = []
        for ch in self.channels:
            try:
                await ch.send_text(text)
            except (AnxinError, OSError) as exc:
                log.error("daily summary by %s failed: %s", ch.name, exc)  # noqa: TRY400 - expected device failure
            else:
                reached.append(ch.name)
        log.info("daily summary (%s): %s", ", ".join(reached) or "no channel reached", text)
        if reached or not self.channels:
            await self.run_db(self.store.put_learned, LEARNED_KEY, today)
            return True
        return False  # nobody got it: try again at the next check

    def day(self, local_now: datetime) -> Day:
        """The day so far. Its first activity is the first after the night (``[detection.rules]
        night_end``): a toilet trip at 3 a.m. is not when the resident got going."""
        kinds = [k.value for k in ACTIVITY_KINDS]
        start = datetime.combine(local_now.date(), time(0), tzinfo=local_now.tzinfo)
        hh, mm = self.cfg.detection.rules.night_end.split(":")
        morning = datetime.combine(local_now.date(), time(int(hh), int(mm)), tzinfo=local_now.tzinfo)
        end = local_now + timedelta(microseconds=1)
        _, last, n = self.store.activity_between(start, end, kinds)
        first, _, _ = self.store.activity_between(min(morning, end), end, kinds)
        alerts = tuple(self.store.alerts_between(start, end))
        return Day(local_now.date().isoformat(), first, last, n, alerts)
