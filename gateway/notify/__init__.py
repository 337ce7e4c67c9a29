"""Local fallbacks when the platform does not handle a critical alert in time.

The notifiers themselves (SMS through a serial modem, apprise) live beside this module;
here is the interface the escalation calls and a notifier that only logs.
"""

from __future__ import annotations

from gateway.notify.base import LoggingNotifier, Notifier

__all__ = ["LoggingNotifier", "Notifier"]
