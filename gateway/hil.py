"""Hardware-in-the-loop scenarios: drive the real gateway process, check what the platform gets.

A scenario (YAML) says what the emulated home does and what must come out::

    name: emergency button reaches the platform
    duration_s: 15
    steps:
      - {at: 2, sensor: button-bedside, kind: button, value: press}
      - {at: 5, broker: stop}
      - {at: 9, broker: start}
      - {at: 10, gateway: kill}        # SIGKILL, then restarted at once
      - {at: 12, pendant_fall: {sensor: pendant, walk_s: 3, still_s: 12}}  # a 50 Hz stream
      - {at: 3, device: bedpad, action: occupy}   # real firmware on an emulated board
    expect:
      - {alert: emergency_button, after: 2, within_ms: 2000, at_most: 1}
      - {event: {sensor: bed-pad, kind: in_bed, value: true}, after: 3, within_ms: 8000}
    only_expected: true                # any other alert type fails the scenario
    ack: true                          # the rig acks critical alerts as an operator would

The runner starts a real broker (or uses ``--broker``), the real gateway process (``anxin
run``) on the scenario's config with the sensor steps replayed on a shared time base, and a
subscriber in the platform's place. Latency is from the step's time to the alert's arrival
at the subscriber. Results: a readable report, JUnit XML and JSON. Exit status 0 only when
every expectation held.

Sensor steps (``sensor:``) are readings replayed inside the gateway process. Device steps
(``device:``) act on the real firmware in ``firmware_stubs/`` run by the host shim as a
process (``python -m firmware_stubs.host``), speaking the real wire protocols:

* ``bedpad`` (actions ``occupy``, ``vacate``, ``unplug_mat``: the mat's voltage at the ADC):
  its UART is a pseudo-terminal, linked as ``{bedpad_port}`` in the config; the gateway
  opens it with its serial driver as it would ``/dev/ttyUSB0``.
* ``button`` (actions ``press``, ``long_press``: GPIO3 to ground): its encrypted BTHome
  adverts become ``ServiceData`` changes on a mock BlueZ (python-dbusmock's bluez5
  template) on a private system bus; the gateway gets ``DBUS_SYSTEM_BUS_ADDRESS`` so its
  unmodified bleak hears them. The config names ``{button_address}`` and
  ``{secrets_file}``, which the rig writes (mode 600) with the board's bind key.
* ``pendant`` (action ``cancel``: "I'm OK"; or ``recording: F01_SA01_R01``, optionally
  ``seconds: N``): its ADXL345 on the emulated I2C bus replays a SisFall recording
  (200 Hz resampled to 50 Hz, read from ``../shared/data/sisfall`` or $ANXIN_SISFALL_DIR,
  never copied); its GATT server is exported in the mock BlueZ (``GattService1``,
  ``GattCharacteristic1``), the gateway's bleak connects and calls ``StartNotify``, and
  each notification is a ``Value`` ``PropertiesChanged``, as bluetoothd delivers them. The
  config names ``{pendant_address}``. Without the data the scenario fails, or with
  ``--skip-missing-data`` is skipped.

The gateway then opens only the emulated transports (``--no-ble`` / ``--no-serial``; with
no device steps, ``--no-hardware``). An ``event`` expectation is met by a reading with that
sensor, kind and value in an ``event`` message at the subscriber (latency as for alerts).
See ``tests/hil/bedpad_firmware.yaml`` and ``tests/hil/button_firmware.yaml``.

A scenario may put the gateway on a rig clock (``clock: {start: "2026-03-02T02:00:00+08:00",
speed: 600}``, see :class:`gateway.clock.ScaledClock`): then ``at``, ``after`` and
``duration_s`` are scenario time, in seconds or as local times of day (``"02:10"``, the
first at or after the start) or ISO 8601 times, and budgets (``within_ms``) are scenario
time too; the report gives the real latency beside it. Sensor steps, actions and board
stimuli happen at the matching real times; a 50 Hz pendant stream needs speed 1.

With ``--config`` pointing at a real gateway config (real serial ports, a real BLE adapter),
sensor steps are not emulated: the rig or a person performs them at their times.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from gateway.clock import RIG_CLOCK_ANCHOR, RIG_CLOCK_MAX_SPEED, RIG_CLOCK_SPEED, RIG_CLOCK_START
from gateway.errors import ConfigError

_SOURCE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOME = Path(__file__).resolve().parent / "data" / "hil_home.toml"


@dataclass(frozen=True, slots=True)
class SensorStep:
    at_s: float
    sensor: str
    kind: str
    value: Any
    extra: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ActionStep:
    at_s: float
    target: str  # "broker" or "gateway"
    action: str  # stop/start/kill


@dataclass(frozen=True, slots=True)
class DeviceStep:
    """A stimulus for an emulated board running real firmware (``device: bedpad``)."""

    at_s: float
    device: str  # a key of FIRMWARE
    action: str  # a key of FIRMWARE[device].actions, or "recording"
    recording: str = ""  # pendant: a SisFall recording (F01_SA01_R01) its accelerometer replays
    seconds: float | None = None  # only the first seconds of the recording


@dataclass(frozen=True, slots=True)
class Firmware:
    """How the rig runs one device's firmware under the host shim, and what its actions do."""

    folder: str  # firmware_stubs/<folder>/main.py
    transport: str  # "serial": UART1 on a pty; "ble": adverts (and GATT) through a mock BlueZ
    args: tuple[str, ...]  # extra arguments for ``python -m firmware_stubs.host``
    actions: dict[str, tuple[str, ...]]  # action -> stdin commands of the host shim
    mac: str = ""  # BLE: the board's address (the config's {<device>_address})
    gatt: bool = False  # BLE: a GATT server the gateway connects to (the pendant)


# Mat voltages at the bed pad's ADC (GPIO4): 1.6 V reads about 42000 counts (above ON_LEVEL
# 20000, someone lies on it), 0.2 V about 5200 (below OFF_LEVEL, empty but plugged in),
# 0 V an open circuit (the mat's plug pulled).
FIRMWARE: dict[str, Firmware] = {
    "bedpad": Firmware("bedpad", "serial", ("--adc-uv", "200000"), {
        "occupy": ("adc 4 1600000",),
        "vacate": ("adc 4 200000",),
        "unplug_mat": ("adc 4 0",),
    }),
    "button": Firmware("button", "ble", ("--adc-uv", "1600000"), {
        "press": ("pin 3 0", "wait 120", "pin 3 release"),
        "long_press": ("pin 3 0", "wait 1200", "pin 3 release"),
    }, mac="A4:C1:38:F1:00:01"),
    # The pendant's battery at 1.9 V through its 1:2 divider (3.8 V, 63 %); "cancel" is the
    # wearer pressing "I'm OK"; a ``recording`` step replays SisFall through its ADXL345.
    "pendant": Firmware("pendant", "ble", ("--adc-uv", "1900000"), {
        "cancel": ("pin 3 0", "wait 120", "pin 3 release"),
    }, mac="A4:C1:38:F1:00:05", gatt=True),
}
BUTTON_FIRMWARE_MAC = FIRMWARE["button"].mac
PENDANT_FIRMWARE_MAC = FIRMWARE["pendant"].mac
SISFALL_ENV = "ANXIN_SISFALL_DIR"
SISFALL_RATE_HZ = 200
PENDANT_RATE_HZ = 50
BUTTON_FIRMWARE_KEY = "5c2e7a91d04b3f68a1e9c7d2b4f60813"  # a test key, not a real device's


@dataclass(frozen=True, slots=True)
class Expectation:
    alert: str  # the alert type; for an event expectation, a label naming the reading
    after_s: float
    within_ms: float
    state: str = "raised"
    min_count: int = 1
    event: tuple[str, str, Any] | None = None  # (sensor, kind, value) of a reading at the platform
    max_count: int | None = None  # "at_most": e.g. once, not on every repeated transmission


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    path: Path
    duration_s: float
    sensor_steps: tuple[SensorStep, ...]
    actions: tuple[ActionStep, ...]
    device_steps: tuple[DeviceStep, ...]
    expect: tuple[Expectation, ...]
    only_expected: bool
    config: Path
    ack: bool
    clock_start: datetime | None = None  # ``clock: {start, speed}``: the gateway runs on a rig clock
    speed: float = 1.0

    def real_s(self, scenario_s: float) -> float:
        """Real seconds after the start for a scenario time (they differ on a rig clock)."""
        return scenario_s / self.speed

    @property
    def devices(self) -> tuple[str, ...]:
        """The emulated boards this scenario runs, in a stable order."""
        return tuple(sorted({d.device for d in self.device_steps}))


@dataclass(slots=True)
class Outcome:
    expectation: Expectation
    ok: bool
    latency_ms: float | None  # in scenario time, as the budget
    detail: str
    real_latency_ms: float | None = None


@dataclass(slots=True)
class Result:
    scenario: Scenario
    outcomes: list[Outcome] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    gateway_exit: list[int | None] = field(default_factory=list)
    error: str = ""
    skipped: str = ""  # why it did not run (data absent and the rig said --skip-missing-data)

    @property
    def ok(self) -> bool:
        return not self.error and not self.unexpected and all(o.ok for o in self.outcomes)


def _need(obj: dict[str, Any], key: str, where: str, path: Path) -> Any:
    if key not in obj:
        raise ConfigError(f"missing '{key}'", path=str(path), key=where)
    return obj[key]


def _pendant_fall(at: float, spec: Any, where: str, path: Path) -> list[SensorStep]:
    """A pendant's 50 Hz stream (1 s notifications): walking, a fall, then lying still."""
    from gateway.demo.story import pendant_stream

    if not isinstance(spec, dict):
        raise ConfigError("expected {sensor, walk_s, still_s}", path=str(path), key=where)
    sensor = str(_need(spec, "sensor", where, path))
    walk = _num(spec.get("walk_s", 3), f"{where}.walk_s", path)
    still = _num(spec.get("still_s", 12), f"{where}.still_s", path)
    return [SensorStep(s.at_s, sensor, s.kind, s.value, dict(s.extra))
            for s in pendant_stream(at, walk + 1 + still, fall_at=walk)]


class _ScenarioLoader(yaml.SafeLoader):
    """Safe YAML where ``22:10`` is the time of day it looks like, not YAML 1.1's 1330."""


_TIME_OF_DAY = re.compile(r"^\d{1,2}:\d{2}(?::\d{2})?$")
_ScenarioLoader.yaml_implicit_resolvers = {
    ch: [("tag:yaml.org,2002:str", _TIME_OF_DAY), *resolvers] if ch.isdigit() else list(resolvers)
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _clock(spec: Any, path: Path) -> tuple[datetime | None, float]:
    """``clock: {start: "2026-03-02T02:00:00+08:00", speed: 120}`` -> (start, speed)."""
    if spec is None:
        return None, 1.0
    if not isinstance(spec, dict):
        raise ConfigError("expected {start, speed}", path=str(path), key="clock")
    start = _need(spec, "start", "clock", path)
    if not isinstance(start, datetime):
        try:
            start = datetime.fromisoformat(str(start))
        except ValueError:
            raise ConfigError(f"expected an ISO 8601 time, got {start!r}", path=str(path), key="clock.start") from None
    if start.tzinfo is None:
        raise ConfigError("the start needs a UTC offset (+08:00)", path=str(path), key="clock.start")
    speed = _num(spec.get("speed", 1), "clock.speed", path)
    if not 0 < speed <= RIG_CLOCK_MAX_SPEED:
        raise ConfigError(f"expected a factor in (0, {RIG_CLOCK_MAX_SPEED:g}], got {speed:g}", path=str(path),
                          key="clock.speed")
    return start, speed


def _time(value: Any, where: str, path: Path, start: datetime | None) -> float:
    """Scenario seconds: a number, or with a clock a local time ("02:10": the first 02:10 at
    or after the start, in the start's UTC offset) or an ISO 8601 time."""
    if isinstance(value, str | datetime) and start is not None:
        if isinstance(value, str) and _TIME_OF_DAY.match(value):
            h, m, *sec = (int(p) for p in value.split(":"))
            if h > 23 or m > 59 or (sec and sec[0] > 59):
                raise ConfigError(f"not a time of day: {value!r}", path=str(path), key=where)
            at = start.replace(hour=h, minute=m, second=sec[0] if sec else 0, microsecond=0)
            if at < start:
                at += timedelta(days=1)
            return (at - start).total_seconds()
        try:
            at = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"expected seconds, \"HH:MM\" or an ISO 8601 time, got {value!r}", path=str(path),
                              key=where) from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=start.tzinfo)
        if at < start:
            raise ConfigError(f"{value!r} is before the clock's start", path=str(path), key=where)
        return (at - start).total_seconds()
    return _num(value, where, path)


def _num(value: Any, where: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"expected a number >= 0, got {value!r}", path=str(path), key=where)
    return float(value)


def _device_step(at: float, step: dict[str, Any], where: str, path: Path) -> DeviceStep:
    device = str(step["device"])
    if device not in FIRMWARE:
        raise ConfigError(f"got {device!r}, expected one of {sorted(FIRMWARE)}", path=str(path),
                          key=f"{where}.device")
    if "recording" in step:
        if device != "pendant":
            raise ConfigError("only the pendant replays recordings", path=str(path), key=f"{where}.recording")
        name = str(step["recording"])
        if not re.fullmatch(r"[DF]\d\d_S[AE]\d\d_R\d\d", name):
            raise ConfigError(f"expected a SisFall recording such as F01_SA01_R01, got {name!r}", path=str(path),
                              key=f"{where}.recording")
        seconds = _num(step["seconds"], f"{where}.seconds", path) if "seconds" in step else None
        return DeviceStep(at, device, "recording", name, seconds)
    action = str(_need(step, "action", where, path))
    allowed = FIRMWARE[device].actions
    if action not in allowed:
        raise ConfigError(f"got {action!r}, expected one of {sorted(allowed)}", path=str(path),
                          key=f"{where}.action")
    return DeviceStep(at, device, action)


def _event(spec: Any, where: str, path: Path) -> tuple[str, str, Any]:
    if not isinstance(spec, dict):
        raise ConfigError("expected {sensor, kind, value}", path=str(path), key=where)
    return (str(_need(spec, "sensor", where, path)), str(_need(spec, "kind", where, path)),
            _need(spec, "value", where, path))


def load_scenario(path: Path) -> Scenario:
    """Parse and check a scenario file; errors name the file and the key."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_ScenarioLoader)  # noqa: S506 - a SafeLoader subclass
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read scenario: {exc}", path=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("a scenario is a YAML mapping", path=str(path))
    start, speed = _clock(data.get("clock"), path)
    sensor_steps: list[SensorStep] = []
    actions: list[ActionStep] = []
    device_steps: list[DeviceStep] = []
    for i, step in enumerate(data.get("steps") or []):
        where = f"steps[{i}]"
        if not isinstance(step, dict):
            raise ConfigError("a step is a mapping", path=str(path), key=where)
        at = _time(_need(step, "at", where, path), f"{where}.at", path, start)
        if ("pendant_fall" in step or step.get("device") == "pendant") and speed != 1:
            raise ConfigError("a 50 Hz pendant stream needs real time (no clock, or speed 1)", path=str(path),
                              key=where)
        if "pendant_fall" in step:
            sensor_steps.extend(_pendant_fall(at, step["pendant_fall"], f"{where}.pendant_fall", path))
            continue
        if "device" in step:
            device_steps.append(_device_step(at, step, where, path))
            continue
        if "broker" in step or "gateway" in step:
            target = "broker" if "broker" in step else "gateway"
            action = str(step[target])
            allowed = {"broker": {"stop", "start"}, "gateway": {"kill", "restart"}}[target]
            if action not in allowed:
                raise ConfigError(f"got {action!r}, expected one of {sorted(allowed)}", path=str(path),
                                  key=f"{where}.{target}")
            actions.append(ActionStep(at, target, action))
        else:
            sensor_steps.append(SensorStep(
                at, str(_need(step, "sensor", where, path)), str(_need(step, "kind", where, path)),
                step.get("value"), dict(step.get("extra") or {}),
            ))
    expect: list[Expectation] = []
    for i, exp in enumerate(data.get("expect") or []):
        where = f"expect[{i}]"
        if not isinstance(exp, dict):
            raise ConfigError("an expectation is a mapping", path=str(path), key=where)
        event = _event(exp["event"], f"{where}.event", path) if "event" in exp else None
        expect.append(Expectation(
            alert=f"event {event[0]} {event[1]}={json.dumps(event[2])}" if event
            else str(_need(exp, "alert", where, path)),
            after_s=_time(_need(exp, "after", where, path), f"{where}.after", path, start),
            within_ms=_num(_need(exp, "within_ms", where, path), f"{where}.within_ms", path),
            state=str(exp.get("state", "raised")),
            min_count=int(exp.get("count", 1)),
            event=event,
            max_count=int(exp["at_most"]) if "at_most" in exp else None,
        ))
    config = Path(data["config"]) if data.get("config") else DEFAULT_HOME
    if not config.is_absolute():
        config = path.parent / config
    return Scenario(
        name=str(data.get("name") or path.stem),
        path=path,
        duration_s=_time(_need(data, "duration_s", "duration_s", path), "duration_s", path, start),
        sensor_steps=tuple(sorted(sensor_steps, key=lambda s: s.at_s)),
        actions=tuple(sorted(actions, key=lambda a: a.at_s)),
        device_steps=tuple(sorted(device_steps, key=lambda d: d.at_s)),
        expect=tuple(expect),
        only_expected=bool(data.get("only_expected", True)),
        config=config,
        ack=bool(data.get("ack", True)),
        clock_start=start,
        speed=speed,
    )


class MissingDataError(ConfigError):
    """A scenario needs a data set that is not beside the checkout (``--skip-missing-data`` skips it)."""


def sisfall_dir() -> Path:
    """Where SisFall is: $ANXIN_SISFALL_DIR, else ``../shared/data/sisfall`` beside the checkout."""
    return Path(os.environ.get(SISFALL_ENV) or _SOURCE_ROOT.parent / "shared" / "data" / "sisfall")


def load_recording(name: str, seconds: float | None = None, data_dir: Path | None = None) -> list[tuple[int, int, int]]:
    """One SisFall recording as the pendant's ADXL345 would give it: counts at 50 Hz.

    SisFall's waist ADXL345 is the pendant's part at the same full-resolution scale (1/256 g
    a count); its 200 Hz is brought to 50 Hz with an anti-alias filter, then rounded and
    held to the part's 13-bit range. The data is read where it lies, never copied.
    """
    import numpy as np

    from gateway.detect.fall_features import resample_200_to_50

    npz = (data_dir or sisfall_dir()) / "sisfall_adxl345_200hz.npz"
    if not npz.is_file():
        raise MissingDataError(f"SisFall data not found at {npz}: put the shared data beside the checkout "
                               f"(../shared/data/sisfall) or set {SISFALL_ENV}")
    with np.load(npz) as data:
        files = [Path(str(f)).stem for f in data["files"]]
        if name not in files:
            raise ConfigError(f"no recording {name} in {npz}")
        i = files.index(name)
        acc = data["acc"][data["offsets"][i]:data["offsets"][i + 1]]
    if seconds is not None:
        acc = acc[: int(seconds * SISFALL_RATE_HZ)]
    counts = np.clip(np.rint(resample_200_to_50(acc)), -4096, 4095).astype(int)
    return [(int(x), int(y), int(z)) for x, y, z in counts]


_SUBSCRIBERS = itertools.count(1)


class Subscriber:
    """The platform's place: records every message on the gateway's topics, acks alerts.

    This is the rig's side of the wire, so it uses paho's own network thread; the gateway
    under test is a separate process with its single asyncio loop.
    """

    def __init__(
        self, host: str, port: int, root: str, gw: str, *, ack: bool,
        ack_types: frozenset[str] | None = None,
        on_message: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.root, self.gw, self.ack = root, gw, ack
        self.ack_types = ack_types
        self.printer = on_message
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        # a persistent session, as a platform keeps: what the gateway publishes while this
        # client is still reconnecting after a broker restart is queued for it, not lost
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"hil-{os.getpid()}-{next(_SUBSCRIBERS)}",
                                  protocol=mqtt.MQTTv311, clean_session=False)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        self.client.connect_async(host, port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe(f"{self.root}/{self.gw}/#", qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            payload = {"raw": msg.payload.decode("utf-8", "replace")}
        record = {"t": time.time(), "topic": msg.topic, "payload": payload}
        with self._lock:
            self.messages.append(record)
        if self.printer is not None:
            self.printer(record)
        if self.ack and msg.topic.endswith("/alert") and isinstance(payload, dict) \
                and payload.get("state") == "raised" and payload.get("severity") == "critical" \
                and (self.ack_types is None or payload.get("type") in self.ack_types):
            client.publish(f"{self.root}/{self.gw}/cmd/ack",
                           json.dumps({"alert_id": payload.get("alert_id") or payload.get("id")}), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.messages)


def _write_session(path: Path, steps: tuple[SensorStep, ...], speed: float = 1.0) -> None:
    """The sensor steps as a replay session; offsets in real seconds (scenario time / speed)."""
    with path.open("w", encoding="utf-8") as fh:
        for s in steps:
            line: dict[str, Any] = {"offset_s": s.at_s / speed, "sensor": s.sensor, "kind": s.kind,
                                    "value": s.value}
            if s.extra:
                line["extra"] = s.extra
            fh.write(json.dumps(line) + "\n")


def _gateway_cmd(config: Path, session: Path | None, start_at: float, devices: tuple[str, ...] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "gateway", "run", "--config", str(config)]
    if session is not None:
        cmd += ["--replay", str(session), "--replay-start-at", f"{start_at:.6f}"]
        transports = {FIRMWARE[d].transport for d in devices}
        if not transports:
            cmd.append("--no-hardware")
        if "ble" not in transports and transports:
            cmd.append("--no-ble")
        if "serial" not in transports and transports:
            cmd.append("--no-serial")
    return cmd


class MockBlueZ:
    """python-dbusmock's bluez5 template on a private system bus: the air the gateway's bleak hears.

    ``push`` is one received advertisement: a ``ServiceData`` property change on the mock
    device, what bluetoothd emits. Needs dbus-daemon and the dev extra (python-dbusmock).
    """

    def __init__(self) -> None:
        try:  # imported by name: optional (the dev extra), and dbus-python ships no type hints
            dbus: Any = importlib.import_module("dbus")
            importlib.import_module("dbus.bus")
            dbusmock: Any = importlib.import_module("dbusmock")
        except ImportError as exc:
            raise ConfigError(f"BLE firmware devices need python-dbusmock and dbus-python ({exc})") from None
        self._dbus = dbus
        self._mockmod = dbusmock
        self.bus = dbusmock.PrivateDBus(dbusmock.BusType.SYSTEM)
        self.bus.start()
        self.mock = dbusmock.SpawnedMock.spawn_with_template(
            "bluez5", {"enable_monitor_api": True}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.conn = dbus.bus.BusConnection(self.bus.address)
        self.control = dbus.Interface(self.conn.get_object("org.bluez", "/"), "org.bluez.Mock")
        self.control.AddAdapter("hci0", "anxin-hil")
        self.devices: dict[str, Any] = {}
        self.chars: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return str(self.bus.address)

    def add_device(self, mac: str, name: str) -> None:
        dbus = self._dbus
        path = self.control.AddDevice("hci0", mac, name)
        dev = dbus.Interface(self.conn.get_object("org.bluez", path), self._mockmod.MOCK_IFACE)
        # The template declares these as arrays; BlueZ sends dictionaries (a{qv}, a{sv}).
        dev.UpdateProperties("org.bluez.Device1", {
            "ManufacturerData": dbus.Dictionary({}, signature="qv"),
            "ServiceData": dbus.Dictionary({}, signature="sv"),
        })
        self.devices[mac] = dev

    def push(self, mac: str, service_data: dict[str, bytes], rssi: int = -60) -> None:
        dbus = self._dbus
        data = dbus.Dictionary({u: dbus.Array(v, signature="y") for u, v in service_data.items()}, signature="sv")
        with self._lock:
            self.devices[mac].UpdateProperties("org.bluez.Device1", {"ServiceData": data, "RSSI": dbus.Int16(rssi)})

    def add_gatt(self, mac: str, services: dict[str, list[tuple[str, tuple[str, ...]]]]) -> None:
        """Give a device a GATT database, as bluetoothd exports it once services are resolved.

        ``services``: service UUID -> [(characteristic UUID, flags)]. Each characteristic
        answers ``StartNotify``/``StopNotify``/``ReadValue``/``WriteValue``; :meth:`notify`
        sets its ``Value``, whose ``PropertiesChanged`` is how bleak receives a notification.
        The device says ``ServicesResolved`` from the start: the template's ``Connect`` only
        flips ``Connected``, and bleak waits for both.
        """
        dbus, mockmod = self._dbus, self._mockmod
        char_iface, svc_iface = "org.bluez.GattCharacteristic1", "org.bluez.GattService1"
        dev_path = "/org/bluez/hci0/dev_" + mac.replace(":", "_").upper()
        root = dbus.Interface(self.conn.get_object("org.bluez", "/"), mockmod.MOCK_IFACE)
        handle = 0x0010
        with self._lock:
            for svc_uuid, chars in services.items():
                svc_path = f"{dev_path}/service{handle:04x}"
                svc_props = {"UUID": dbus.String(svc_uuid), "Primary": dbus.Boolean(True),
                             "Device": dbus.ObjectPath(dev_path), "Includes": dbus.Array([], signature="o")}
                self._add_object(root, svc_path, svc_iface, svc_props, [])
                handle += 1
                for char_uuid, flags in chars:
                    path = f"{svc_path}/char{handle:04x}"
                    props = {"UUID": dbus.String(char_uuid), "Service": dbus.ObjectPath(svc_path),
                             "Value": dbus.Array([], signature="y"), "Notifying": dbus.Boolean(False),
                             "Flags": dbus.Array(flags, signature="s")}
                    methods = [("StartNotify", "", "", ""), ("StopNotify", "", "", ""),
                               ("ReadValue", "a{sv}", "ay", f"ret = self.props['{char_iface}']['Value']"),
                               ("WriteValue", "aya{sv}", "", "")]
                    self._add_object(root, path, char_iface, props, methods)
                    self.chars[(mac, char_uuid)] = dbus.Interface(self.conn.get_object("org.bluez", path),
                                                                  mockmod.MOCK_IFACE)
                    handle += 2
            dev = self.devices[mac]
            dev.UpdateProperties("org.bluez.Device1", {
                "UUIDs": dbus.Array(list(services), signature="s"), "ServicesResolved": dbus.Boolean(True)})
            # The template's Connect/Disconnect only signal the change; these also keep the
            # property, so that the rig can see whether a central holds the link.
            for name, value in (("Connect", "True"), ("Disconnect", "False")):
                dev.AddMethod("org.bluez.Device1", name, "", "",
                              f"self.connected = {value}\n"
                              f"self.UpdateProperties('org.bluez.Device1', {{'Connected': dbus.Boolean({value})}})")

    def _add_object(self, root: Any, path: str, iface: str, props: dict[str, Any],
                    methods: list[tuple[str, str, str, str]]) -> None:
        dbus = self._dbus
        root.AddObject(path, iface, dbus.Dictionary(props, signature="sv"), dbus.Array(methods, signature="(ssss)"))
        root.EmitSignal("org.freedesktop.DBus.ObjectManager", "InterfacesAdded", "oa{sa{sv}}",
                        [dbus.ObjectPath(path), dbus.Dictionary({iface: props}, signature="sa{sv}")])

    def notify(self, mac: str, char_uuid: str, value: bytes) -> None:
        """One GATT notification from the device: the characteristic's ``Value`` changes."""
        char = self.chars.get((mac, char_uuid))
        if char is None:
            return
        with self._lock:
            char.UpdateProperties("org.bluez.GattCharacteristic1", {"Value": self._dbus.Array(value, signature="y")})

    def connected(self, mac: str) -> bool:
        """Whether a central (the gateway's bleak) holds a connection to the device."""
        with self._lock:
            props = self.conn.get_object("org.bluez", self.devices[mac].object_path)
            return bool(props.Get("org.bluez.Device1", "Connected", dbus_interface="org.freedesktop.DBus.Properties"))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
        with contextlib.suppress(Exception):
            self.mock.terminate()
        with contextlib.suppress(Exception):
            self.bus.stop()


class EmulatedBoard:
    """One device's real firmware under the host shim, as a process (``python -m firmware_stubs.host``).

    A serial device's UART1 is a pseudo-terminal; the rig links ``port`` to its slave for the
    gateway's config. A BLE device's adverts come out on stdout and go into ``bluez``.
    Stimuli (``FIRMWARE[device].actions``) go in on stdin.
    """

    def __init__(self, device: str, work: Path, env: dict[str, str], log: Any,
                 bluez: MockBlueZ | None = None, accel_rest: tuple[int, int, int] | None = None) -> None:
        self.device, self.fw, self.bluez, self.work = device, FIRMWARE[device], bluez, work
        flash = work / f"flash-{device}"
        flash.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "firmware_stubs.host", self.fw.folder, "--flash", str(flash), *self.fw.args]
        if self.fw.transport == "serial":
            cmd += ["--pty", "--boot-after", "3"]  # pyserial flushes the input when the gateway opens it
        else:
            cmd += ["--mac", self.fw.mac]
        if device == "button":
            (flash / "config.py").write_text(f'KEY = "{BUTTON_FIRMWARE_KEY}"\nHEARTBEAT_S = 600\n',
                                             encoding="utf-8")
            if bluez is not None:
                bluez.add_device(self.fw.mac, "AX-BTN")
        if device == "pendant":
            if accel_rest is not None:
                cmd.append("--accel-rest=" + ",".join(map(str, accel_rest)))  # "=": the values may be negative
            if bluez is not None:
                from drivers.ble.pendant_protocol import GATT_SERVICES

                bluez.add_device(self.fw.mac, "Anxin Pendant")
                bluez.add_gatt(self.fw.mac, GATT_SERVICES)
        self.port = work / f"tty-{device}"
        self.adverts = 0
        self.notifications = 0
        self._stop = threading.Event()
        self._link: threading.Thread | None = None
        self._stdin_lock = threading.Lock()
        self.discoverable_at = 0.0  # Unix time
        self.proc = subprocess.Popen(cmd, cwd=_SOURCE_ROOT, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log)
        self._reader: threading.Thread | None = None

    async def start(self) -> None:
        """Wait for the pty (serial), then forward stdout in a thread."""
        assert self.proc.stdout is not None
        if self.fw.transport == "serial":
            await link_shim_pty(self.proc, self.device, self.port)
        self._reader = threading.Thread(target=self._read, name=f"hil-{self.device}", daemon=True)
        self._reader.start()
        if self.fw.gatt and self.bluez is not None:
            self._link = threading.Thread(target=self._radio, name=f"hil-{self.device}-link", daemon=True)
            self._link.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if not isinstance(msg, dict) or self.bluez is None:
                continue
            advert, note = msg.get("advert"), msg.get("notify")
            with contextlib.suppress(Exception):  # the bus going away at the end is not a failure
                if advert:
                    self.adverts += 1
                    data = {u: bytes.fromhex(h) for u, h in advert.get("service_data", {}).items()}
                    self.bluez.push(advert["mac"], data)
                elif note:
                    self.notifications += 1
                    self.bluez.notify(self.fw.mac, note["uuid"], bytes.fromhex(note["data"]))

    def _radio(self) -> None:
        """A GATT device's link: seen in scans while free; the firmware told when bleak connects.

        The board's central connects (with an ATT MTU of 247, as BlueZ negotiates) when the
        mock device's ``Connected`` turns true, and disconnects when it turns false. Scanners
        hear it from ``discoverable_at`` (the scenario's start: the wearer switches it on), so
        that its link comes up in the scenario's time, not during the gateway's start-up.
        """
        assert self.bluez is not None
        linked = False
        while not self._stop.wait(0.25):
            if time.time() < self.discoverable_at:
                continue
            try:
                now = self.bluez.connected(self.fw.mac)
                if not now:
                    self.bluez.push(self.fw.mac, {}, rssi=-58)  # still advertising: scanners hear it
            except Exception:  # noqa: BLE001 - the bus going away at the end is not a failure
                return
            if now != linked:
                linked = now
                self._send(("connect 247",) if now else ("disconnect",))

    def _send(self, commands: tuple[str, ...]) -> None:
        assert self.proc.stdin is not None
        with self._stdin_lock, contextlib.suppress(OSError):
            self.proc.stdin.write("".join(c + "\n" for c in commands).encode())
            self.proc.stdin.flush()

    def act(self, step: DeviceStep, recordings: dict[DeviceStep, Path] | None = None) -> None:
        if step.action == "recording":
            self._send((f"accel {(recordings or {})[step]}",))
        else:
            self._send(self.fw.actions[step.action])

    async def close(self) -> None:
        self._stop.set()
        if self._link is not None:
            await asyncio.to_thread(self._link.join, 2)
        await stop_shim(self.proc, self._reader)


async def link_shim_pty(proc: subprocess.Popen[bytes], device: str, port: Path) -> None:
    """Wait for a serial board's shim to report its pty and point ``port`` at it."""
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
    except TimeoutError:
        proc.kill()
        raise ConfigError(f"emulated {device} did not start") from None
    try:
        pty = json.loads(line)["pty"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"emulated {device} did not report its pty: {line!r}") from None
    _relink(port, pty)


def _relink(link: Path, target: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    link.symlink_to(target)


async def stop_shim(proc: subprocess.Popen[bytes], reader: threading.Thread | None) -> None:
    """Power a board off (the shim stops when its stdin ends), killing it if it hangs."""
    with contextlib.suppress(OSError):
        if proc.stdin is not None:
            proc.stdin.close()
    try:
        await asyncio.to_thread(proc.wait, 5)
    except subprocess.TimeoutExpired:
        proc.kill()
        await asyncio.to_thread(proc.wait)
    if reader is not None:
        await asyncio.to_thread(reader.join, 5)


def _prepare_recordings(scenario: Scenario, work: Path) -> dict[DeviceStep, Path]:
    """Each recording step's samples as a file the host shim's ``accel`` command plays."""
    out: dict[DeviceStep, Path] = {}
    for i, step in enumerate(s for s in scenario.device_steps if s.action == "recording"):
        path = work / f"accel-{i}-{step.recording}.txt"
        path.write_text("".join(f"{x} {y} {z}\n" for x, y, z in load_recording(step.recording, step.seconds)),
                        encoding="ascii")
        out[step] = path
    return out


def _first_sample(recordings: dict[DeviceStep, Path]) -> tuple[int, int, int] | None:
    """The pendant rests as the first recording begins (no jump in orientation when it starts)."""
    if not recordings:
        return None
    first = min(recordings, key=lambda s: s.at_s)
    x, y, z = (int(v) for v in recordings[first].read_text(encoding="ascii").split("\n", 1)[0].split())
    return x, y, z


async def run_scenario(  # noqa: PLR0915 - one scenario's timeline reads best as one straight script
    scenario: Scenario, *, broker_url: str | None = None, real_config: Path | None = None,
    workdir: Path | None = None, skip_missing_data: bool = False,
) -> Result:
    """Run one scenario end to end and judge it."""
    from gateway import config as config_mod
    from gateway.demo.broker import LocalBroker

    result = Result(scenario)
    tmp = tempfile.TemporaryDirectory(prefix="anxin-hil-")
    work = workdir or Path(tmp.name)
    recordings: dict[DeviceStep, Path] = {}
    if real_config is None:
        try:
            recordings = await asyncio.to_thread(_prepare_recordings, scenario, work)
        except MissingDataError as exc:
            if skip_missing_data:
                result.skipped = str(exc)
            else:
                result.error = str(exc)
            return result
        except ConfigError as exc:
            result.error = str(exc)
            return result
    broker: LocalBroker | None = None
    if broker_url is None:
        broker = LocalBroker()
        await broker.start()
        broker_url = broker.url
    parts = urlsplit(broker_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 1883
    env = {**os.environ, "PYTHONPATH": str(_SOURCE_ROOT)}
    log_file = (work / "gateway.log").open("ab")
    boards: dict[str, EmulatedBoard] = {}
    bluez: MockBlueZ | None = None
    devices = scenario.devices if real_config is None else ()
    try:
        if any(FIRMWARE[d].transport == "ble" for d in devices):
            bluez = await asyncio.to_thread(MockBlueZ)  # starts dbus-daemon: not on the loop (--jobs)
            env["DBUS_SYSTEM_BUS_ADDRESS"] = bluez.address
        for d in devices:
            boards[d] = EmulatedBoard(d, work, env, log_file, bluez,
                                      accel_rest=_first_sample(recordings) if d == "pendant" else None)
            await boards[d].start()
        cfg_path = real_config if real_config is not None else _render_config(scenario.config, work, broker_url)
        cfg = config_mod.load(cfg_path)
    except (ConfigError, OSError) as exc:
        await _close_boards(boards, bluez)
        log_file.close()
        if broker is not None:
            await broker.close()
        result.error = str(exc)
        return result
    sub = Subscriber(host, port, cfg.uplink.topic_root, cfg.gateway.id, ack=scenario.ack)
    start_at = time.time() + 2.0
    for board in boards.values():
        board.discoverable_at = start_at
    env.update(rig_clock_env(scenario, start_at))
    session = None
    if real_config is None:
        session = work / "session.jsonl"
        _write_session(session, scenario.sensor_steps, scenario.speed)
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(sess: Path | None) -> None:
        procs.append(subprocess.Popen(_gateway_cmd(cfg_path, sess, start_at, devices), env=env, stdout=log_file,
                                      stderr=subprocess.STDOUT))

    timeline: list[ActionStep | DeviceStep] = [
        *scenario.actions, *(d for d in scenario.device_steps if d.device in boards)]
    timeline.sort(key=lambda a: a.at_s)
    try:
        spawn(session)
        for action in timeline:
            await asyncio.sleep(max(0.0, start_at + scenario.real_s(action.at_s) - time.time()))
            if isinstance(action, DeviceStep):
                boards[action.device].act(action, recordings)
            elif action.target == "broker":
                _require_own_broker(broker)
                assert broker is not None
                await (broker.stop() if action.action == "stop" else broker.start())
            else:
                procs[-1].send_signal(signal.SIGKILL)
                await asyncio.to_thread(procs[-1].wait)
                rest = None
                if session is not None:
                    rest = work / f"session-after-{action.at_s:g}.jsonl"
                    _write_session(rest, tuple(s for s in scenario.sensor_steps if s.at_s > action.at_s),
                                   scenario.speed)
                spawn(rest)
        await asyncio.sleep(max(0.0, start_at + scenario.real_s(scenario.duration_s) - time.time()))
    except ConfigError as exc:
        result.error = str(exc)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
            result.gateway_exit.append(proc.returncode)
        sub.close()
        await _close_boards(boards, bluez)
        log_file.close()
        if broker is not None:
            await broker.close()
    result.received = sub.snapshot()
    _judge(result, start_at)
    with contextlib.suppress(OSError):
        tmp.cleanup()
    return result


def rig_clock_env(scenario: Scenario, start_at: float) -> dict[str, str]:
    """The gateway's environment for the scenario's clock: its t=0 is ``start_at`` (Unix time)."""
    if scenario.clock_start is None:
        return {}
    return {RIG_CLOCK_START: scenario.clock_start.isoformat(), RIG_CLOCK_SPEED: repr(scenario.speed),
            RIG_CLOCK_ANCHOR: f"{start_at:.6f}"}


async def _close_boards(boards: dict[str, EmulatedBoard], bluez: MockBlueZ | None) -> None:
    for board in boards.values():
        await board.close()
    if bluez is not None:
        await asyncio.to_thread(bluez.close)


def _render_config(template: Path, work: Path, broker_url: str) -> Path:
    """The scenario's config with the rig's placeholders filled in.

    ``{broker_url}``, ``{db_path}``; for emulated firmware ``{bedpad_port}`` (a link to the
    bed pad's pty), ``{button_address}``, ``{pendant_address}`` and ``{secrets_file}`` (written here, mode 600, with
    the emulated button's bind key as ``button-fw``).
    """
    text = template.read_text(encoding="utf-8")
    secrets = work / "secrets.toml"
    if "{secrets_file}" in text:
        secrets.write_text(f'[keys]\nbutton-fw = "{BUTTON_FIRMWARE_KEY}"\n', encoding="utf-8")
        secrets.chmod(0o600)
    values = {"{broker_url}": broker_url, "{db_path}": str(work / "gw.db"), "{secrets_file}": str(secrets),
              "{bedpad_port}": str(work / "tty-bedpad"), "{button_address}": BUTTON_FIRMWARE_MAC,
              "{pendant_address}": PENDANT_FIRMWARE_MAC}
    for key, value in values.items():
        text = text.replace(key, value)
    out = work / "gateway.toml"
    out.write_text(text, encoding="utf-8")
    return out


def _require_own_broker(broker: object) -> None:
    if broker is None:
        raise ConfigError("broker actions need the rig's own broker (run without --broker)")


def _latency(exp: Expectation, scenario: Scenario, arrived: float, cause: float) -> Outcome:
    """Judge one arrival against its budget; on a rig clock the budget is scenario time."""
    real_ms = (arrived - cause) * 1000
    ms = real_ms * scenario.speed
    detail = f"{ms:.0f} ms (budget {exp.within_ms:.0f} ms)"
    if scenario.speed != 1:
        detail = f"{ms / 1000:.0f} s scenario time, {real_ms:.0f} ms real (budget {exp.within_ms / 1000:g} s)"
    return Outcome(exp, ms <= exp.within_ms, ms, detail, real_ms)


def _judge(result: Result, start_at: float) -> None:
    sc = result.scenario
    alerts = [m for m in result.received if m["topic"].endswith("/alert") and isinstance(m["payload"], dict)]
    events = [(m["t"], r) for m in result.received if m["topic"].endswith("/event")
              and isinstance(m["payload"], dict) for r in m["payload"].get("readings") or []
              if isinstance(r, dict)]
    for exp in sc.expect:
        cause = start_at + sc.real_s(exp.after_s)
        if exp.event is not None:
            sensor, kind, value = exp.event
            times = [t for t, r in events if (r.get("sensor"), r.get("kind"), r.get("value")) == (sensor, kind, value)
                     and t >= cause - 0.5]
            if len(times) < exp.min_count:
                result.outcomes.append(Outcome(exp, False, None,
                                               f"expected {exp.min_count} {exp.alert}, got {len(times)}"))
                continue
            if exp.max_count is not None and len(times) > exp.max_count:
                result.outcomes.append(Outcome(exp, False, None,
                                               f"expected at most {exp.max_count} {exp.alert}, got {len(times)}"))
                continue
            result.outcomes.append(_latency(exp, sc, min(times), cause))
            continue
        matching = [m for m in alerts if m["payload"].get("type") == exp.alert
                    and m["payload"].get("state") == exp.state and m["t"] >= cause - 0.5]
        ids = {m["payload"].get("alert_id") or m["payload"].get("id") for m in matching}
        if len(ids) < exp.min_count:
            result.outcomes.append(Outcome(exp, False, None,
                                           f"expected {exp.min_count} {exp.alert} ({exp.state}), got {len(ids)}"))
            continue
        if exp.max_count is not None and len(ids) > exp.max_count:
            detail = f"expected at most {exp.max_count} {exp.alert} ({exp.state}), got {len(ids)}"
            result.outcomes.append(Outcome(exp, False, None, detail))
            continue
        result.outcomes.append(_latency(exp, sc, matching[0]["t"], cause))
    if sc.only_expected:
        wanted = {e.alert for e in sc.expect if e.event is None}
        result.unexpected = sorted({m["payload"].get("type", "?") for m in alerts} - wanted)


def _when(sc: Scenario, t: float) -> str:
    if sc.clock_start is None:
        return f"t={t:g}s"
    return (sc.clock_start + timedelta(seconds=t)).strftime("%H:%M:%S")


def report_text(results: list[Result]) -> str:
    lines = []
    for r in results:
        sc = r.scenario
        clock = "" if sc.clock_start is None else f", clock from {sc.clock_start.isoformat()} at {sc.speed:g}x"
        mark = "SKIP" if r.skipped else "PASS" if r.ok else "FAIL"
        lines.append(f"{mark}  {sc.name}  ({sc.path.name}{clock})")
        if r.skipped:
            lines.append(f"   skipped: {r.skipped}")
        for o in r.outcomes:
            mark = "ok " if o.ok else "BAD"
            lines.append(f"   {mark} {o.expectation.alert} after {_when(sc, o.expectation.after_s)}: {o.detail}")
        if r.unexpected:
            lines.append(f"   BAD unexpected alerts: {', '.join(r.unexpected)}")
        if r.error:
            lines.append(f"   BAD error: {r.error}")
    passed = sum(r.ok and not r.skipped for r in results)
    skipped = sum(bool(r.skipped) for r in results)
    lines.append(f"{passed} passed, {len(results) - passed - skipped} failed"
                 + (f", {skipped} skipped" if skipped else ""))
    return "\n".join(lines)


def report_json(results: list[Result]) -> dict[str, Any]:
    return {
        "passed": sum(r.ok and not r.skipped for r in results),
        "failed": sum(not r.ok for r in results),
        "skipped": sum(bool(r.skipped) for r in results),
        "scenarios": [
            {
                "name": r.scenario.name,
                "file": str(r.scenario.path),
                "clock": None if r.scenario.clock_start is None else
                {"start": r.scenario.clock_start.isoformat(), "speed": r.scenario.speed},
                "ok": r.ok,
                "error": r.error,
                "skipped": r.skipped,
                "unexpected": r.unexpected,
                "gateway_exit": r.gateway_exit,
                "messages": len(r.received),
                "expectations": [
                    {"alert": o.expectation.alert, "state": o.expectation.state, "ok": o.ok,
                     "latency_ms": None if o.latency_ms is None else round(o.latency_ms, 1),
                     "real_latency_ms": None if o.real_latency_ms is None else round(o.real_latency_ms, 1),
                     "budget_ms": o.expectation.within_ms, "detail": o.detail}
                    for o in r.outcomes
                ],
            }
            for r in results
        ],
    }


def report_junit(results: list[Result]) -> str:
    suites = ET.Element("testsuites", name="anxin-hil")
    for r in results:
        cases = [*r.outcomes]
        suite = ET.SubElement(suites, "testsuite", name=r.scenario.name, tests=str(len(cases) + 1),
                              failures=str(sum(not o.ok for o in cases) + (0 if not (r.unexpected or r.error) else 1)))
        for o in cases:
            case = ET.SubElement(suite, "testcase", classname=r.scenario.path.stem,
                                 name=f"{o.expectation.alert}@{o.expectation.after_s:g}s",
                                 time=f"{(o.latency_ms or 0) / 1000:.3f}")
            if not o.ok:
                ET.SubElement(case, "failure", message=o.detail)
        extra = ET.SubElement(suite, "testcase", classname=r.scenario.path.stem, name="nothing-else")
        if r.skipped:
            ET.SubElement(extra, "skipped", message=r.skipped)
        if r.unexpected or r.error:
            ET.SubElement(extra, "failure", message=r.error or f"unexpected alerts: {', '.join(r.unexpected)}")
    return ET.tostring(suites, encoding="unicode")
