"""Anxin (安心) gateway: sensors in, durable alerts out to the district care platform."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("anxin-gateway")
except PackageNotFoundError:  # running from a source checkout that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
