"""The detector interface the service drives.

A detector is fed every reading (``feed``) and woken periodically (``tick``) so that time
alone can raise an alert (inactivity, a bed not re-entered, a silent sensor). Both return
the alerts to raise; the service commits each one durably before anything else happens.
Detectors keep what they learn in the store (``Store.put_learned``) so a restart loses
nothing; ``restore`` is called once at start-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from gateway.clock import Stamp
from gateway.model import Alert, Reading

if TYPE_CHECKING:
    from gateway.store import Store


class Detector(Protocol):
    name: str

    def restore(self) -> None:
        """Load learned state from the store, if any."""

    def feed(self, reading: Reading) -> Sequence[Alert]:
        """Take one reading; return alerts to raise now."""

    def tick(self, now: Stamp) -> Sequence[Alert]:
        """Time has passed; return alerts to raise now."""


class OpenEpisodes:
    """Episodes already alerted (a smoke alarm that is still on, a radar fall not yet
    cleared), kept in the store under ``key``: a restart neither raises them again nor
    forgets to re-arm them."""

    def __init__(self, store: Store | None, key: str) -> None:
        self.store = store
        self.key = key
        self._open: set[str] = set()

    def restore(self) -> None:
        if self.store is None:
            return
        saved = self.store.learned(self.key)
        if isinstance(saved, dict):
            self._open = {str(x) for x in saved.get("open", [])}

    def __contains__(self, episode: object) -> bool:
        return episode in self._open

    def open(self, episode: str) -> bool:
        """Mark ``episode`` open; False when it already was (no new alert)."""
        if episode in self._open:
            return False
        self._open.add(episode)
        self._save()
        return True

    def close(self, episode: str) -> bool:
        """Mark ``episode`` over; False when it was not open."""
        if episode not in self._open:
            return False
        self._open.discard(episode)
        self._save()
        return True

    def _save(self) -> None:
        if self.store is not None:
            self.store.put_learned(self.key, {"open": sorted(self._open)})
