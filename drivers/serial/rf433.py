"""What 433 MHz receivers decode, in one shape: :class:`RadioEvent`.

Both RFLink (:mod:`.rflink`) and rtl_433 (:mod:`.rtl433`) produce it. A device is named by
its *address* ``SOURCE:PROTOCOL:ID[:SWITCH]`` (lower case), e.g. ``rflink:ev1527:0a1b2c``
or ``rtl433:kerui-security:123456:1``; this is what ``SensorConfig.address`` holds for a
paired 433 MHz sensor (see docs/serial.md).
"""

from __future__ import annotations

from dataclasses import dataclass

Scalar = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class RadioEvent:
    """One decoded transmission.

    ``active`` is the device's main state: True for ON / open / alarm / motion / wet /
    pressed, False for OFF / closed / clear, None when the transmission says nothing
    about it (a battery or supervision report). Which reading it becomes depends on
    the paired sensor's kind (a door contact and a panic button both send ``ON``).
    """

    source: str
    protocol: str
    device_id: str
    switch: str | None = None
    active: bool | None = None
    alarm: str | None = None  # "smoke", "gas", "water_leak", "panic" when the frame says so
    battery_low: bool | None = None
    battery_pct: float | None = None
    tamper: bool | None = None
    fields: tuple[tuple[str, Scalar], ...] = ()

    @property
    def address(self) -> str:
        base = f"{self.source}:{self.protocol}:{self.device_id}".lower()
        return f"{base}:{self.switch.lower()}" if self.switch else base

    @property
    def device_address(self) -> str:
        """The address without the switch/channel part."""
        return f"{self.source}:{self.protocol}:{self.device_id}".lower()


def parse_address(address: str) -> tuple[str, str, str, str | None] | None:
    """Split ``SOURCE:PROTOCOL:ID[:SWITCH]``; None when it is not a 433 MHz address."""
    parts = address.strip().lower().split(":")
    if len(parts) not in (3, 4) or parts[0] not in ("rflink", "rtl433") or not all(parts):
        return None
    return parts[0], parts[1], parts[2], (parts[3] if len(parts) == 4 else None)
