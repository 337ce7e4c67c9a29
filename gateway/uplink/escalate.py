"""Escalation: a critical alert nobody handled goes to the local notifiers, again and again.

"Handled" is the platform's ``cmd/ack`` (or a cancel or resolve on the gateway), not the
broker's PUBACK: a delivered alert that no person looked at is still escalated. The age of
an alert is taken on the monotonic clock when it was raised in this boot, so a wall clock
that jumps at NTP sync neither fires nor holds back an escalation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.clock import boot_id, utc_now
from gateway.errors import AnxinError
from gateway.model import Alert, AlertState, Severity

if TYPE_CHECKING:
    from gateway.uplink.client import Uplink

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Track:
    attempts: int
    last_mono: float | None


class Escalator:
    """Watches open critical alerts and calls the notifiers on schedule."""

    def __init__(self, uplink: Uplink) -> None:
        self.up = uplink
        self.after_s = uplink.cfg.uplink.escalate_after_s
        self.every_s = uplink.cfg.uplink.repeat_every_s
        self._track: dict[str, _Track] = {}

    @property
    def period_s(self) -> float:
        return max(0.2, min(5.0, self.after_s / 4, self.every_s / 4))

    async def run(self) -> None:
        while True:
            self.up.beat()
            try:
                await self.check()
            except AnxinError as exc:
                # An expected store error (disk): the message says it all.
                log.error("escalation check failed: %s", exc)  # noqa: TRY400
            await asyncio.sleep(self.period_s)

    async def check(self) -> None:
        open_critical = await self.up.db(self.up.store.open_alerts, Severity.CRITICAL)
        live = {a.id for a in open_critical}
        for gone in set(self._track) - live:
            del self._track[gone]
        for alert in open_critical:
            if _age_s(alert) < self.after_s:
                continue
            track = self._track.get(alert.id)
            if track is None:
                track = await self._restore(alert)
                self._track[alert.id] = track
            if track.last_mono is not None and time.monotonic() - track.last_mono < self.every_s:
                continue
            await self._escalate(alert, track)

    async def _restore(self, alert: Alert) -> _Track:
        """After a restart: count earlier escalations and honour the repeat schedule."""
        history = await self.up.db(self.up.store.alert_history, alert.id)
        escalations = [ts for state, ts, _ in history if state is AlertState.ESCALATED]
        if not escalations:
            return _Track(0, None)
        since = (utc_now() - escalations[-1]).total_seconds()
        return _Track(len(escalations), time.monotonic() - max(0.0, since))

    async def _escalate(self, alert: Alert, track: _Track) -> None:
        track.attempts += 1
        track.last_mono = time.monotonic()
        reached: list[str] = []
        for notifier in self.up.notifiers:
            cap = getattr(notifier, "max_attempts", None)
            if cap is not None and track.attempts > cap:
                continue  # this channel has said it often enough (SMS: no flood)
            try:
                await notifier.notify(alert, attempt=track.attempts)
            except (AnxinError, OSError) as exc:
                # An expected device failure (modem unplugged): the message says it all.
                log.error("notifier %s failed for alert %s: %s", notifier.name, alert.id, exc)  # noqa: TRY400
            else:
                reached.append(notifier.name)
        note = f"attempt {track.attempts}: " + (
            ", ".join(reached) if reached else "no notifier reached"
        )
        # Notified first, recorded after: a crash between the two repeats a notification
        # rather than skipping one. Shielded so a shutdown cannot drop the record.
        await asyncio.shield(
            self.up.db(self.up.store.record_alert_state, alert.id, AlertState.ESCALATED, note)
        )


def _age_s(alert: Alert) -> float:
    if alert.boot_id == boot_id() and alert.monotonic_s > 0:
        return time.monotonic() - alert.monotonic_s
    return (utc_now() - alert.ts).total_seconds()  # utc_now: follows a HIL rig's clock
