"""The gateway's vocabulary: sensors, readings, alerts. Frozen, slotted, timezone-aware.

Drivers produce :class:`Reading`; detectors turn readings into :class:`Alert`; the store
keeps both; the uplink sends what the store holds. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from uuid6 import uuid7

from gateway.clock import Stamp

JsonValue = Any
"""A value that json.dumps accepts (str, int, float, bool, None, lists and dicts of them)."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    return _EMPTY


def new_id() -> str:
    """A UUIDv7: sortable by creation time, unique without coordination."""
    return str(uuid7())


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """0 is sent first. The outbox orders by this, then by seq."""
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}


class AlertState(enum.StrEnum):
    RAISED = "raised"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"
    ESCALATED = "escalated"
    CANCELLED = "cancelled"
    RESOLVED = "resolved"

    @property
    def closed(self) -> bool:
        """An alert in a closed state needs nothing more from anyone."""
        return self in (AlertState.ACKNOWLEDGED, AlertState.CANCELLED, AlertState.RESOLVED)


class AlertType(enum.StrEnum):
    EMERGENCY_BUTTON = "emergency_button"
    FALL = "fall"
    FALL_RADAR = "fall_radar"
    INACTIVITY = "inactivity"
    BED_EXIT_NO_RETURN = "bed_exit_no_return"
    NOT_UP = "not_up"
    NIGHT_DOOR = "night_door"
    SENSOR_OFFLINE = "sensor_offline"
    LOW_BATTERY = "low_battery"
    TAMPER = "tamper"
    SMOKE = "smoke"
    GAS = "gas"
    WATER_LEAK = "water_leak"
    GATEWAY_POWER = "gateway_power"
    GATEWAY_HEALTH = "gateway_health"
    TEST = "test"


DEFAULT_SEVERITY: Mapping[AlertType, Severity] = MappingProxyType(
    {
        AlertType.EMERGENCY_BUTTON: Severity.CRITICAL,
        AlertType.FALL: Severity.CRITICAL,
        AlertType.FALL_RADAR: Severity.CRITICAL,
        AlertType.INACTIVITY: Severity.CRITICAL,
        AlertType.BED_EXIT_NO_RETURN: Severity.CRITICAL,
        AlertType.NOT_UP: Severity.WARNING,
        AlertType.NIGHT_DOOR: Severity.WARNING,
        AlertType.SENSOR_OFFLINE: Severity.WARNING,
        AlertType.LOW_BATTERY: Severity.INFO,
        AlertType.TAMPER: Severity.WARNING,
        AlertType.SMOKE: Severity.CRITICAL,
        AlertType.GAS: Severity.CRITICAL,
        AlertType.WATER_LEAK: Severity.CRITICAL,
        AlertType.GATEWAY_POWER: Severity.WARNING,
        AlertType.GATEWAY_HEALTH: Severity.WARNING,
        AlertType.TEST: Severity.INFO,
    }
)


class SensorKind(enum.StrEnum):
    BUTTON = "button"
    DOOR = "door"
    MOTION = "motion"
    OCCUPANCY = "occupancy"
    BED = "bed"
    PENDANT = "pendant"
    RADAR_PRESENCE = "radar_presence"
    RADAR_FALL = "radar_fall"
    RADAR_VITALS = "radar_vitals"
    SMOKE = "smoke"
    GAS = "gas"
    WATER_LEAK = "water_leak"
    PULL_CORD = "pull_cord"
    TOILET = "toilet"
    APPLIANCE = "appliance"
    OTHER = "other"


class Transport(enum.StrEnum):
    BLE = "ble"
    SERIAL = "serial"
    RF433 = "rf433"
    REPLAY = "replay"


class ReadingKind(enum.StrEnum):
    """What a reading measures. Units go in the reading's ``unit`` (and in field names)."""

    BUTTON = "button"  # value: gesture ("press", "double_press", "triple_press", "long_press")
    CONTACT = "contact"  # value: True when open
    MOTION = "motion"  # value: True when motion detected
    OCCUPANCY = "occupancy"  # value: True when someone is present
    IN_BED = "in_bed"  # value: True when someone lies on the pad
    ACCEL = "accel"  # value: None; extra["samples_g"] a list of [x, y, z]
    BATTERY = "battery"  # value: percent
    BATTERY_LOW = "battery_low"  # value: bool
    TAMPER = "tamper"  # value: bool
    SMOKE = "smoke"  # value: bool
    GAS = "gas"  # value: bool
    WATER_LEAK = "water_leak"  # value: bool
    FALL = "fall"  # value: True when a radar reports a fall
    DISTANCE = "distance"  # value: cm
    HEART_RATE = "heart_rate"  # value: beats per minute
    BREATHING = "breathing"  # value: breaths per minute
    TEMPERATURE = "temperature"  # value: degrees Celsius
    RSSI = "rssi"  # value: dBm
    APPLIANCE = "appliance"  # value: True when in use
    TOILET = "toilet"  # value: True when flushed / in use
    CANCEL = "cancel"  # the wearer pressed "I'm OK"
    LINK = "link"  # value: "up" or "down"


ACTIVITY_KINDS = frozenset(
    {
        ReadingKind.BUTTON,
        ReadingKind.CONTACT,
        ReadingKind.MOTION,
        ReadingKind.OCCUPANCY,
        ReadingKind.IN_BED,
        ReadingKind.APPLIANCE,
        ReadingKind.TOILET,
    }
)
"""Readings that show a person was doing something (the inactivity detector's input)."""


@dataclass(frozen=True, slots=True)
class Sensor:
    """One paired sensor, as configured."""

    id: str
    kind: SensorKind
    transport: Transport
    address: str
    room: str
    expected_interval_s: float | None = None
    key_ref: str | None = None
    label: str = ""
    model: str = ""
    options: Mapping[str, Any] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class Reading:
    """One thing a sensor said, stamped when the gateway received it."""

    sensor_id: str
    kind: ReadingKind
    value: JsonValue
    ts: datetime
    monotonic_s: float
    boot_id: str
    clock_synced: bool
    unit: str | None = None
    extra: Mapping[str, JsonValue] = field(default_factory=_empty)

    def __post_init__(self) -> None:
        if self.ts.tzinfo is None:
            raise ValueError("Reading.ts must be timezone-aware (UTC)")

    @classmethod
    def at(
        cls,
        stamp: Stamp,
        sensor_id: str,
        kind: ReadingKind,
        value: JsonValue,
        *,
        unit: str | None = None,
        extra: Mapping[str, JsonValue] | None = None,
    ) -> Reading:
        """A reading stamped with ``stamp`` (from :class:`gateway.clock.Clock`)."""
        return cls(
            sensor_id=sensor_id,
            kind=kind,
            value=value,
            ts=stamp.wall,
            monotonic_s=stamp.monotonic_s,
            boot_id=stamp.boot_id,
            clock_synced=stamp.synced,
            unit=unit,
            extra=MappingProxyType(dict(extra)) if extra else _EMPTY,
        )


@dataclass(frozen=True, slots=True)
class Alert:
    """Something a person must know about. Never evicted from the store."""

    type: AlertType
    severity: Severity
    ts: datetime
    sensor_id: str | None = None
    sensor_kind: SensorKind | None = None
    room: str | None = None
    evidence: Mapping[str, JsonValue] = field(default_factory=_empty)
    state: AlertState = AlertState.RAISED
    id: str = field(default_factory=new_id)
    monotonic_s: float = 0.0
    boot_id: str = ""
    clock_synced: bool = False

    def __post_init__(self) -> None:
        if self.ts.tzinfo is None:
            raise ValueError("Alert.ts must be timezone-aware (UTC)")

    @classmethod
    def raise_(
        cls,
        type_: AlertType,
        stamp: Stamp,
        *,
        sensor: Sensor | None = None,
        evidence: Mapping[str, JsonValue] | None = None,
        severity: Severity | None = None,
        room: str | None = None,
    ) -> Alert:
        """A new alert in state ``raised``, stamped now, severity from the type's default."""
        return cls(
            type=type_,
            severity=severity or DEFAULT_SEVERITY[type_],
            ts=stamp.wall,
            sensor_id=sensor.id if sensor else None,
            sensor_kind=sensor.kind if sensor else None,
            room=room if room is not None else (sensor.room if sensor else None),
            evidence=MappingProxyType(dict(evidence)) if evidence else _EMPTY,
            monotonic_s=stamp.monotonic_s,
            boot_id=stamp.boot_id,
            clock_synced=stamp.synced,
        )

    def with_state(self, state: AlertState) -> Alert:
        return replace(self, state=state)


def utc(ts: datetime) -> datetime:
    """Normalise an aware datetime to UTC; refuse naive ones."""
    if ts.tzinfo is None:
        raise ValueError("naive datetime")
    return ts.astimezone(UTC)
