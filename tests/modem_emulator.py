"""A cellular modem's AT port on a real pseudo-terminal, for the SMS notifier's tests.

It answers the commands the notifier sends the way a Quectel EC200/EC25 does (3GPP
TS 27.005 text mode, UCS2 character set), keeps what was "sent", and can be told to
misbehave: a SIM that wants a PIN, no SIM, a network that refuses the message, or
silence after the text.
"""

from __future__ import annotations

import os
import re
import select
import threading
from dataclasses import dataclass, field
from pathlib import Path

from serial_emulator import PtyDevice


@dataclass
class ModemState:
    sim: str = "READY"  # READY, SIM PIN, or "" for no SIM (answers +CME ERROR: 10)
    pin: str = "1234"
    creg: int = 1
    csq: int = 21
    operator: str = "CHINA MOBILE"
    cms_error: int | None = None  # answer the next CMGS with +CMS ERROR: n
    silent_after_text: bool = False
    cmee: bool = True  # False: an old modem that answers AT+CMEE with ERROR
    sent: list[tuple[str, str]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


class EmulatedModem:
    def __init__(self, link: Path) -> None:
        self.dev = PtyDevice(link)
        self.state = ModemState()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.charset = "IRA"
        self.text_mode = False
        self.echo = True
        self._ref = 0

    def start(self) -> EmulatedModem:
        self.dev.plug()
        self._thread = threading.Thread(target=self._run, name="modem-emulator", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        self.dev.close()

    # ------------------------------------------------------------------ the modem

    def _say(self, *lines: str) -> None:
        self.dev.write(b"".join(b"\r\n" + ln.encode() + b"\r\n" for ln in lines))

    def _run(self) -> None:
        buf = b""
        pending_number: str | None = None
        while not self._stop.is_set():
            master = self.dev.master
            if master is None:
                return
            try:
                ready, _, _ = select.select([master], [], [], 0.05)
            except (OSError, ValueError):  # unplugged under our feet
                self._stop.wait(0.05)
                continue
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:
                # Nobody has the port open (EIO) or it was unplugged: wait a little.
                self._stop.wait(0.05)
                continue
            buf += chunk
            if pending_number is not None:
                if b"\x1b" in buf:  # text abandoned
                    buf = buf.split(b"\x1b", 1)[1]
                    pending_number = None
                    self._say("OK")
                    continue
                if b"\x1a" not in buf:
                    continue
                body, buf = buf.split(b"\x1a", 1)
                self._message(pending_number, body.decode("ascii").strip())
                pending_number = None
                continue
            buf = buf.replace(b"\x1b", b"")
            while b"\r" in buf:
                line, buf = buf.split(b"\r", 1)
                cmd = line.decode("ascii", "replace").strip()
                if not cmd:
                    continue
                if self.echo:
                    self.dev.write(line + b"\r")
                self.state.commands.append(cmd)
                m = re.fullmatch(r'AT\+CMGS="([0-9A-Fa-f+]*)"', cmd)
                if m:
                    if not self.text_mode:
                        self._say("+CMS ERROR: 302")
                        continue
                    pending_number = self._decode(m[1])
                    self.dev.write(b"\r\n> ")
                    continue
                self._answer(cmd)

    def _decode(self, value: str) -> str:
        return bytes.fromhex(value).decode("utf-16-be") if self.charset == "UCS2" else value

    def _message(self, number: str, body: str) -> None:
        if self.state.silent_after_text:
            return
        if self.state.cms_error is not None:
            code, self.state.cms_error = self.state.cms_error, None
            self._say(f"+CMS ERROR: {code}")
            return
        self.state.sent.append((number, self._decode(body)))
        self._ref += 1
        self._say(f"+CMGS: {self._ref}", "OK")

    def _answer(self, cmd: str) -> None:
        s = self.state
        if cmd == "AT":
            self._say("OK")
        elif cmd == "ATE0":
            self.echo = False
            self._say("OK")
        elif cmd == "AT+CMEE=1":
            self._say("OK" if s.cmee else "ERROR")
        elif cmd == "AT+CPIN?":
            if not s.sim:
                self._say("+CME ERROR: 10")
            else:
                self._say(f"+CPIN: {s.sim}", "OK")
        elif cmd.startswith("AT+CPIN="):
            if cmd == f'AT+CPIN="{s.pin}"':
                s.sim = "READY"
                self._say("OK")
            else:
                self._say("+CME ERROR: 16")
        elif cmd == "AT+CMGF=1":
            self.text_mode = True
            self._say("OK")
        elif cmd.startswith("AT+CSCS="):
            self.charset = cmd.split('"')[1]
            self._say("OK")
        elif cmd.startswith("AT+CSMP="):
            self._say("OK")
        elif cmd == "AT+CREG?":
            self._say(f"+CREG: 0,{s.creg}", "OK")
        elif cmd == "AT+CSQ":
            self._say(f"+CSQ: {s.csq},99", "OK")
        elif cmd == "AT+COPS?":
            self._say(f'+COPS: 0,0,"{s.operator}",7', "OK")
        else:
            self._say("ERROR")
