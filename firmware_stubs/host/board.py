"""One emulated board: virtual time, pins, ADC, UART, I2C, BLE and a flash directory.

The firmware files import ``machine``, ``bluetooth``, ``time``, ``os``, ``cryptolib`` and
``micropython`` as on a board. :meth:`Board.load` executes them in fresh module objects
whose ``__import__`` hands out this board's stand-ins (and firmware modules from the flash
directory, the device folder and ``firmware_stubs/lib``), so nothing in ``sys.modules`` is
replaced and several boards can run side by side in one test process.

Time is virtual: ``time.sleep_ms`` advances the board's clock at once (firing timers and
scheduled stimuli on the way), so a minute of firmware runs in milliseconds and a test's
result never depends on the machine's speed.
"""

from __future__ import annotations

import builtins
import heapq
import itertools
import os
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import cryptolib as _cryptolib
from . import micropython as _micropython
from .bluetooth import HostAdvert, Notification
from .bluetooth import make_module as _make_bluetooth
from .machine import ADXL345
from .machine import make_module as _make_machine

FIRMWARE_ROOT = Path(__file__).resolve().parent.parent
LIB = FIRMWARE_ROOT / "lib"
TICKS_PERIOD = 1 << 30  # MicroPython's ticks wrap here on most ports


class PowerOff(BaseException):
    """Raised out of ``time.sleep_ms`` when the board's run time is over (``run_main``)."""


class Board:
    """The emulated hardware of one device.

    ``flash`` is a directory standing for the board's filesystem: it survives an emulated
    reboot (a new :class:`Board` on the same directory, or :meth:`reboot`).
    """

    def __init__(
        self,
        flash: Path | str,
        *,
        mac: str = "A4:C1:38:00:00:01",
        start_ms: int = 0,
        epoch_s: int = 1_795_000_000,
    ) -> None:
        self.flash = Path(flash)
        self.flash.mkdir(parents=True, exist_ok=True)
        self.mac = mac.upper()
        self.now_ms = start_ms
        self.epoch_s = epoch_s
        self.deadline_ms: int | None = None
        self._events: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self.machine = _make_machine(self)
        self.bluetooth = _make_bluetooth(self)
        self.time = _make_time(self)
        self.os = _make_os(self)
        self.modules: dict[str, types.ModuleType] = {}
        self._device_dir: Path | None = None
        self.adverts: list[HostAdvert] = []
        self.notifications: list[Notification] = []
        self.on_advert: list[Callable[[HostAdvert], None]] = []
        self.on_notify: list[Callable[[Notification], None]] = []

    # ------------------------------------------------------------------ stimuli

    @property
    def mac_bytes(self) -> bytes:
        return bytes.fromhex(self.mac.replace(":", ""))

    def pin(self, pin_id: int) -> Any:
        """The board side of a GPIO: ``drive(level)``, ``release()``, ``level``."""
        return self.machine.board_pin(pin_id)

    def set_adc_uv(self, pin_id: int, microvolts: int) -> None:
        self.machine.adc_uv[pin_id] = int(microvolts)

    def at(self, when_ms: int, action: Callable[[], None]) -> None:
        """Run ``action`` when virtual time reaches ``when_ms`` (absolute)."""
        heapq.heappush(self._events, (when_ms, next(self._seq), action))

    def after(self, delay_ms: int, action: Callable[[], None]) -> None:
        self.at(self.now_ms + delay_ms, action)

    def attach_uart(self, uart_id: int, fd: int) -> None:
        """Bytes the firmware writes to UART ``uart_id`` go to ``fd`` (a pty master, a pipe)."""
        self.machine.uart_fds[uart_id] = fd

    def add_i2c(self, address: int, device: Any) -> None:
        self.machine.i2c_devices[address] = device

    def add_adxl345(self, source: Callable[[int], tuple[int, int, int]] | None = None) -> Any:
        dev = ADXL345(self, source)
        self.add_i2c(ADXL345.ADDRESS, dev)
        return dev

    # ------------------------------------------------------------------ radio

    def _ble(self) -> Any:
        return self.bluetooth.BLE()

    def ble_connect(self, mtu: int = 23) -> int:
        """A central connects (and, if ``mtu`` > 23, exchanges the MTU). Returns the handle."""
        return int(self._ble()._central_connect(mtu))

    def ble_disconnect(self) -> None:
        self._ble()._central_disconnect()

    def emit_advert(self, advert: HostAdvert) -> None:
        self.adverts.append(advert)
        for cb in self.on_advert:
            cb(advert)

    def emit_notification(self, note: Notification) -> None:
        self.notifications.append(note)
        for cb in self.on_notify:
            cb(note)

    # ------------------------------------------------------------------ time

    def advance(self, ms: int) -> None:
        """Let ``ms`` of virtual time pass, firing what falls due on the way, in order."""
        target = self.now_ms + max(0, int(ms))
        while True:
            due = self._next_due(target)
            if due is None:
                break
            self.now_ms = max(self.now_ms, due[0])
            due[1]()
        self.now_ms = target

    def _next_due(self, target: int) -> tuple[int, Callable[[], None]] | None:
        timer = self.machine.next_timer(target)
        event = self._events[0] if self._events and self._events[0][0] <= target else None
        if timer is None and event is None:
            return None
        if event is not None and (timer is None or event[0] <= timer[0]):
            heapq.heappop(self._events)
            return event[0], event[2]
        assert timer is not None
        return timer

    def sleep_ms(self, ms: int) -> None:
        if self.deadline_ms is not None and self.now_ms + ms > self.deadline_ms:
            self.advance(max(0, self.deadline_ms - self.now_ms))
            raise PowerOff
        self.advance(ms)

    # ------------------------------------------------------------------ running firmware

    def load(self, device: str, name: str = "main") -> types.ModuleType:
        """Execute ``firmware_stubs/<device>/<name>.py`` for this board; return the module."""
        self._device_dir = FIRMWARE_ROOT / device
        return self._import(name)

    def run(self, app: Any, ms: int) -> None:
        """Call ``app.step()`` (one turn of the firmware's main loop) for ``ms`` of time."""
        end = self.now_ms + ms
        while self.now_ms < end:
            before = self.now_ms
            app.step()
            if self.now_ms == before:
                raise RuntimeError("app.step() did not sleep: the firmware would busy-loop")

    def run_main(self, module: types.ModuleType, ms: int) -> None:
        """Run the firmware's own ``main()`` for ``ms``, then cut the power."""
        self.deadline_ms = self.now_ms + ms
        try:
            module.main()
        except PowerOff:
            pass
        finally:
            self.deadline_ms = None

    def reboot(self) -> Board:
        """A new board on the same flash (and MAC), as after a power cycle."""
        return Board(self.flash, mac=self.mac, start_ms=0, epoch_s=self.epoch_s)

    # ------------------------------------------------------------------ imports

    def _import(self, name: str) -> types.ModuleType:
        if name in self.modules:
            return self.modules[name]
        for folder in (self.flash, self._device_dir, LIB):
            if folder is None:
                continue
            path = folder / f"{name}.py"
            if path.is_file():
                return self._exec(name, path)
        raise ImportError(f"no module named {name!r} on the board")

    def _exec(self, name: str, path: Path) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__file__ = str(path)
        env = dict(vars(builtins))
        env["__import__"] = self._builtin_import
        env["open"] = self._open
        module.__dict__["__builtins__"] = env
        self.modules[name] = module
        try:
            code = compile(path.read_text(), str(path), "exec")
            exec(code, module.__dict__)
        except BaseException:
            del self.modules[name]
            raise
        return module

    def _builtin_import(
        self, name: str, globals_: Any = None, locals_: Any = None, fromlist: Any = (), level: int = 0
    ) -> types.ModuleType:
        shims = {
            "machine": self.machine,
            "bluetooth": self.bluetooth,
            "time": self.time,
            "utime": self.time,
            "os": self.os,
            "uos": self.os,
            "cryptolib": _cryptolib,
            "micropython": _micropython,
        }
        if name in shims:
            return shims[name]
        try:
            return self._import(name)
        except ImportError:
            if name in ("struct", "binascii", "gc", "sys", "math", "errno"):
                return __import__(name, globals_, locals_, fromlist or (), level)
            raise

    def _open(self, path: str, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        return open(self.flash_path(path), mode, *args, **kwargs)

    def flash_path(self, path: str) -> Path:
        p = Path(self.flash, str(path).lstrip("/"))
        if self.flash.resolve() not in (p.resolve(), *p.resolve().parents):
            raise OSError(2, "outside the flash", str(path))
        return p


def _make_time(board: Board) -> types.ModuleType:
    t = types.ModuleType("time")

    def ticks_ms() -> int:
        return board.now_ms % TICKS_PERIOD

    def ticks_us() -> int:
        return (board.now_ms * 1000) % TICKS_PERIOD

    def ticks_add(ticks: int, delta: int) -> int:
        return (ticks + delta) % TICKS_PERIOD

    def ticks_diff(a: int, b: int) -> int:
        half = TICKS_PERIOD // 2
        return ((a - b + half) % TICKS_PERIOD) - half

    def sleep_ms(ms: int) -> None:
        board.sleep_ms(int(ms))

    t.ticks_ms = ticks_ms  # type: ignore[attr-defined]
    t.ticks_us = ticks_us  # type: ignore[attr-defined]
    t.ticks_add = ticks_add  # type: ignore[attr-defined]
    t.ticks_diff = ticks_diff  # type: ignore[attr-defined]
    t.sleep_ms = sleep_ms  # type: ignore[attr-defined]
    t.sleep_us = lambda us: board.sleep_ms(max(1, int(us) // 1000))  # type: ignore[attr-defined]
    t.sleep = lambda s: board.sleep_ms(int(s * 1000))  # type: ignore[attr-defined]
    t.time = lambda: board.epoch_s + board.now_ms // 1000  # type: ignore[attr-defined]
    return t


def _make_os(board: Board) -> types.ModuleType:
    m = types.ModuleType("os")
    m.remove = lambda p: os.remove(board.flash_path(p))  # type: ignore[attr-defined]
    m.rename = lambda a, b: os.replace(board.flash_path(a), board.flash_path(b))  # type: ignore[attr-defined]
    m.listdir = lambda p="": sorted(os.listdir(board.flash_path(p or ".")))  # type: ignore[attr-defined]
    m.stat = lambda p: os.stat(board.flash_path(p))  # type: ignore[attr-defined]
    m.sync = lambda: None  # type: ignore[attr-defined]
    return m
