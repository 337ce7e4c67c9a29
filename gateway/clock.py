"""Wall clock, monotonic clock and whether the wall clock can be trusted.

A Pi has no battery-backed RTC: until NTP syncs, the wall clock may be years off. Every
reading and message therefore carries the monotonic time and the boot id too, so the
platform can correct timestamps taken before the sync.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

_BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
_STA_UNSYNC = 0x0040
_TIME_ERROR = 5


@lru_cache(maxsize=1)
def boot_id() -> str:
    """The kernel's boot id, or a random one per process where there is none."""
    try:
        return _BOOT_ID_PATH.read_text(encoding="ascii").strip()
    except OSError:
        return str(uuid.uuid4())


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h> (x86_64 and aarch64 glibc layout); only status is read.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_pad", ctypes.c_int * 11),
    ]


def kernel_clock_synced() -> bool:
    """True when the kernel says NTP has disciplined the clock (adjtimex, like timedatectl)."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return False
    return state != _TIME_ERROR and not tx.status & _STA_UNSYNC


@dataclass(frozen=True, slots=True)
class Stamp:
    """One instant as the gateway saw it."""

    wall: datetime
    monotonic_s: float
    boot_id: str
    synced: bool


class Clock:
    """Source of stamps. Tests and replays substitute their own."""

    def __init__(self, *, assume_synced: bool | None = None) -> None:
        self._assume = assume_synced
        self._synced_cache: tuple[float, bool] | None = None

    def synced(self) -> bool:
        if self._assume is not None:
            return self._assume
        now = time.monotonic()
        if self._synced_cache is None or now - self._synced_cache[0] > 30.0:
            self._synced_cache = (now, kernel_clock_synced())
        return self._synced_cache[1]

    def now(self) -> Stamp:
        return Stamp(datetime.now(UTC), time.monotonic(), boot_id(), self.synced())


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(ts: datetime) -> str:
    """RFC 3339 UTC with milliseconds and a Z, as the MQTT contract writes times."""
    if ts.tzinfo is None:
        raise ValueError("naive datetime: every time in the gateway is timezone-aware UTC")
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        raise ValueError(f"timestamp without offset: {text!r}")
    return ts.astimezone(UTC)
