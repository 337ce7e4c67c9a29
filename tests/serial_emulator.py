"""A serial device emulator on a real pseudo-terminal, for driver tests.

The driver opens a stable path (a symlink, like /dev/serial/by-id/...) that points at the
pty's slave side; the emulator writes frames on the master side. ``unplug`` closes the
master (the driver's reads fail with EIO, as when a USB adapter is pulled); ``replug``
opens a new pty and re-points the symlink, as udev does when the adapter comes back.
"""

from __future__ import annotations

import os
import threading
import tty
from pathlib import Path


class PtyDevice:
    def __init__(self, link: Path) -> None:
        self.link = link
        self.master: int | None = None
        self.slave_path = ""
        self.plugs = 0

    def plug(self) -> None:
        master, slave = os.openpty()
        self.slave_path = os.ttyname(slave)
        # Raw from the start: bytes written before the driver opens the port must not be
        # line-edited (CR -> NL) by the tty layer.
        tty.setraw(slave)
        # Only the driver keeps the slave open, so closing the master hangs it up.
        os.close(slave)
        self.master = master
        tmp = self.link.with_name(self.link.name + ".new")
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(self.slave_path)
        os.replace(tmp, self.link)
        self.plugs += 1

    def write(self, data: bytes) -> None:
        assert self.master is not None, "not plugged"
        view = memoryview(data)
        while view:
            n = os.write(self.master, view)
            view = view[n:]

    def stream(self, frame: bytes, every_s: float = 0.02) -> threading.Event:
        """Write ``frame`` every ``every_s`` from a thread until the returned event is set."""
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(every_s):
                try:
                    self.write(frame)
                except OSError:
                    return

        threading.Thread(target=run, name="pty-emulator", daemon=True).start()
        return stop

    def unplug(self) -> None:
        if self.master is not None:
            os.close(self.master)
            self.master = None

    def close(self) -> None:
        self.unplug()
        if self.link.is_symlink():
            self.link.unlink()
