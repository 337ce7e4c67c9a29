"""The detector interface the service drives.

A detector is fed every reading (``feed``) and woken periodically (``tick``) so that time
alone can raise an alert (inactivity, a bed not re-entered, a silent sensor). Both return
the alerts to raise; the service commits each one durably before anything else happens.
Detectors keep what they learn in the store (``Store.put_learned``) so a restart loses
nothing; ``restore`` is called once at start-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.clock import Stamp
from gateway.model import Alert, Reading


class Detector(Protocol):
    name: str

    def restore(self) -> None:
        """Load learned state from the store, if any."""

    def feed(self, reading: Reading) -> Sequence[Alert]:
        """Take one reading; return alerts to raise now."""

    def tick(self, now: Stamp) -> Sequence[Alert]:
        """Time has passed; return alerts to raise now."""
