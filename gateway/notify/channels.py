"""The notifiers the escalation calls: SMS through the modem, and apprise's services.

Both are built from the config by ``build_notifiers``; the log line is always there too,
so an escalation is never silent even on a gateway with nothing else configured.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gateway.errors import AnxinError, DeviceUnavailableError, TransientError
from gateway.model import Alert
from gateway.notify.base import LoggingNotifier, Notifier
from gateway.notify.sms import Modem, mask_number
from gateway.notify.text import compose

if TYPE_CHECKING:
    from gateway.config import Config

log = logging.getLogger(__name__)


class _Composer:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def text(self, alert: Alert, attempt: int) -> str:
        room = self.cfg.room(alert.room) if alert.room else None
        return compose(
            alert, attempt=attempt, home=self.cfg.gateway.name or self.cfg.gateway.home,
            tz=self.cfg.gateway.tz, language=self.cfg.notify.language,
            room_name=room.name if room else None,
        )


class SmsNotifier:
    """Texts every recipient; succeeds when at least one message left the modem."""

    name = "sms"

    def __init__(self, cfg: Config, modem: Modem | None = None) -> None:
        sms = cfg.notify.sms
        assert sms.port is not None
        self.modem = modem or Modem(sms.port, baudrate=sms.baudrate, timeout_s=sms.timeout_s,
                                    pin=cfg.secrets.sms_pin)
        self.recipients = tuple(sms.recipients)
        # The escalation repeats until someone acts; a family's phone gets this many texts.
        self.max_attempts: int | None = sms.max_per_alert
        self._composer = _Composer(cfg)
        self.sent: list[tuple[str, str]] = []

    async def notify(self, alert: Alert, *, attempt: int) -> None:
        await self._send_all(self._composer.text(alert, attempt), f"alert {alert.id}")

    async def send_text(self, text: str) -> None:
        await self._send_all(text, "message")

    async def _send_all(self, text: str, what: str) -> None:
        failures: list[str] = []
        delivered = 0
        for number in self.recipients:
            try:
                ref = await asyncio.to_thread(self.modem.send, number, text)
            except AnxinError as exc:
                failures.append(f"{mask_number(number)}: {exc}")
                if isinstance(exc, DeviceUnavailableError):
                    break  # no modem: the other numbers would fail the same way
                continue
            delivered += 1
            self.sent.append((number, text))
            log.info("SMS for %s to %s (reference %d)", what, mask_number(number), ref)
        if not delivered:
            raise TransientError("; ".join(failures) or "no SMS recipients configured")
        for failure in failures:
            log.error("SMS for %s: %s", what, failure)


class AppriseNotifier:
    """Any service apprise speaks (WeCom and DingTalk robots, e-mail, ...), by URL.

    The URLs carry tokens, so they live in the secrets file (``notify_urls``).
    """

    name = "apprise"

    def __init__(self, cfg: Config, urls: Sequence[str]) -> None:
        try:
            import apprise  # optional: only gateways that use it install it
        except ImportError:
            raise DeviceUnavailableError(
                "notify_urls are set but apprise is not installed: "
                "pip install 'anxin-gateway[notify]'"
            ) from None
        self._apprise: Any = apprise.Apprise()
        for url in urls:
            if not self._apprise.add(url):
                raise DeviceUnavailableError(
                    f"apprise does not understand the notify URL {url.split('://')[0]}://…"
                )
        self._composer = _Composer(cfg)

    async def notify(self, alert: Alert, *, attempt: int) -> None:
        await self.send_text(self._composer.text(alert, attempt))

    async def send_text(self, text: str) -> None:
        ok = await self._apprise.async_notify(body=text, title=text.split("，", maxsplit=1)[0][:40])
        if not ok:
            raise TransientError("apprise: no service accepted the message (see log above)")


def build_notifiers(cfg: Config) -> list[Notifier]:
    """The log line, then SMS and apprise where configured. A broken one is logged, not fatal:
    the platform path must keep working while the installer fixes the modem."""
    out: list[Notifier] = [LoggingNotifier()]
    if cfg.notify.sms.port:
        out.append(SmsNotifier(cfg))
    if cfg.secrets.notify_urls:
        try:
            out.append(AppriseNotifier(cfg, cfg.secrets.notify_urls))
        except AnxinError as exc:
            log.error("apprise notifier not available: %s", exc)  # noqa: TRY400
    return out
