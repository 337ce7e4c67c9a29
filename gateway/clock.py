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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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

    def real_s(self, clock_s: float) -> float:
        """How many real seconds ``clock_s`` seconds of this clock take (the same, here)."""
        return clock_s


# --------------------------------------------------------------------------- rig clock

RIG_CLOCK_START = "ANXIN_RIG_CLOCK_START"
RIG_CLOCK_SPEED = "ANXIN_RIG_CLOCK_SPEED"
RIG_CLOCK_ANCHOR = "ANXIN_RIG_CLOCK_ANCHOR"
RIG_CLOCK_VARS = (RIG_CLOCK_START, RIG_CLOCK_SPEED, RIG_CLOCK_ANCHOR)
RIG_CLOCK_MAX_SPEED = 3600.0


class ScaledClock(Clock):
    """A test-rig clock: the wall starts at ``start`` and runs ``speed`` times faster.

    For hardware-in-the-loop rigs only (``anxin hil run`` with a scenario ``clock:``): it
    lets a scenario live through "02:10, out of bed and not back by 02:40" in seconds.
    ``anchor_epoch_s`` is the real Unix time at which the wall reads ``start``; a gateway
    killed and restarted with the same three values goes on in the same scenario time.

    Everything time-based in the gateway follows it: reading and alert stamps, detector
    ticks, supervision silence (the monotonic time is scaled from the anchor as well), the
    store's own timestamps (:func:`utc_now`, once :func:`install` ed), escalation. The boot id
    is a distinct ``rig-`` id, so nobody mixes its monotonic times with the kernel's; the
    clock never claims to be NTP-synced. Transport timing (MQTT keepalive, reconnect
    backoff, BLE watchdogs, serial timeouts) stays real.
    """

    def __init__(self, start: datetime, speed: float, anchor_epoch_s: float) -> None:
        if start.tzinfo is None:
            raise ValueError("the rig clock's start needs a UTC offset")
        if not 0 < speed <= RIG_CLOCK_MAX_SPEED:
            raise ValueError(f"rig clock speed must be in (0, {RIG_CLOCK_MAX_SPEED:g}], got {speed!r}")
        super().__init__(assume_synced=False)
        self.start = start.astimezone(UTC)
        self.speed = float(speed)
        self.anchor_epoch_s = float(anchor_epoch_s)
        # The kernel's monotonic time at the anchor: scaled monotonic equals it there.
        self._anchor_mono = time.monotonic() - (time.time() - self.anchor_epoch_s)
        key = f"{boot_id()}|{self.start.isoformat()}|{self.speed!r}|{self.anchor_epoch_s!r}"
        self.boot_id = f"rig-{uuid.uuid5(uuid.NAMESPACE_URL, key)}"

    def elapsed_s(self) -> float:
        """Seconds of rig time since the anchor (negative before it)."""
        return (time.time() - self.anchor_epoch_s) * self.speed

    def now(self) -> Stamp:
        real_mono = time.monotonic()
        wall = self.start + timedelta(seconds=(time.time() - self.anchor_epoch_s) * self.speed)
        mono = self._anchor_mono + (real_mono - self._anchor_mono) * self.speed
        return Stamp(wall, mono, self.boot_id, False)

    def real_s(self, clock_s: float) -> float:
        return clock_s / self.speed

    def describe(self) -> str:
        return f"rig clock from {self.start.isoformat()} at {self.speed:g}x (anchor {self.anchor_epoch_s:.3f})"


def rig_clock_from_env(environ: Mapping[str, str]) -> ScaledClock | None:
    """The rig clock the environment asks for (``ANXIN_RIG_CLOCK_*``), or None.

    Refused (``ValueError``) under systemd (``NOTIFY_SOCKET`` set: the production unit is
    ``Type=notify``), so that a stray variable can never put a real home on a test clock.
    """
    if not any(environ.get(v) for v in RIG_CLOCK_VARS):
        return None
    if environ.get("NOTIFY_SOCKET"):
        raise ValueError(f"{', '.join(RIG_CLOCK_VARS)} are for test rigs; refusing them under systemd")
    start_text = environ.get(RIG_CLOCK_START, "")
    try:
        start = datetime.fromisoformat(start_text)
    except ValueError:
        raise ValueError(f"{RIG_CLOCK_START}: expected an ISO 8601 time with offset, got {start_text!r}") from None
    if start.tzinfo is None:
        raise ValueError(f"{RIG_CLOCK_START}: {start_text!r} has no UTC offset")
    try:
        speed = float(environ.get(RIG_CLOCK_SPEED) or "1")
        anchor = float(environ.get(RIG_CLOCK_ANCHOR) or time.time())
    except ValueError:
        raise ValueError(f"{RIG_CLOCK_SPEED} and {RIG_CLOCK_ANCHOR} are numbers") from None
    return ScaledClock(start, speed, anchor)


_process_clock: Clock | None = None


def install(clock: Clock | None) -> None:
    """Make ``clock`` the process's clock for :func:`utc_now` (the store's own stamps).

    ``anxin run`` installs the rig clock; None goes back to the system clock.
    """
    global _process_clock  # noqa: PLW0603 - one process-wide clock, set once at start-up
    _process_clock = clock


def utc_now() -> datetime:
    if _process_clock is not None:
        return _process_clock.now().wall
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
