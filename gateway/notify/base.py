"""The notifier interface and the logging notifier."""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from gateway.model import Alert

log = logging.getLogger(__name__)


@runtime_checkable
class Notifier(Protocol):
    """Something that can tell a person about an alert without the platform.

    ``notify`` returns when the message left the gateway (or raises
    :class:`gateway.errors.AnxinError`); ``attempt`` counts escalations of this alert from 1.
    A notifier with a ``max_attempts`` attribute (not None) is left out of later attempts.
    """

    name: str

    async def notify(self, alert: Alert, *, attempt: int) -> None: ...


class LoggingNotifier:
    """Writes the escalation to the log (and so to the journal); never fails."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or log
        self.sent: list[tuple[str, int]] = []

    async def notify(self, alert: Alert, *, attempt: int) -> None:
        self.sent.append((alert.id, attempt))
        self._log.warning(
            "ESCALATION %d: %s alert %s (%s) in room %s not handled since %s",
            attempt,
            alert.severity.value,
            alert.type.value,
            alert.id,
            alert.room or "-",
            alert.ts.isoformat(),
        )
