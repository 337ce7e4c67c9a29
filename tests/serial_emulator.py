"""A serial device emulator on a real pseudo-terminal, for driver tests.

The driver opens a stable path (a symlink, like /dev/serial/by-id/...) that points at the
pty's slave side; the emulator writes frames on the master side. ``unplug`` closes the
master (the driver's reads fail with EIO, as when a USB adapter is pulled); ``replug``
opens a new pty and re-points the symlink, as udev does when the adapter comes back.
"""

from __future__ import annotations

import os
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

    def unplug(self) -> None:
        if self.master is not None:
            os.close(self.master)
            self.master = None

    def close(self) -> None:
        self.unplug()
        if self.link.is_symlink():
            self.link.unlink()
