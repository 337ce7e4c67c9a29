"""What every driver is: an async context manager that yields typed readings.

The core never sees bytes. A driver that meets a bad frame counts it, logs it with the raw
bytes, and goes on (:class:`gateway.errors.FrameError` never leaves ``readings()``).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from gateway.errors import FrameError
from gateway.model import Reading

log = logging.getLogger(__name__)


@dataclass(slots=True)
class DriverStats:
    frames_ok: int = 0
    frames_rejected: int = 0
    reconnects: int = 0
    last_error: str = ""
    rejects_by_reason: dict[str, int] = field(default_factory=dict)

    def reject(self, err: FrameError, source: str) -> None:
        self.frames_rejected += 1
        self.rejects_by_reason[err.reason] = self.rejects_by_reason.get(err.reason, 0) + 1
        log.warning("%s: rejected frame: %s raw=%s", source, err.reason, err.raw.hex())


class Driver(abc.ABC):
    """Base class for drivers. Subclasses implement ``readings`` and may override open/close."""

    name: str = "driver"

    def __init__(self) -> None:
        self.stats = DriverStats()

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire the device. Raise DeviceUnavailableError when it is not there."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device. Must not raise."""

    @abc.abstractmethod
    def readings(self) -> AsyncIterator[Reading]:
        """Readings as they arrive, forever (or until the source ends, for a replay)."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
