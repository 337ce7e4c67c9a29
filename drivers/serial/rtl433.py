"""rtl_433 JSON lines (``rtl_433 -F json``), from a pipe or a serial bridge.

Each line is one JSON object with at least ``model``; ``id`` (number or string) names the
device, ``channel`` (or ``unit``/``button``) the sub-device. The state comes from the
first of these keys present: ``contact_open``, ``opened``, ``state``, ``motion``,
``detect_wet``, ``water``, ``leak``, ``smoke``, ``gas``, ``panic``, ``pressed``, ``alarm``,
``event``; a device that sends only its code (doorbells, EV1527 remotes) is active when it
transmits. ``battery_ok`` (0/1, or a 0..1 level in newer rtl_433) gives battery, ``tamper``
tamper.
"""

from __future__ import annotations

import json
import math
from typing import Any

from gateway.errors import FrameError

from .framing import LineFramer
from .rf433 import RadioEvent, Scalar

PROTOCOL = "rtl433"

# Order matters: Honeywell-Security sends contact_open/state for the reed and alarm for
# the second loop, so the contact wins over the generic alarm flag.
_STATE_KEYS = (
    "contact_open", "opened", "state", "motion", "detect_wet", "water", "leak",
    "smoke", "gas", "panic", "pressed", "alarm", "event",
)
_ALARM_OF_KEY = {"smoke": "smoke", "gas": "gas", "detect_wet": "water_leak", "water": "water_leak",
                 "leak": "water_leak", "panic": "panic"}
_ON_WORDS = {"on", "open", "opened", "alarm", "true", "1", "wet", "leak", "water leak", "motion",
             "panic", "pressed", "smoke", "triggered"}
_OFF_WORDS = {"off", "closed", "close", "false", "0", "dry", "clear", "normal", "ok", "no motion"}


def _truth(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _ON_WORDS:
            return True
        if word in _OFF_WORDS:
            return False
    return None


def _scalar(value: Any) -> Scalar:
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def decode_line(line: bytes) -> RadioEvent | None:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        raise FrameError("not JSON", line, protocol=PROTOCOL) from None
    if not isinstance(obj, dict):
        raise FrameError("not a JSON object", line, protocol=PROTOCOL)
    model = obj.get("model")
    if not isinstance(model, str) or not model.strip():
        raise FrameError("no model", line, protocol=PROTOCOL)
    raw_id = obj.get("id", "")
    if isinstance(raw_id, bool) or not isinstance(raw_id, int | str):
        raise FrameError("bad id", line, protocol=PROTOCOL)
    switch = next((obj[k] for k in ("channel", "unit", "button") if k in obj), None)
    active: bool | None = None
    alarm: str | None = None
    for key in _STATE_KEYS:
        if key in obj:
            active = _truth(obj[key])
            if active:
                alarm = _ALARM_OF_KEY.get(key)
            break
    else:
        active = True  # a code-only transmitter speaks only when triggered
    battery_low: bool | None = None
    battery_pct: float | None = None
    bat = obj.get("battery_ok")
    if isinstance(bat, int | float) and not isinstance(bat, bool) and math.isfinite(bat):
        battery_low = bat < 0.2 if isinstance(bat, float) and 0 < bat < 1 else not bat
        if isinstance(bat, float):
            battery_pct = round(bat * 100.0, 1)
    tamper = _truth(obj["tamper"]) if "tamper" in obj else None
    fields = tuple(sorted((str(k), _scalar(v)) for k, v in obj.items()))
    return RadioEvent(
        source=PROTOCOL,
        protocol=model.strip().lower().replace(" ", "_").replace(":", "_"),
        device_id=str(raw_id).strip().lower().replace(":", "_"),
        switch=None if switch is None or isinstance(switch, dict | list) else str(switch).lower(),
        active=active,
        alarm=alarm,
        battery_low=battery_low,
        battery_pct=battery_pct,
        tamper=tamper,
        fields=fields,
    )


class Rtl433Framer(LineFramer[RadioEvent]):
    protocol = PROTOCOL
    max_frame = 4096

    def decode_line(self, line: bytes) -> RadioEvent | FrameError | None:
        try:
            return decode_line(line)
        except FrameError as err:
            return err
