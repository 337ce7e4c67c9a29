"""Sensor drivers: one sub-package per transport, each a pure protocol plus its I/O."""
