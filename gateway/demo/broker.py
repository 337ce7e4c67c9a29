"""A local MQTT broker for the demo: mosquitto when installed, else amqtt in-process.

mosquitto is what a district platform or an installer's laptop would run; amqtt (the
`demo` extra) only exists so that `pip install anxin-gateway[demo]` alone can show the
demo. amqtt speaks MQTT 3.1.1 only, which also shows the uplink's fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from gateway.errors import DeviceUnavailableError

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


class LocalBroker:
    """Start, stop and restart a broker on 127.0.0.1 (same port each time)."""

    def __init__(self, port: int | None = None, *, prefer: str = "auto") -> None:
        self.port = port or free_port()
        self.kind = self._choose(prefer)
        self._proc: subprocess.Popen[bytes] | None = None
        self._amqtt: Any = None
        self._dir = tempfile.TemporaryDirectory(prefix="anxin-broker-")

    @staticmethod
    def _choose(prefer: str) -> str:
        if prefer in ("auto", "mosquitto") and find_mosquitto():
            return "mosquitto"
        if prefer == "mosquitto":
            raise DeviceUnavailableError("mosquitto is not installed (apt-get install mosquitto)")
        try:
            import amqtt  # noqa: F401
        except ImportError:
            raise DeviceUnavailableError(
                "no MQTT broker: install mosquitto (apt-get install mosquitto) "
                "or the embedded one (pip install 'anxin-gateway[demo]')"
            ) from None
        return "amqtt"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return (self._proc is not None and self._proc.poll() is None) or self._amqtt is not None

    async def start(self) -> None:
        if self.kind == "mosquitto":
            await self._start_mosquitto()
        else:
            await self._start_amqtt()
        log.info("broker %s listening on %s", self.kind, self.url)

    async def _start_mosquitto(self) -> None:
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text(
            # persistence, as a real platform broker has: a subscriber's session and the QoS 1
            # messages queued for it survive a broker restart (HIL and demo outages)
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self._dir.name}/\nlog_dest none\n"
        )
        binary = find_mosquitto()
        assert binary is not None
        self._proc = subprocess.Popen(  # noqa: ASYNC220 - a daemon we only poll
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(200):
            with contextlib.suppress(OSError):
                _r, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                await w.wait_closed()
                return
            if self._proc.poll() is not None:
                raise DeviceUnavailableError(f"mosquitto exited with {self._proc.returncode}")
            await asyncio.sleep(0.05)
        raise DeviceUnavailableError("mosquitto did not start listening")

    async def _start_amqtt(self) -> None:
        from amqtt.broker import Broker

        self._amqtt = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            }
        )
        await self._amqtt.start()

    async def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                await asyncio.to_thread(self._proc.wait, 5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                await asyncio.to_thread(self._proc.wait, 5)
            self._proc = None
        if self._amqtt is not None:
            await self._amqtt.shutdown()
            self._amqtt = None

    async def close(self) -> None:
        await self.stop()
        self._dir.cleanup()
