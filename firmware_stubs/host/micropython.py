"""Stand-in for MicroPython's ``micropython`` module."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def const(value: T) -> T:
    """On a board the compiler inlines these; here it is the identity."""
    return value


def schedule(func, arg) -> None:  # type: ignore[no-untyped-def]
    func(arg)


def alloc_emergency_exception_buf(size: int) -> None:
    """Nothing to reserve on the host."""
