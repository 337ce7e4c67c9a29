"""The gateway's configuration: one typed, frozen tree, loaded from TOML and validated once.

Every error names the file, the line and the key, and says what was expected, so an
installer with a phone can fix it. The config is never written back. Secrets (MQTT
password, BTHome bind keys) live in a separate file that only the service user may read.

The loader is driven by the dataclasses below: field types and ``meta(...)`` bounds say
what is valid, so adding a setting is adding a field.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import re
import stat
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time as dtime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.errors import ConfigError, SecretsPermissionError
from gateway.model import Sensor, SensorKind, Transport

DEFAULT_PATH = Path("/etc/anxin/gateway.toml")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_BIND_KEY_RE = re.compile(r"^[0-9A-Fa-f]{32}$")
_HHMM_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def meta(
    *,
    help: str,
    min: float | None = None,
    max: float | None = None,
    pattern: str | None = None,
    check: typing.Callable[[Any], str | None] | None = None,
) -> dict[str, Any]:
    """Field metadata the loader checks. ``help`` also feeds the README's config reference."""
    return {"help": help, "min": min, "max": max, "pattern": pattern, "check": check}


def _hhmm(value: Any) -> str | None:
    return None if _HHMM_RE.match(str(value)) else 'a time of day as "HH:MM" (24 h)'


def _zone(value: Any) -> str | None:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        return 'an IANA time zone such as "Asia/Shanghai"'
    return None


def _broker_url(value: Any) -> str | None:
    parts = urlsplit(str(value))
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        return 'a broker URL such as "mqtt://127.0.0.1:1883" or "mqtts://host:8883"'
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "a broker URL with a numeric port"
    return None


def parse_hhmm(text: str) -> dtime:
    hh, mm = text.split(":")
    return dtime(int(hh), int(mm))


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    id: str = field(
        metadata=meta(help="gateway id, unique on the platform", pattern=_ID_RE.pattern)
    )
    home: str = field(metadata=meta(help="home id on the platform", pattern=_ID_RE.pattern))
    timezone: str = field(
        default="Asia/Shanghai", metadata=meta(help="IANA time zone of the home", check=_zone)
    )
    name: str = field(default="", metadata=meta(help="free text shown to installers"))

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class RoomConfig:
    id: str = field(metadata=meta(help="room id used by sensors", pattern=_ID_RE.pattern))
    name: str = field(default="", metadata=meta(help="display name, e.g. 卧室"))
    kind: str = field(
        default="other",
        metadata=meta(
            help="bedroom, bathroom, kitchen, living, hall, entrance or other",
            pattern=r"^(bedroom|bathroom|kitchen|living|hall|entrance|other)$",
        ),
    )


@dataclass(frozen=True, slots=True)
class SensorConfig:
    id: str = field(metadata=meta(help="sensor id, unique in the home", pattern=_ID_RE.pattern))
    kind: SensorKind = field(metadata=meta(help="what the sensor is"))
    transport: Transport = field(metadata=meta(help="how it reaches the gateway"))
    address: str = field(
        metadata=meta(help="BLE MAC, serial port path or URL, or 433 MHz protocol:id")
    )
    room: str = field(metadata=meta(help="id of a room in [[rooms]]"))
    expected_interval_s: float | None = field(
        default=None,
        metadata=meta(help="longest normal silence; longer raises sensor_offline", min=1),
    )
    key: str | None = field(
        default=None, metadata=meta(help="name of the bind key in the secrets file [keys]")
    )
    label: str = field(default="", metadata=meta(help="what the installer calls it"))
    model: str = field(default="", metadata=meta(help="device model, e.g. SBBT-002C, LD2410C"))
    protocol: str = field(
        default="",
        metadata=meta(help="serial protocol (ld2410, mr60fda2, mr60bha2, rflink, bedpad)"),
    )
    baud: int | None = field(default=None, metadata=meta(help="serial baud rate", min=300))

    def to_sensor(self) -> Sensor:
        options: dict[str, Any] = {}
        if self.protocol:
            options["protocol"] = self.protocol
        if self.baud is not None:
            options["baud"] = self.baud
        return Sensor(
            id=self.id,
            kind=self.kind,
            transport=self.transport,
            address=self.address,
            room=self.room,
            expected_interval_s=self.expected_interval_s,
            key_ref=self.key,
            label=self.label,
            model=self.model,
            options=types.MappingProxyType(options),
        )


@dataclass(frozen=True, slots=True)
class UplinkConfig:
    broker_url: str = field(
        default="mqtt://127.0.0.1:1883", metadata=meta(help="MQTT broker", check=_broker_url)
    )
    topic_root: str = field(
        default="anxin/v1",
        metadata=meta(help="root of every topic", pattern=r"^[^#+\s]+(/[^#+\s]+)*$"),
    )
    client_id: str = field(default="", metadata=meta(help="MQTT client id; default anxin-{gw}"))
    protocol: str = field(
        default="auto",
        metadata=meta(
            help="MQTT version: 5, 3.1.1, or auto (5, then 3.1.1)", pattern=r"^(5|3\.1\.1|auto)$"
        ),
    )
    keepalive_s: int = field(default=30, metadata=meta(help="MQTT keepalive", min=5, max=3600))
    tls_ca: str | None = field(default=None, metadata=meta(help="CA bundle for mqtts://"))
    tls_cert: str | None = field(default=None, metadata=meta(help="client certificate (mTLS)"))
    tls_key: str | None = field(default=None, metadata=meta(help="client key (mTLS)"))
    tls_insecure: bool = field(
        default=False, metadata=meta(help="skip hostname check (test rigs only)")
    )
    escalate_after_s: float = field(
        default=60.0,
        metadata=meta(help="critical alert not handled after this goes to notifiers", min=1),
    )
    repeat_every_s: float = field(
        default=300.0, metadata=meta(help="repeat escalation until handled", min=10)
    )
    event_batch_max: int = field(
        default=200, metadata=meta(help="readings per event message", min=1, max=5000)
    )
    event_interval_s: float = field(
        default=2.0, metadata=meta(help="longest wait before sending a partial batch", min=0.05)
    )
    telemetry_interval_s: float = field(
        default=300.0, metadata=meta(help="health telemetry period", min=5)
    )
    max_inflight: int = field(
        default=20,
        metadata=meta(help="QoS 1 messages awaiting PUBACK; lowered to the broker's Receive Maximum", min=1, max=65535),
    )
    reconnect_min_s: float = field(default=1.0, metadata=meta(help="first retry delay", min=0.05))
    reconnect_max_s: float = field(default=120.0, metadata=meta(help="longest retry delay", min=1))


@dataclass(frozen=True, slots=True)
class StorageConfig:
    path: str = field(default="/var/lib/anxin/anxin.db", metadata=meta(help="SQLite database"))
    budget_mb: float = field(
        default=512.0, metadata=meta(help="hard size budget of the database", min=1)
    )
    reserve_mb: float = field(
        default=8.0,
        metadata=meta(help="space kept back so alerts commit when the disk is full", min=0.1),
    )
    readings_max_age_days: float = field(
        default=90.0, metadata=meta(help="readings older than this are pruned", min=0.01)
    )
    delivered_max_age_days: float = field(
        default=14.0, metadata=meta(help="delivered messages older than this are pruned", min=0.01)
    )
    group_commit_ms: float = field(
        default=200.0, metadata=meta(help="longest a reading waits for its commit", min=1, max=5000)
    )


@dataclass(frozen=True, slots=True)
class InactivityConfig:
    enabled: bool = field(default=True, metadata=meta(help="run the inactivity detector"))
    learning_days: int = field(
        default=7,
        metadata=meta(
            help="days of history before learned limits apply (each also needs min_samples)",
            min=1,
        ),
    )
    min_limit_min: float = field(
        default=90.0, metadata=meta(help="never alarm sooner than this", min=5)
    )
    max_limit_min: float = field(
        default=720.0, metadata=meta(help="always alarm after this much quiet at home", min=30)
    )
    day_limit_min: float = field(
        default=180.0, metadata=meta(help="limit 07:00-22:00 while learning", min=5)
    )
    night_limit_min: float = field(
        default=720.0, metadata=meta(help="limit 22:00-07:00 while learning", min=5)
    )
    percentile: float = field(
        default=0.99, metadata=meta(help="quantile of the home's quiet periods", min=0.5, max=1)
    )
    margin: float = field(
        default=1.25, metadata=meta(help="factor applied to the learned quantile", min=1, max=5)
    )
    sleep_limit_min: float = field(
        default=720.0, metadata=meta(help="limit while asleep in bed (learning, and the cap)", min=30)
    )
    target_fa_per_day: float = field(
        default=0.02,
        metadata=meta(help="learned limits aim at this many false alarms a day", min=0.001, max=5),
    )
    min_samples: int = field(
        default=30, metadata=meta(help="quiet periods needed before a learned limit applies", min=5)
    )
    sleep_min_limit_min: float = field(
        default=300.0, metadata=meta(help="never alarm sooner than this while asleep in bed", min=5)
    )
    learn_min_gap_min: float = field(
        default=5.0, metadata=meta(help="quiet periods shorter than this are not learned", min=1)
    )
    bed_debounce_s: float = field(
        default=120.0, metadata=meta(help="bed pad off for less than this still counts as in bed", min=0)
    )
    context_factor_min: float = field(
        default=0.5,
        metadata=meta(help="learned room/context factor on the hour's limit: lowest", min=0.1, max=1),
    )
    context_factor_max: float = field(
        default=2.0,
        metadata=meta(help="learned room/context factor on the hour's limit: highest", min=1, max=10),
    )
    day_busy_max_min: float = field(
        default=105.0,
        metadata=meta(
            help="in the day, quiet after someone moved about or came in alarms after this at most (0: off)",
            min=0,
        ),
    )
    day_busy_from: str = field(
        default="07:00", metadata=meta(help="day_busy_max_min applies from", check=_hhmm)
    )
    day_busy_to: str = field(
        default="20:00", metadata=meta(help="day_busy_max_min applies until", check=_hhmm)
    )


@dataclass(frozen=True, slots=True)
class RulesConfig:
    night_start: str = field(default="22:00", metadata=meta(help="night begins", check=_hhmm))
    night_end: str = field(default="06:00", metadata=meta(help="night ends", check=_hhmm))
    bed_exit_no_return_min: float = field(
        default=30.0, metadata=meta(help="out of bed at night longer than this alarms", min=1)
    )
    not_up_by: str = field(
        default="10:00", metadata=meta(help="not out of bed by this time alarms", check=_hhmm)
    )
    night_door: bool = field(default=True, metadata=meta(help="alarm on the front door at night"))
    night_door_start: str = field(
        default="00:00", metadata=meta(help="night_door window begins", check=_hhmm)
    )
    night_door_end: str = field(
        default="05:00", metadata=meta(help="night_door window ends", check=_hhmm)
    )
    entrance_door: str = field(
        default="",
        metadata=meta(help="sensor id of the front door (default: a door in an entrance room)"),
    )
    bed_exit_quiet_min: float = field(
        default=60.0, metadata=meta(help="bed_exit_no_return also needs this much quiet (0: off)", min=0)
    )
    bed_min_occupied_min: float = field(
        default=10.0, metadata=meta(help="a bed stay shorter than this is not a night in bed", min=0)
    )
    not_up: bool = field(default=True, metadata=meta(help="alarm when not up by the not-up time"))
    not_up_latest: str = field(
        default="12:00", metadata=meta(help="learned not-up time never later than this", check=_hhmm)
    )
    not_up_margin_min: float = field(
        default=60.0, metadata=meta(help="added to the latest learned getting-up time", min=0)
    )
    night_door_after_sleep_min: float = field(
        default=60.0,
        metadata=meta(
            help="night_door only if someone was in bed, or all was quiet this long, before (0: any)",
            min=0,
        ),
    )
    night_door_grace_min: float = field(
        default=10.0, metadata=meta(help="night door alarms if no one is back inside within this", min=0)
    )


@dataclass(frozen=True, slots=True)
class FallConfig:
    enabled: bool = field(default=True, metadata=meta(help="run pendant fall detection"))
    threshold: float = field(
        default=0.5, metadata=meta(help="model score that makes a fall candidate", min=0, max=1)
    )
    confirm_still_s: float = field(
        default=10.0, metadata=meta(help="stillness after impact that confirms a fall", min=0)
    )
    cancel_window_s: float = field(
        default=30.0, metadata=meta(help="the wearer may cancel with I'm OK this long", min=0)
    )
    model_path: str = field(default="", metadata=meta(help="override the shipped model"))


@dataclass(frozen=True, slots=True)
class DetectionConfig:
    inactivity: InactivityConfig = field(default_factory=InactivityConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    fall: FallConfig = field(default_factory=FallConfig)


@dataclass(frozen=True, slots=True)
class BleConfig:
    adapter: str = field(
        default="hci0", metadata=meta(help="Bluetooth adapter to scan with", pattern=r"^hci\d+$")
    )
    scanning_mode: str = field(
        default="passive",
        metadata=meta(
            help="passive (falls back to active where BlueZ has no advertisement monitor) "
            "or active",
            pattern=r"^(passive|active)$",
        ),
    )
    dedup_window_s: float = field(
        default=30.0,
        metadata=meta(help="a repeated BTHome packet id within this is one event", min=1, max=600),
    )
    heartbeat_s: float = field(
        default=60.0,
        metadata=meta(help="longest gap between readings of a sensor that is heard", min=5),
    )
    watchdog_silence_s: float | None = field(
        default=None,
        metadata=meta(
            help="no advertisement this long restarts the scanner (default: the shortest "
            "expected_interval_s of the BLE sensors, at least 120, else 600)",
            min=10,
        ),
    )
    low_battery_pct: float = field(
        default=20.0,
        metadata=meta(help="battery below this raises low_battery once", min=1, max=99),
    )


def _phone_numbers(value: Any) -> str | None:
    for n in value:
        if not re.match(r"^\+?[0-9]{3,20}$", n):
            return f'phone numbers like "+8613800138000" (digits, optional leading +): {n!r}'
    return None


@dataclass(frozen=True, slots=True)
class SmsConfig:
    port: str | None = field(
        default=None,
        metadata=meta(help="AT port of the cellular modem, e.g. /dev/ttyUSB2 (Quectel EC200/EC25); "
                      "unset: no SMS"),
    )
    baudrate: int = field(default=115200, metadata=meta(help="AT port speed", min=1200))
    recipients: tuple[str, ...] = field(
        default=(),
        metadata=meta(help="phone numbers texted when a critical alert is not handled",
                      check=_phone_numbers),
    )
    timeout_s: float = field(
        default=60.0, metadata=meta(help="longest wait for the network to take one SMS", min=5, max=300)
    )
    max_per_alert: int = field(
        default=5,
        metadata=meta(help="texts per recipient for one alert at most (the escalation goes on "
                      "in the log)", min=1, max=100),
    )


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    language: str = field(
        default="zh", metadata=meta(help="language of SMS and messages: zh or en", pattern=r"^(zh|en)$")
    )
    sms: SmsConfig = field(default_factory=SmsConfig)
    daily_summary_at: str | None = field(
        default=None,
        metadata=meta(help='home time of the family\'s daily "all normal" by SMS and apprise, '
                      '"HH:MM"; unset: none', check=_hhmm),
    )


@dataclass(frozen=True, slots=True)
class HealthConfig:
    enabled: bool = field(
        default=True, metadata=meta(help="watch the gateway's own power, disk, clock and temperature")
    )
    interval_s: float = field(default=30.0, metadata=meta(help="how often to look", min=1, max=3600))
    disk_min_free_mb: float = field(
        default=200.0, metadata=meta(help="free disk space below this raises gateway_health", min=1)
    )
    clock_grace_s: float = field(
        default=900.0, metadata=meta(help="clock not NTP-synced this long after start raises "
                                     "gateway_health", min=60)
    )
    temp_max_c: float = field(
        default=80.0, metadata=meta(help="SoC temperature that raises gateway_health (the Pi "
                                    "throttles from 80)", min=40, max=110)
    )


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = field(
        default="INFO",
        metadata=meta(
            help="DEBUG, INFO, WARNING or ERROR", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$"
        ),
    )
    format: str = field(
        default="auto",
        metadata=meta(
            help="text, json, or auto (text on a terminal)", pattern=r"^(auto|text|json)$"
        ),
    )


@dataclass(frozen=True, slots=True)
class SecretsConfig:
    mqtt_username: str | None = field(default=None, metadata=meta(help="MQTT user name"))
    mqtt_password: str | None = field(default=None, metadata=meta(help="MQTT password"))
    keys: Mapping[str, str] = field(
        default_factory=dict, metadata=meta(help="BTHome bind keys (32 hex digits) by name")
    )
    sms_pin: str | None = field(
        default=None, metadata=meta(help="PIN of the modem's SIM card, if it has one", pattern=r"^\d{4,8}$")
    )
    notify_urls: tuple[str, ...] = field(
        default=(),
        metadata=meta(help="apprise URLs (WeCom or DingTalk robot, e-mail, ...) also told of "
                      "unhandled critical alerts"),
    )


@dataclass(frozen=True, slots=True)
class Config:
    gateway: GatewayConfig
    rooms: tuple[RoomConfig, ...] = ()
    sensors: tuple[SensorConfig, ...] = ()
    uplink: UplinkConfig = field(default_factory=UplinkConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    ble: BleConfig = field(default_factory=BleConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    secrets_file: str | None = field(default=None, metadata=meta(help="path of the secrets file"))
    secrets: SecretsConfig = field(default_factory=SecretsConfig, metadata={"internal": True})
    source: str = field(default="", metadata={"internal": True})

    def sensor_list(self) -> tuple[Sensor, ...]:
        return tuple(s.to_sensor() for s in self.sensors)

    def sensor(self, sensor_id: str) -> Sensor | None:
        for s in self.sensors:
            if s.id == sensor_id:
                return s.to_sensor()
        return None

    def room(self, room_id: str) -> RoomConfig | None:
        return next((r for r in self.rooms if r.id == room_id), None)

    @property
    def client_id(self) -> str:
        return self.uplink.client_id or f"anxin-{self.gateway.id}"


# --------------------------------------------------------------------------- locating lines

_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY_RE = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+)\s*=")


def _locate_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Map key paths to 1-based line numbers; array-of-table items get their index."""
    where: dict[tuple[str | int, ...], int] = {}
    counts: dict[tuple[str | int, ...], int] = {}
    table: tuple[str | int, ...] = ()
    for lineno, line in enumerate(text.splitlines(), start=1):
        header = _HEADER_RE.match(line)
        if header:
            names: tuple[str | int, ...] = tuple(
                p.strip().strip("\"'") for p in header[2].split(".")
            )
            if header[1] == "[[":
                idx = counts.get(names, 0)
                counts[names] = idx + 1
                table = (*names, idx)
            else:
                table = names
            where.setdefault(table, lineno)
            continue
        key = _KEY_RE.match(line)
        if key:
            parts = tuple(p.strip().strip("\"'") for p in key[1].split("."))
            where.setdefault((*table, *parts), lineno)
    return where


class _Ctx:
    def __init__(self, path: str, lines: dict[tuple[str | int, ...], int]) -> None:
        self.path = path
        self.lines = lines

    def line_of(self, keypath: tuple[str | int, ...]) -> int | None:
        probe = keypath
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return None

    def error(self, keypath: tuple[str | int, ...], message: str) -> ConfigError:
        dotted = ".".join(f"[{p}]" if isinstance(p, int) else p for p in keypath).replace(".[", "[")
        return ConfigError(message, path=self.path, line=self.line_of(keypath), key=dotted or None)


# --------------------------------------------------------------------------- conversion


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if origin is tuple:
        return "a list"
    if dataclasses.is_dataclass(tp):
        return "a table"
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _convert(ctx: _Ctx, keypath: tuple[str | int, ...], value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(ctx, keypath, value, inner[0])
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ctx.error(keypath, f"expected a table, got {type(value).__name__}")
        return _build(ctx, keypath, value, typing.cast(type, tp))
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ctx.error(
                keypath, f"expected a list ([[{keypath[-1]}]] tables), got {type(value).__name__}"
            )
        return tuple(_convert(ctx, (*keypath, i), v, item_tp) for i, v in enumerate(value))
    if origin in (Mapping, dict) or tp is Mapping:
        if not isinstance(value, dict):
            raise ctx.error(keypath, f"expected a table, got {type(value).__name__}")
        bad = [k for k, v in value.items() if not isinstance(v, str)]
        if bad:
            raise ctx.error((*keypath, bad[0]), "expected a string")
        return types.MappingProxyType(dict(value))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ctx.error(keypath, f"got {value!r}, expected {_type_name(tp)}") from None
    if tp is bool:
        if not isinstance(value, bool):
            raise ctx.error(keypath, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ctx.error(keypath, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ctx.error(keypath, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ctx.error(keypath, f"expected a string, got {value!r}")
        return value
    raise ctx.error(keypath, f"unsupported setting type {tp!r}")  # pragma: no cover


def _check_field(
    ctx: _Ctx, keypath: tuple[str | int, ...], value: Any, md: Mapping[str, Any]
) -> None:
    if value is None or not md:
        return
    lo, hi = md.get("min"), md.get("max")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if lo is not None and value < lo:
            raise ctx.error(keypath, f"got {value}, expected at least {lo:g}")
        if hi is not None and value > hi:
            raise ctx.error(keypath, f"got {value}, expected at most {hi:g}")
    pattern = md.get("pattern")
    if pattern and isinstance(value, str) and not re.match(pattern, value):
        raise ctx.error(keypath, f"got {value!r}, expected {md['help']} (matching {pattern})")
    check = md.get("check")
    if check is not None:
        expected = check(value)
        if expected:
            raise ctx.error(keypath, f"got {value!r}, expected {expected}")


def _build(ctx: _Ctx, keypath: tuple[str | int, ...], data: dict[str, Any], cls: type) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ctx.error(
                (*keypath, key), f"unknown key; {hint}expected one of: {', '.join(sorted(fields))}"
            )
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        kp = (*keypath, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ctx.error(
                    kp, f"missing; expected {_type_name(hints[name])}: {f.metadata.get('help', '')}"
                )
            continue
        value = _convert(ctx, kp, data[name], hints[name])
        _check_field(ctx, kp, value, f.metadata)
        kwargs[name] = value
    return cls(**kwargs)


def _cross_check(ctx: _Ctx, cfg: Config) -> None:
    room_ids: dict[str, int] = {}
    for i, room in enumerate(cfg.rooms):
        if room.id in room_ids:
            raise ctx.error(("rooms", i, "id"), f"duplicate room id {room.id!r}")
        room_ids[room.id] = i
    seen: dict[str, int] = {}
    addresses: dict[str, int] = {}
    for i, s in enumerate(cfg.sensors):
        if s.id in seen:
            raise ctx.error(
                ("sensors", i, "id"),
                f"duplicate sensor id {s.id!r} (first at sensors[{seen[s.id]}])",
            )
        seen[s.id] = i
        norm = f"{s.transport}:{s.address.lower()}"
        if norm in addresses and s.transport is not Transport.REPLAY:
            raise ctx.error(
                ("sensors", i, "address"),
                f"address {s.address!r} already used by sensors[{addresses[norm]}]",
            )
        addresses[norm] = i
        if s.room not in room_ids:
            known = ", ".join(room_ids) or "none defined"
            raise ctx.error(("sensors", i, "room"), f"unknown room {s.room!r}; rooms: {known}")
        if s.transport is Transport.BLE and not re.match(
            r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$", s.address
        ):
            raise ctx.error(
                ("sensors", i, "address"),
                f'got {s.address!r}, expected a BLE MAC address like "A4:C1:38:12:34:56"',
            )
        if s.key is not None:
            if s.key not in cfg.secrets.keys:
                raise ctx.error(
                    ("sensors", i, "key"), f"bind key {s.key!r} is not in the secrets file [keys]"
                )
            if not re.match(r"^[0-9A-Fa-f]{32}$", cfg.secrets.keys[s.key]):
                raise ctx.error(
                    ("sensors", i, "key"),
                    f"bind key {s.key!r} in the secrets file is not 32 hex digits",
                )
    if cfg.uplink.reconnect_max_s < cfg.uplink.reconnect_min_s:
        raise ctx.error(("uplink", "reconnect_max_s"), "must not be less than reconnect_min_s")
    if cfg.detection.inactivity.max_limit_min < cfg.detection.inactivity.min_limit_min:
        raise ctx.error(
            ("detection", "inactivity", "max_limit_min"), "must not be less than min_limit_min"
        )
    inact = cfg.detection.inactivity
    if 0 < inact.day_busy_max_min < inact.min_limit_min:
        raise ctx.error(
            ("detection", "inactivity", "day_busy_max_min"),
            f"must be 0 (off) or at least min_limit_min ({inact.min_limit_min:g})",
        )
    if cfg.storage.reserve_mb >= cfg.storage.budget_mb:
        raise ctx.error(("storage", "reserve_mb"), "must be smaller than budget_mb")
    for key in ("tls_ca", "tls_cert", "tls_key"):
        value = getattr(cfg.uplink, key)
        if value and not Path(value).is_file():
            raise ctx.error(("uplink", key), f"file {value!r} does not exist")
    if cfg.notify.sms.port and not cfg.notify.sms.recipients:
        raise ctx.error(("notify", "sms", "recipients"), "a modem is set but nobody to text")
    if cfg.notify.sms.recipients and not cfg.notify.sms.port:
        raise ctx.error(("notify", "sms", "port"), "recipients are set but no modem port")
    if (cfg.uplink.tls_cert is None) != (cfg.uplink.tls_key is None):
        raise ctx.error(("uplink", "tls_cert"), "tls_cert and tls_key go together")


# --------------------------------------------------------------------------- entry points


def _parse_toml(path: str, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(
            f"not valid TOML: {exc}", path=path, line=int(m[1]) if m else None
        ) from None


def load_secrets(path: Path) -> SecretsConfig:
    """Load the secrets file, refusing one that others can read or write."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError("secrets file does not exist", path=str(path)) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretsPermissionError(
            f"secrets file is accessible by group or others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run: chmod 600 {path}",
            path=str(path),
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the secrets file: {exc}", path=str(path)) from None
    data = _parse_toml(str(path), text)
    ctx = _Ctx(str(path), _locate_lines(text))
    secrets = typing.cast(SecretsConfig, _build(ctx, (), data, SecretsConfig))
    for name, value in secrets.keys.items():
        if not _BIND_KEY_RE.match(value):
            raise ctx.error(("keys", name), "expected a BTHome bind key: 32 hex digits")
    return secrets


def loads(text: str, *, path: str = "<string>", secrets: SecretsConfig | None = None) -> Config:
    """Parse and validate a config from TOML text.

    A relative ``secrets_file`` resolves beside ``path``.
    """
    data = _parse_toml(path, text)
    ctx = _Ctx(path, _locate_lines(text))
    if "gateway" not in data:
        raise ConfigError("missing [gateway] table with id and home", path=path, key="gateway")
    cfg = typing.cast(Config, _build(ctx, (), data, Config))
    if secrets is None and cfg.secrets_file:
        spath = Path(cfg.secrets_file)
        if not spath.is_absolute():
            spath = Path(path).parent / spath
        try:
            secrets = load_secrets(spath)
        except ConfigError as exc:
            if exc.path == str(spath) and exc.line is None and "does not exist" in exc.reason:
                raise ctx.error(
                    ("secrets_file",), f"secrets file {str(spath)!r} does not exist"
                ) from None
            raise
    if secrets is not None:
        cfg = dataclasses.replace(cfg, secrets=secrets)
    cfg = dataclasses.replace(cfg, source=path)
    _cross_check(ctx, cfg)
    return cfg


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the config file (default ``/etc/anxin/gateway.toml`` or ``$ANXIN_CONFIG``)."""
    p = Path(path or os.environ.get("ANXIN_CONFIG") or DEFAULT_PATH)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file does not exist (pass --config FILE)", path=str(p)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the config file: {exc.strerror}", path=str(p)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file is not UTF-8 text: {exc}", path=str(p)) from None
    return loads(text, path=str(p))


def to_dict(cfg: Config, *, mask_secrets: bool = True) -> dict[str, Any]:
    """The effective config as plain data (for `anxin config check` and `cmd/config`)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    out = plain(cfg)
    if mask_secrets:
        sec = out["secrets"]
        for k in ("mqtt_username", "mqtt_password", "sms_pin"):
            if sec.get(k):
                sec[k] = "***"
        sec["keys"] = dict.fromkeys(sec.get("keys", {}), "***")
        # A URL's scheme says which service; the rest holds its token.
        sec["notify_urls"] = [u.split("://")[0] + "://***" for u in sec.get("notify_urls", [])]
    return typing.cast(dict[str, Any], out)


def reference_markdown() -> str:
    """The config reference as Markdown tables, one per section, from the dataclasses."""
    sections: list[tuple[str, type]] = [
        ("[gateway]", GatewayConfig),
        ("[[rooms]]", RoomConfig),
        ("[[sensors]]", SensorConfig),
        ("[uplink]", UplinkConfig),
        ("[storage]", StorageConfig),
        ("[detection.inactivity]", InactivityConfig),
        ("[detection.rules]", RulesConfig),
        ("[detection.fall]", FallConfig),
        ("[notify]", NotifyConfig),
        ("[notify.sms]", SmsConfig),
        ("[health]", HealthConfig),
        ("[logging]", LoggingConfig),
        ("secrets file (top level and [keys])", SecretsConfig),
    ]
    out: list[str] = []
    top = [f for f in dataclasses.fields(Config) if f.name == "secrets_file"]
    out.append("| top-level key | type | default | meaning |\n| --- | --- | --- | --- |\n")
    out.extend(_ref_row(f, Config) for f in top)
    for title, cls in sections:
        out.append(f"\n**{title}**\n\n| key | type | default | meaning |\n| --- | --- | --- | --- |\n")
        out.extend(_ref_row(f, cls) for f in dataclasses.fields(cls) if not f.metadata.get("internal"))
    return "".join(out)


def _ref_row(f: dataclasses.Field[Any], cls: type) -> str:
    hint = typing.get_type_hints(cls)[f.name]
    if f.default is not dataclasses.MISSING:
        default = "none" if f.default is None else f"`{json_default(f.default)}`"
    elif f.default_factory is not dataclasses.MISSING:
        default = "(table)"
    else:
        default = "**required**"
    help_text = str(f.metadata.get("help", "")).replace("|", "\\|")
    bounds = []
    if f.metadata.get("min") is not None:
        bounds.append(f"min {f.metadata['min']:g}")
    if f.metadata.get("max") is not None:
        bounds.append(f"max {f.metadata['max']:g}")
    if bounds:
        help_text += f" ({', '.join(bounds)})"
    return f"| `{f.name}` | {_type_name(hint).replace('|', '/')} | {default} | {help_text} |\n"


def json_default(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(json_default(v) for v in value) + "]"
    return str(value)


def default_config(gateway_id: str = "demo-gw", home: str = "demo-home") -> Config:
    """An embedded config for demos: no file needed."""
    return Config(gateway=GatewayConfig(id=gateway_id, home=home))
