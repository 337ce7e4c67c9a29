"""BTHome v2 service data -> :class:`BTHomeFrame`. Pure: no I/O, no state between calls.

Object decoding (the table of object ids, scales, units, events) is bthome-ble's
``BTHomeBluetoothDeviceData``: a well-kept parser with its own captured-frame tests, so we
do not keep a second table. What we do here ourselves, and why:

* **Header checks** (version bits, flags, minimum lengths) happen before the library sees
  the frame, so a malformed frame becomes one :class:`FrameError` with a reason instead of
  the library's log line and an empty update.
* **Downgrade and missing key**: decided from the flags byte, before decryption, so the
  reason is exact (``downgrade``, ``encrypted_no_key``).
* **Authentication** is the library's AES-CCM; we read its ``bindkey_verified`` flag after
  ``update`` on a *fresh* parser. A fresh parser per frame is deliberate: the library keeps
  the replay counter and the packet id in memory and applies a 4-second window to both,
  which would make this function's result depend on the frames before it. Replay (a
  counter persisted in the store) and packet-id de-duplication are the driver's job.
* **Encryption counter**: read from the frame (bytes -8..-4, little-endian); it is part of
  the AES-CCM nonce, so it is authenticated whenever the frame is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gateway.errors import FrameError

PROTOCOL = "bthome"
BTHOME_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"
"""16-bit UUID 0xFCD2 (BTHome v2) in the 128-bit form bleak reports."""

_FLAG_ENCRYPTED = 0x01
_FLAG_MAC_INCLUDED = 0x02
_FLAG_TRIGGER_BASED = 0x04
_COUNTER_AND_MIC = 8
_IGNORED_SENSORS = frozenset({"signal_strength", "packet_id"})
_GENERIC_MODEL = "BTHome sensor"

# The library logs a warning for every frame that fails authentication or downgrades; the
# driver already counts and logs those rejections with the raw bytes, once.
logging.getLogger("bthome_ble.parser").setLevel(logging.ERROR)


@dataclass(frozen=True, slots=True)
class Measurement:
    """One numeric (or text) object: ``battery`` 100 %, ``temperature`` 25.06 °C."""

    key: str
    value: float | int | str
    unit: str | None


@dataclass(frozen=True, slots=True)
class BTHomeFrame:
    """One decoded BTHome v2 advertisement. Tuples are sorted by key, so equality is exact."""

    mac: str
    encrypted: bool
    trigger_based: bool
    packet_id: int | None
    counter: int | None
    measurements: tuple[Measurement, ...]
    binary: tuple[tuple[str, bool], ...]
    events: tuple[tuple[str, str], ...]
    model: str

    def measurement(self, key: str) -> Measurement | None:
        return next((m for m in self.measurements if m.key == key), None)

    def as_dict(self) -> dict[str, Any]:
        """Plain data, the shape the vector files under tests/vectors/bthome/ expect."""
        return {
            "mac": self.mac,
            "encrypted": self.encrypted,
            "trigger_based": self.trigger_based,
            "packet_id": self.packet_id,
            "counter": self.counter,
            "measurements": [[m.key, m.value, m.unit] for m in self.measurements],
            "binary": [[k, v] for k, v in self.binary],
            "events": [[k, v] for k, v in self.events],
            "model": self.model,
        }


def _service_info(service_data: bytes, mac: str, name: str) -> Any:
    from habluetooth import BluetoothServiceInfoBleak

    # time=0.0 for every frame: the library's 4-second windows then never apply (we give
    # it a fresh parser anyway), and the result does not depend on the wall clock.
    device: Any = None  # the parser never touches the BLEDevice
    return BluetoothServiceInfoBleak(
        name or mac, mac, 0, {}, {BTHOME_UUID: service_data}, [BTHOME_UUID], "anxin",
        device, None, False, 0.0, None,
    )


def check_header(raw: bytes, *, bindkey: bytes | None) -> tuple[bool, bool, int | None]:
    """Validate the flags byte and lengths. Returns (encrypted, trigger_based, counter)."""
    if not raw:
        raise FrameError("empty", raw, protocol=PROTOCOL)
    flags = raw[0]
    version = (flags >> 5) & 0x07
    if version != 2:
        raise FrameError(f"bthome_version_{version}", raw, protocol=PROTOCOL)
    encrypted = bool(flags & _FLAG_ENCRYPTED)
    body = len(raw) - 1 - (6 if flags & _FLAG_MAC_INCLUDED else 0)
    if body < (_COUNTER_AND_MIC + 1 if encrypted else 1):
        raise FrameError("truncated", raw, protocol=PROTOCOL)
    if bindkey is not None and not encrypted:
        raise FrameError("downgrade", raw, protocol=PROTOCOL)
    if encrypted and bindkey is None:
        raise FrameError("encrypted_no_key", raw, protocol=PROTOCOL)
    if bindkey is not None and len(bindkey) != 16:
        raise FrameError("bad_bindkey_length", raw, protocol=PROTOCOL)
    counter = int.from_bytes(raw[-8:-4], "little") if encrypted else None
    return encrypted, bool(flags & _FLAG_TRIGGER_BASED), counter


def decode(
    raw: bytes, mac: str, *, bindkey: bytes | None = None, name: str = ""
) -> BTHomeFrame:
    """Decode the service data of UUID 0xFCD2 sent by ``mac`` (``AA:BB:...``).

    ``bindkey`` is the sensor's 16-byte key when it is paired as encrypted; a plaintext
    frame is then refused (``downgrade``). Raises :class:`FrameError` for anything that is
    not a valid, authentic BTHome v2 frame with at least one object.
    """
    from bthome_ble import BTHomeBluetoothDeviceData

    raw = bytes(raw)
    mac = mac.upper()
    encrypted, trigger_based, counter = check_header(raw, bindkey=bindkey)
    parser = BTHomeBluetoothDeviceData(bindkey)
    try:
        update = parser.update(_service_info(raw, mac, name))
    except (ValueError, IndexError, TypeError, KeyError, OverflowError) as exc:
        raise FrameError(f"library_error: {type(exc).__name__}", raw, protocol=PROTOCOL) from exc
    if encrypted and not parser.bindkey_verified:
        raise FrameError("auth_failed", raw, protocol=PROTOCOL)
    if parser.downgrade_detected:  # pragma: no cover - check_header refuses it first
        raise FrameError("downgrade", raw, protocol=PROTOCOL)
    return _frame(update, parser, mac, (encrypted, trigger_based, counter), raw)


def _frame(
    update: Any, parser: Any, mac: str, header: tuple[bool, bool, int | None], raw: bytes
) -> BTHomeFrame:
    encrypted, trigger_based, counter = header
    measurements: list[Measurement] = []
    for key, value in update.entity_values.items():
        if key.key in _IGNORED_SENSORS or value.native_value is None:
            continue
        desc = update.entity_descriptions.get(key)
        unit = getattr(desc, "native_unit_of_measurement", None) if desc else None
        native = value.native_value
        if not isinstance(native, int | float | str):
            native = str(native)
        measurements.append(Measurement(key.key, native, None if unit is None else str(unit.value)))
    binary = sorted((k.key, bool(v.native_value)) for k, v in update.binary_entity_values.items())
    events = sorted((k.key, str(e.event_type)) for k, e in update.events.items())
    packet_id = None if parser.packet_id is None else int(parser.packet_id)
    if not (measurements or binary or events or packet_id is not None):
        raise FrameError("no_objects", raw, protocol=PROTOCOL)
    info = update.devices.get(None)
    model = info.model if info is not None and info.model != _GENERIC_MODEL else ""
    return BTHomeFrame(
        mac=mac,
        encrypted=encrypted,
        trigger_based=trigger_based,
        packet_id=packet_id,
        counter=counter,
        measurements=tuple(sorted(measurements, key=lambda m: m.key)),
        binary=tuple(binary),
        events=tuple(events),
        model=model or "",
    )


def parse_bindkey(text: str) -> bytes:
    """A bind key as written in the secrets file: 32 hex digits."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise FrameError("bind key is not hex", protocol=PROTOCOL) from None
    if len(key) != 16:
        raise FrameError("bind key must be 32 hex digits (16 bytes)", protocol=PROTOCOL)
    return key
