"""Stand-in for MicroPython's ``machine``: Pin, ADC, UART, Timer, I2C (with an ADXL345).

Each :class:`~firmware_stubs.host.board.Board` gets its own module object from
:func:`make_module`, so pin levels, ADC voltages and timers belong to one board.
"""

from __future__ import annotations

import contextlib
import os
import struct
import types
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .board import Board


class BoardPin:
    """The outside world's end of a GPIO: what drives it, and who listens for edges."""

    def __init__(self, pin_id: int) -> None:
        self.id = pin_id
        self.driven: int | None = None  # None: nothing external drives the pin
        self.pull: int | None = None
        self.output: int = 0
        self.is_output = False
        self.handler: Callable[[Any], None] | None = None
        self.trigger = 0
        self.handle: Any = None

    @property
    def level(self) -> int:
        if self.is_output:
            return self.output
        if self.driven is not None:
            return self.driven
        return 1 if self.pull == Pin.PULL_UP else 0

    def drive(self, level: int) -> None:
        """Connect the pin to a level (a pressed button to ground: ``drive(0)``)."""
        before = self.level
        self.driven = 1 if level else 0
        self._edge(before)

    def release(self) -> None:
        before = self.level
        self.driven = None
        self._edge(before)

    def _edge(self, before: int) -> None:
        after = self.level
        if after == before or self.handler is None:
            return
        if (after and self.trigger & Pin.IRQ_RISING) or (not after and self.trigger & Pin.IRQ_FALLING):
            self.handler(self.handle)


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 2
    IRQ_RISING = 1
    _board: Board

    def __init__(self, pin_id: int, mode: int = -1, pull: int | None = -1, value: int | None = None) -> None:
        self.id = pin_id
        self._bp = self._board.machine.board_pin(pin_id)
        self._bp.handle = self
        self.init(mode, pull, value)

    def init(self, mode: int = -1, pull: int | None = -1, value: int | None = None) -> None:
        if mode != -1:
            self._bp.is_output = mode == Pin.OUT
        if pull != -1:
            self._bp.pull = pull
        if value is not None:
            self._bp.output = 1 if value else 0

    def value(self, v: int | None = None) -> int | None:
        if v is None:
            return self._bp.level
        self._bp.output = 1 if v else 0
        return None

    def __call__(self, v: int | None = None) -> int | None:
        return self.value(v)

    def on(self) -> None:
        self.value(1)

    def off(self) -> None:
        self.value(0)

    def irq(self, handler: Callable[[Any], None] | None = None, trigger: int = 3, **_: Any) -> None:
        self._bp.handler = handler
        self._bp.trigger = trigger


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    FULL_SCALE_UV = 2_500_000  # ESP32-C3 with 11 dB attenuation reads up to about 2.5 V
    _board: Board

    def __init__(self, pin: Pin | int, atten: int = ATTN_11DB) -> None:
        self.pin_id = pin.id if isinstance(pin, Pin) else int(pin)
        self.atten = atten

    def read_uv(self) -> int:
        return int(self._board.machine.adc_uv.get(self.pin_id, 0))

    def read_u16(self) -> int:
        return max(0, min(65535, self.read_uv() * 65535 // self.FULL_SCALE_UV))

    def atten_(self, atten: int) -> None:
        self.atten = atten


class UART:
    """Writes go to the file descriptor the test attached (a pty master, a pipe)."""

    _board: Board

    def __init__(self, uart_id: int, baudrate: int = 115200, **kwargs: Any) -> None:
        self.id = uart_id
        self.init(baudrate, **kwargs)

    def init(self, baudrate: int = 115200, **kwargs: Any) -> None:
        self.baudrate = baudrate
        self.options = kwargs

    def _fd(self) -> int:
        fd = self._board.machine.uart_fds.get(self.id)
        if fd is None:
            raise OSError(5, f"UART{self.id} is not connected on the host (Board.attach_uart)")
        return fd

    def write(self, data: bytes) -> int:
        view = memoryview(bytes(data))
        while view:
            n = os.write(self._fd(), view)
            view = view[n:]
        self._board.machine.uart_log.setdefault(self.id, bytearray()).extend(data)
        return len(data)

    def any(self) -> int:
        return len(self._peek())

    def read(self, n: int = -1) -> bytes | None:
        data = self._peek()
        if not data:
            return None
        return data if n < 0 else data[:n]

    def _peek(self) -> bytes:
        with contextlib.suppress(BlockingIOError, OSError):
            os.set_blocking(self._fd(), False)
            return os.read(self._fd(), 4096)
        return b""


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1
    _board: Board

    def __init__(self, timer_id: int = -1, **kwargs: Any) -> None:
        self.id = timer_id
        self.callback: Callable[[Timer], None] | None = None
        self.due_ms: int | None = None
        if kwargs:
            self.init(**kwargs)

    def init(self, *, mode: int = PERIODIC, period: int = 1000, freq: float | None = None,
             callback: Callable[[Timer], None] | None = None) -> None:
        self.mode = mode
        self.period = int(1000 / freq) if freq else int(period)
        self.callback = callback
        self.due_ms = self._board.now_ms + self.period
        self._board.machine.timers.add(self)

    def deinit(self) -> None:
        self.due_ms = None
        self._board.machine.timers.discard(self)

    def _fire(self) -> None:
        if self.mode == Timer.PERIODIC and self.due_ms is not None:
            self.due_ms += max(1, self.period)
        else:
            self.deinit()
        if self.callback is not None:
            self.callback(self)


class ADXL345:
    """Register model of an ADXL345 at 0x53: FIFO in stream mode, full resolution.

    ``source(i)`` gives sample ``i`` (counts, x/y/z); the FIFO fills at the configured
    output data rate while the part measures, holds 32 entries and drops the oldest when
    full, as the real part in stream mode.
    """

    ADDRESS = 0x53
    RATES_HZ: ClassVar[dict[int, float]] = {0x06: 6.25, 0x07: 12.5, 0x08: 25, 0x09: 50, 0x0A: 100, 0x0B: 200}

    def __init__(self, board: Board, source: Callable[[int], tuple[int, int, int]] | None = None) -> None:
        self.board = board
        self.regs = bytearray(64)
        self.regs[0x00] = 0xE5  # DEVID
        self.regs[0x2C] = 0x0A
        self.source = source or (lambda i: (0, 0, 256))
        self.fifo: deque[tuple[int, int, int]] = deque(maxlen=32)
        self.produced = 0
        self.overruns = 0
        self._origin_ms: int | None = None

    @property
    def measuring(self) -> bool:
        return bool(self.regs[0x2D] & 0x08)

    def _catch_up(self) -> None:
        if not self.measuring:
            self._origin_ms = None
            return
        now = self.board.now_ms
        if self._origin_ms is None:
            self._origin_ms = now
            self._origin_count = self.produced
        rate = self.RATES_HZ.get(self.regs[0x2C] & 0x0F, 100)
        due = self._origin_count + int((now - self._origin_ms) * rate / 1000)
        while self.produced < due:
            if len(self.fifo) == self.fifo.maxlen:
                self.overruns += 1
            self.fifo.append(self.source(self.produced))
            self.produced += 1

    def write(self, reg: int, data: bytes) -> None:
        self._catch_up()
        for i, b in enumerate(data):
            self.regs[reg + i] = b
        self._catch_up()

    def read(self, reg: int, n: int) -> bytes:
        self._catch_up()
        if reg == 0x39:  # FIFO_STATUS: entries in bits 0-5
            return bytes([min(len(self.fifo), 33)]) + bytes(n - 1)
        if reg == 0x32 and n == 6:
            x, y, z = self.fifo.popleft() if self.fifo else (0, 0, 0)
            return struct.pack("<hhh", x, y, z)
        return bytes(self.regs[reg:reg + n])


class I2C:
    _board: Board

    def __init__(self, bus_id: int = 0, **kwargs: Any) -> None:
        self.id = bus_id
        self.options = kwargs

    def _dev(self, addr: int) -> Any:
        dev = self._board.machine.i2c_devices.get(addr)
        if dev is None:
            raise OSError(19, "ENODEV")  # what MicroPython raises for a missing device
        return dev

    def scan(self) -> list[int]:
        return sorted(self._board.machine.i2c_devices)

    def readfrom_mem(self, addr: int, reg: int, n: int) -> bytes:
        return bytes(self._dev(addr).read(reg, n))

    def writeto_mem(self, addr: int, reg: int, data: bytes) -> None:
        self._dev(addr).write(reg, bytes(data))


def make_module(board: Board) -> types.ModuleType:
    """A ``machine`` module bound to ``board``."""
    m = types.ModuleType("machine")
    ns: dict[str, Any] = {"_board": board}
    for cls in (Pin, ADC, UART, Timer, I2C):
        setattr(m, cls.__name__, type(cls.__name__, (cls,), ns))
    pins: dict[int, BoardPin] = {}

    def board_pin(pin_id: int) -> BoardPin:
        return pins.setdefault(pin_id, BoardPin(pin_id))

    timers: set[Timer] = set()

    def next_timer(target: int) -> tuple[int, Callable[[], None]] | None:
        due = [t for t in timers if t.due_ms is not None and t.due_ms <= target]
        if not due:
            return None
        first = min(due, key=lambda t: (t.due_ms, id(t)))
        assert first.due_ms is not None
        return first.due_ms, first._fire

    m.board_pin = board_pin  # type: ignore[attr-defined]
    m.pins = pins  # type: ignore[attr-defined]
    m.adc_uv = {}  # type: ignore[attr-defined]
    m.uart_fds = {}  # type: ignore[attr-defined]
    m.uart_log = {}  # type: ignore[attr-defined]
    m.timers = timers  # type: ignore[attr-defined]
    m.next_timer = next_timer  # type: ignore[attr-defined]
    m.i2c_devices = {}  # type: ignore[attr-defined]
    m.unique_id = lambda: board.mac_bytes  # type: ignore[attr-defined]
    m.freq = lambda *a: 160_000_000  # type: ignore[attr-defined]
    m.lightsleep = lambda ms=0: board.sleep_ms(int(ms))  # type: ignore[attr-defined]
    m.reset = _reset  # type: ignore[attr-defined]
    return m


def _reset() -> None:
    raise SystemExit("machine.reset()")


Sample = tuple[int, int, int]


def samples(values: list[Sample], rest: Sample = (0, 0, 256)) -> Callable[[int], Sample]:
    """An ADXL345 source replaying ``values`` then holding ``rest``."""

    def source(i: int) -> tuple[int, int, int]:
        return values[i] if i < len(values) else rest

    return source

