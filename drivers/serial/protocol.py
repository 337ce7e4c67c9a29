"""The registry of serial protocols: name -> framer factory and default baud rate.

This is the pure side of ``drivers.serial``: nothing here opens a port.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import bedpad, ld2410, mr60, rflink, rtl433
from .framing import Framer


@dataclass(frozen=True, slots=True)
class ProtocolSpec:
    name: str
    baud: int
    framer: Callable[[], Framer[Any]]
    description: str


PROTOCOLS: dict[str, ProtocolSpec] = {
    "ld2410": ProtocolSpec("ld2410", ld2410.BAUD, ld2410.LD2410Framer, "HLK-LD2410 presence radar"),
    "mr60fda2": ProtocolSpec("mr60fda2", mr60.BAUD, mr60.MR60Framer, "Seeed MR60FDA2 fall radar"),
    "mr60bha2": ProtocolSpec(
        "mr60bha2", mr60.BAUD, mr60.MR60Framer, "Seeed MR60BHA2 breathing/heart-rate radar"
    ),
    "rflink": ProtocolSpec("rflink", rflink.BAUD, rflink.RFLinkFramer, "RFLink 433 MHz receiver"),
    "rtl433": ProtocolSpec("rtl433", 115200, rtl433.Rtl433Framer, "rtl_433 JSON lines"),
    "bedpad": ProtocolSpec("bedpad", bedpad.BAUD, bedpad.BedPadFramer, "Anxin bed pad"),
}


def spec(name: str) -> ProtocolSpec:
    """The protocol called ``name``; KeyError with the known names otherwise."""
    try:
        return PROTOCOLS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown serial protocol {name!r}; known: {', '.join(PROTOCOLS)}") from None
