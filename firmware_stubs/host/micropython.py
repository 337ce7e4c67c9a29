"""Stand-in for MicroPython's ``micropython`` module."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def const(value: T) -> T:
    """On a board the compiler inlines these; here it is the identity."""
    return value


def schedule(func: Callable[[T], object], arg: T) -> None:
    """On a board this runs ``func`` soon, outside the IRQ; here at once."""
    func(arg)


def alloc_emergency_exception_buf(size: int) -> None:
    """Nothing to reserve on the host."""
