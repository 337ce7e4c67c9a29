"""Run the MicroPython firmware in firmware_stubs/ under CPython, for tests and rigs.

``Board(flash_dir, mac=...)`` is one emulated device; ``board.load("button")`` executes
``firmware_stubs/button/main.py`` against this board's ``machine``, ``bluetooth``, ``time``,
``os``, ``cryptolib`` and ``micropython`` stand-ins. The firmware files never import this
package: the loader supplies the stand-ins through the module's own ``__import__``.
"""

from __future__ import annotations

from .bluetooth import HostAdvert, Notification
from .board import Board, PowerOff
from .machine import ADXL345, samples

__all__ = ["ADXL345", "Board", "HostAdvert", "Notification", "PowerOff", "samples"]
