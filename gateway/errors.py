"""One error root for the whole gateway.

Callers decide on the branch: a :class:`TransientError` is retried with backoff, a
:class:`PermanentError` is reported and the operation given up. Timeouts also subclass
:class:`TimeoutError` so ``asyncio`` code can catch them the usual way.
"""

from __future__ import annotations


class AnxinError(Exception):
    """Root of every error the gateway raises on purpose."""


class TransientError(AnxinError):
    """Worth retrying: a broker that is down, a serial port unplugged, a busy adapter."""


class PermanentError(AnxinError):
    """Retrying will not help: bad config, a corrupt database, an unknown command."""


class OperationTimeout(TransientError, TimeoutError):
    """A bounded wait ran out."""


class ConfigError(PermanentError):
    """The configuration is wrong. Says which file, which line and which key, and why."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.key = key
        self.reason = message
        where = path or "<config>"
        if line is not None:
            where = f"{where}:{line}"
        prefix = f"{where}: " if path or line is not None else ""
        keypart = f"{key}: " if key else ""
        super().__init__(f"{prefix}{keypart}{message}")


class SecretsPermissionError(ConfigError):
    """The secrets file is readable by others than its owner."""


class FrameError(PermanentError):
    """A frame from a sensor could not be decoded. Carries the raw bytes and the reason."""

    def __init__(self, reason: str, raw: bytes = b"", *, protocol: str = "") -> None:
        self.reason = reason
        self.raw = bytes(raw)
        self.protocol = protocol
        label = f"{protocol}: " if protocol else ""
        super().__init__(f"{label}{reason} (raw={self.raw.hex()})")


class StoreError(PermanentError):
    """The store is unusable (corrupt, wrong schema, unwritable)."""


class StorageFullError(TransientError):
    """The disk or the database budget is full; alerts still commit from the reserve."""


class DeviceUnavailableError(TransientError):
    """A serial port, BLE adapter or other device is missing or stopped answering."""


class UplinkError(TransientError):
    """The MQTT broker cannot be reached or refused us."""


class CommandError(PermanentError):
    """A command from the platform is malformed or unknown."""
