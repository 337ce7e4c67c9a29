"""SMS through a cellular modem's AT port: the escalation path that needs no internet.

Written for the 4G modules sold for such gateways (Quectel EC200/EC25 on a USB dongle or
a Pi HAT; their AT port is usually /dev/ttyUSB2) and any modem that implements the
3GPP TS 27.005 text mode. Messages go out in UCS2 so Chinese text arrives intact: one
SMS holds 70 characters, and ``compose`` keeps messages within that.

The port is opened for each message and closed after: a modem that was unplugged or
re-enumerated is found again on the next escalation, and nothing holds the port while
the installer talks to the modem with ``anxin notify test``.

pyserial is used directly (blocking, in a worker thread): a send is a short, strictly
sequential dialogue, and the escalation loop awaits it, so an asyncio transport would
buy nothing.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from gateway.errors import DeviceUnavailableError, OperationTimeout, TransientError

log = logging.getLogger(__name__)

CTRL_Z = b"\x1a"
ESC = b"\x1b"
SMS_UCS2_CHARS = 70

# Final result codes of an AT command (3GPP TS 27.007 / 27.005).
_FINAL_ERROR = re.compile(rb"^(ERROR|\+CME ERROR: ?(.*)|\+CMS ERROR: ?(.*))$")


class ModemError(TransientError):
    """The modem answered a command with an error (``code`` as it said it)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def ucs2_hex(text: str) -> str:
    """Text as the modem wants it with AT+CSCS="UCS2": UTF-16BE, upper-case hex."""
    return text.encode("utf-16-be").hex().upper()


def from_ucs2_hex(data: str) -> str:
    return bytes.fromhex(data).decode("utf-16-be")


def fit_sms(text: str, limit: int = SMS_UCS2_CHARS) -> str:
    """Cut ``text`` to one UCS2 SMS, marking the cut; characters outside the BMP count twice."""
    if len(text.encode("utf-16-be")) <= 2 * limit:
        return text
    out = ""
    for ch in text:
        if len((out + ch).encode("utf-16-be")) > 2 * (limit - 1):
            break
        out += ch
    return out + "…"


@dataclass(frozen=True, slots=True)
class ModemStatus:
    """What the installer needs to know about the modem and its SIM."""

    sim: str  # READY, SIM PIN, ...
    registration: str  # home, roaming, searching, denied, not registered, unknown
    signal: int | None  # CSQ rssi 0..31, None when unknown (99)
    operator: str

    def line(self) -> str:
        sig = f"{self.signal}/31" if self.signal is not None else "unknown"
        return (f"SIM {self.sim}; network {self.registration}"
                f"{' (' + self.operator + ')' if self.operator else ''}; signal {sig}")

    @property
    def can_send(self) -> bool:
        return self.sim == "READY" and self.registration in ("home", "roaming")


_CREG = {"0": "not registered", "1": "home", "2": "searching", "3": "denied", "4": "unknown",
         "5": "roaming"}

Opener = Callable[..., Any]
_PORT_LOCKS: dict[str, threading.Lock] = {}


def _default_opener(port: str, baudrate: int, timeout: float) -> Any:
    import serial  # only needed when a modem is configured

    # Short reads keep the dialogue responsive; its own deadlines bound the waits.
    return serial.serial_for_url(port, baudrate=baudrate, timeout=min(0.2, timeout),
                                 write_timeout=timeout)


class Modem:
    """One AT dialogue at a time with a modem on a serial port."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 115200,
        timeout_s: float = 60.0,
        command_timeout_s: float = 5.0,
        pin: str | None = None,
        opener: Opener | None = None,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self.command_timeout_s = command_timeout_s
        self.pin = pin
        self._opener = opener or _default_opener
        # One dialogue per port in this process, whichever Modem object asks (escalation
        # and the daily summary each have one).
        self._lock = _PORT_LOCKS.setdefault(port, threading.Lock())
        self._ser: Any = None
        self._buf = b""

    # ------------------------------------------------------------------ public, blocking

    def send(self, number: str, text: str) -> int:
        """Send one SMS; return the network's message reference. Blocking."""
        with self._lock, self._session():
            self._prepare()
            self._command(f'AT+CMGS="{ucs2_hex(number)}"', prompt=True)
            self._write(ucs2_hex(fit_sms(text)).encode("ascii") + CTRL_Z)
            # The network's answer may take tens of seconds on a weak signal.
            lines = self._final(self.timeout_s, f"sending to {mask_number(number)}")
            for line in lines:
                m = re.match(rb"^\+CMGS: ?(\d+)", line)
                if m:
                    return int(m[1])
            return -1

    def status(self) -> ModemStatus:
        """Ask the modem about SIM, registration, signal and operator. Blocking."""
        with self._lock, self._session():
            self._command("ATE0")
            sim = self._query("AT+CPIN?", "+CPIN:") or "unknown"
            reg = self._query("AT+CREG?", "+CREG:")
            registration = _CREG.get(reg.split(",")[-1].strip(), "unknown") if reg else "unknown"
            csq = self._query("AT+CSQ", "+CSQ:")
            signal: int | None = None
            if csq:
                rssi = int(csq.split(",")[0])
                signal = None if rssi == 99 else rssi
            cops = self._query("AT+COPS?", "+COPS:", required=False)
            operator = ""
            m = re.search(r'"([^"]*)"', cops or "")
            if m:
                operator = m[1]
            return ModemStatus(sim=sim, registration=registration, signal=signal, operator=operator)

    # ------------------------------------------------------------------ the dialogue

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        self._open()
        try:
            yield
        finally:
            self._close()

    def _open(self) -> None:
        try:
            self._ser = self._opener(self.port, self.baudrate, self.command_timeout_s)
        except Exception as exc:  # noqa: BLE001 - pyserial raises SerialException or OSError
            raise DeviceUnavailableError(f"SMS modem {self.port}: cannot open: {exc}") from None
        self._buf = b""
        with contextlib.suppress(Exception):  # not every port type has a buffer to reset
            self._ser.reset_input_buffer()

    def _close(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception as exc:  # noqa: BLE001 - closing a vanished port may fail; go on
                log.debug("closing %s: %s", self.port, exc)

    def _prepare(self) -> None:
        # A half-sent message from an earlier, interrupted dialogue waits for its text:
        # ESC abandons it so the commands below are read as commands.
        self._write(ESC)
        time.sleep(0.05)
        self._drain()
        self._command("ATE0")  # no echo: answers are easier to read and never mistaken
        with contextlib.suppress(ModemError):  # numeric error codes: nice to have, not needed
            self._command("AT+CMEE=1")
        try:
            sim = self._query("AT+CPIN?", "+CPIN:")
        except ModemError as exc:  # CME ERROR 10 (not inserted), 13 (failure), 14 (busy)
            raise ModemError(f"SMS modem {self.port}: SIM not ready ({exc.code and 'CME ERROR: ' + exc.code}); "
                             "is a SIM card inserted?", exc.code) from None
        if sim == "SIM PIN":
            if not self.pin:
                raise ModemError(f"SMS modem {self.port}: the SIM wants a PIN; put sms_pin in "
                                 "the secrets file", "SIM PIN")
            self._command(f'AT+CPIN="{self.pin}"')
        elif sim != "READY":
            raise ModemError(f"SMS modem {self.port}: SIM not ready ({sim or 'no answer'}); "
                             "is a SIM card inserted?", sim)
        self._command("AT+CMGF=1")  # text mode
        self._command('AT+CSCS="UCS2"')
        self._command("AT+CSMP=17,167,0,8")  # data coding scheme 8: UCS2

    def _write(self, data: bytes) -> None:
        try:
            self._ser.write(data)
            self._ser.flush()
        except Exception as exc:  # noqa: BLE001 - a modem pulled mid-dialogue
            raise DeviceUnavailableError(f"SMS modem {self.port}: write failed: {exc}") from None

    def _read_some(self) -> bytes:
        try:
            data: bytes = self._ser.read(max(1, int(self._ser.in_waiting or 0)))
        except Exception as exc:  # noqa: BLE001 - a modem pulled mid-dialogue
            raise DeviceUnavailableError(f"SMS modem {self.port}: read failed: {exc}") from None
        return data

    def _drain(self) -> None:
        self._buf = b""
        try:
            while self._ser.in_waiting:
                self._ser.read(self._ser.in_waiting)
        except Exception as exc:  # noqa: BLE001 - a modem pulled mid-dialogue
            raise DeviceUnavailableError(f"SMS modem {self.port}: read failed: {exc}") from None

    def _command(self, cmd: str, *, prompt: bool = False) -> list[bytes]:
        self._buf = b""
        self._write(cmd.encode("ascii") + b"\r")
        if prompt:
            self._await_prompt(cmd)
            return []
        return self._final(self.command_timeout_s, cmd.split("=", maxsplit=1)[0])

    def _query(self, cmd: str, prefix: str, *, required: bool = True) -> str:
        try:
            lines = self._command(cmd)
        except ModemError:
            if required:
                raise
            return ""
        for line in lines:
            text = line.decode("ascii", "replace")
            if text.startswith(prefix):
                return text[len(prefix):].strip()
        return ""

    def _await_prompt(self, what: str) -> None:
        deadline = time.monotonic() + self.command_timeout_s
        while time.monotonic() < deadline:
            if b">" in self._buf:
                self._buf = b""
                return
            for line in self._lines(consume=False):  # the prompt has no newline
                m = _FINAL_ERROR.match(line)
                if m:
                    raise self._error(line, what)
            self._buf += self._read_some()
        raise OperationTimeout(f"SMS modem {self.port}: no prompt after {what.split('=', maxsplit=1)[0]}")

    def _final(self, timeout_s: float, what: str) -> list[bytes]:
        """Lines up to the final result code; raise on an error code or silence."""
        deadline = time.monotonic() + timeout_s
        lines: list[bytes] = []
        while True:
            for line in self._lines():
                if line == b"OK":
                    return lines
                if _FINAL_ERROR.match(line):
                    raise self._error(line, what)
                lines.append(line)
            if time.monotonic() >= deadline:
                raise OperationTimeout(f"SMS modem {self.port}: no answer to {what} "
                                       f"in {timeout_s:g} s")
            self._buf += self._read_some()

    def _lines(self, *, consume: bool = True) -> list[bytes]:
        """The complete lines in the buffer; ``consume`` leaves only the partial rest there."""
        *complete, rest = self._buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        if consume:
            self._buf = rest
        return [ln.strip() for ln in complete if ln.strip()]

    def _error(self, line: bytes, what: str) -> ModemError:
        text = line.decode("ascii", "replace")
        code = text.split(":", 1)[1].strip() if ":" in text else ""
        return ModemError(f"SMS modem {self.port}: {what} failed: {text}", code)


def mask_number(number: str) -> str:
    """A phone number for the log: enough to tell recipients apart, not to dial them."""
    return number[:-4].rstrip() + "****" if len(number) > 6 else "****"

