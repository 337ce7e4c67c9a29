"""Shared fixtures: real parts wherever this machine can run them.

* ``mosquitto``: a real broker on 127.0.0.1, a free port, started per test; it can be
  stopped and started again (same port) to test outages.
* ``store``: a real SQLite file in a temporary directory.
* Every test fails if it leaves asyncio tasks behind or makes a log call that does not
  format.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.store import Store

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mosquitto_bin() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )


class Broker:
    """A real mosquitto on loopback that tests can stop and restart on the same port."""

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "") -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.workdir = workdir
        self.extra_conf = extra_conf
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = workdir / f"mosquitto-{self.port}.conf"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        binary = _mosquitto_bin()
        if binary is None:
            pytest.fail("mosquitto is not installed (apt-get install mosquitto); .ci/run installs it")
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"max_inflight_messages 20\nmax_queued_messages 100000\n{self.extra_conf}\n"
        )
        log_path = self.workdir / f"mosquitto-{self.port}.log"
        with open(log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [binary, "-c", str(self.conf)], stdout=log_file, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 0.2):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "anxin.db", budget_bytes=64 * 1024 * 1024, reserve_bytes=1024 * 1024)
    s.open()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside the checkout")
    return SHARED_DATA


_lingering: list[str] = []
_original_runner_close = asyncio.Runner.close


def _checking_runner_close(self: asyncio.Runner) -> None:
    # pytest-asyncio runs each test in an asyncio.Runner and cancels what is left when it
    # closes; note what was left first, so the test that leaked it fails.
    loop = getattr(self, "_loop", None)
    if loop is not None and not loop.is_closed():
        _lingering.extend(repr(t) for t in asyncio.all_tasks(loop) if not t.done())
    _original_runner_close(self)


asyncio.Runner.close = _checking_runner_close  # type: ignore[method-assign]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    _lingering.clear()
    yield
    if _lingering:
        left = list(_lingering)
        _lingering.clear()
        pytest.fail(f"{item.nodeid} left asyncio tasks behind: {left}")


class _FormatCheckingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.getMessage()
        except (TypeError, ValueError) as exc:
            self.errors.append(f"{record.pathname}:{record.lineno}: {exc}")


@pytest.fixture(autouse=True)
def _log_calls_must_format() -> Iterator[None]:
    handler = _FormatCheckingHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
    assert not handler.errors, f"log calls that do not format: {handler.errors}"


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `anxin ARGS` as a child process from this checkout."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=ROOT,
        check=False,
    )
