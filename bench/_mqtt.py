"""Shared by the uplink benchmarks: a throwaway mosquitto and a subscriber child process."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """mosquitto on loopback with the test suite's settings (Receive Maximum 20)."""

    def __init__(self, workdir: Path, *, persistent: bool = False) -> None:
        self.persistent = persistent
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_inflight_messages 20\nmax_queued_messages 1000000\nmessage_size_limit 0\n"
            + (self._persistence() if self.persistent else "")
        )
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def _persistence(self) -> str:
        # Sessions and queued messages survive a restart, so the subscriber misses nothing
        # published before it reconnects. As root, mosquitto would drop to a user that
        # cannot write the private temporary directory.
        user = "user root\n" if os.geteuid() == 0 else ""
        return f"{user}persistence true\npersistence_location {self.workdir}/\n"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


SUBSCRIBER = r"""
import json, sys, time
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
port, topics = int(sys.argv[1]), sys.argv[2:]
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-platform", protocol=paho.MQTTv5)
c.reconnect_delay_set(0.05, 0.5)
ready = []
def on_connect(cl, u, f, rc, p):
    cl.subscribe([(t, 1) for t in topics])
def on_subscribe(cl, u, mid, rcs, p):
    if not ready:
        ready.append(1)
        print("ready", flush=True)
def on_message(cl, u, m):
    t = time.monotonic()
    try:
        body = json.loads(m.payload)
        key = body.get("alert_id") or body.get("id")
        n = len(body.get("readings") or [])
    except ValueError:
        key, n = m.payload.decode(), 0
    sys.stdout.write(f"{t:.6f} {m.topic} {key} {n}\n")
    sys.stdout.flush()
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
props = Properties(PacketTypes.CONNECT)
props.SessionExpiryInterval = 3600
c.connect("127.0.0.1", port, clean_start=False, properties=props)
c.loop_forever(retry_first_connection=True)
"""


def subscriber(port: int, *topics: str) -> subprocess.Popen[str]:
    """A platform-side subscriber in its own process; prints ``mono topic key n`` lines."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SUBSCRIBER, str(port), *topics],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("subscriber did not start")
    return proc


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[k]
