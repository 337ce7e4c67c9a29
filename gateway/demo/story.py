"""The demo's scripted story: one morning in a one-bedroom flat, in about a minute.

Each step is what a sensor says, when, and what the platform should see because of it.
Where the sensor is emulated (:mod:`gateway.demo.devices`: the button, the door and the
bed pad run their firmware, the radar an emulator) the step is a stimulus to that device
(press the button, lift the magnet, get off the mat) and the reading comes out of the
gateway's own driver; the other steps are replayed as readings.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config import (
    Config,
    GatewayConfig,
    RoomConfig,
    SecretsConfig,
    SensorConfig,
    StorageConfig,
    UplinkConfig,
)
from gateway.demo.devices import BUTTON_KEY, BUTTON_KEY_NAME, BUTTON_MAC, DOOR_MAC
from gateway.model import SensorKind, Transport


@dataclass(frozen=True, slots=True)
class Step:
    at_s: float
    sensor: str
    kind: str
    value: Any
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        obj: dict[str, Any] = {"offset_s": round(self.at_s, 3), "sensor": self.sensor, "kind": self.kind,
                               "value": self.value}
        if self.extra:
            obj["extra"] = self.extra
        return json.dumps(obj)


def demo_config(workdir: Path, broker_url: str) -> Config:
    """The embedded example home the demo runs.

    The serial sensors' ports are the emulators' pty links in ``workdir``; the button's
    bind key is the one its emulated firmware encrypts with.
    """
    def ble(i: int) -> str:
        return f"A4:C1:38:DE:00:{i:02X}"

    sensors = (
        SensorConfig(id="button-bedside", kind=SensorKind.BUTTON, transport=Transport.BLE, address=BUTTON_MAC,
                     room="bedroom", label="一键呼叫 bedside button", model="Anxin button (firmware_stubs)",
                     key=BUTTON_KEY_NAME),
        SensorConfig(id="bed-pad", kind=SensorKind.BED, transport=Transport.SERIAL,
                     address=str(workdir / "tty-bedpad"), room="bedroom", label="bed pad", protocol="bedpad",
                     baud=9600),
        SensorConfig(id="motion-living", kind=SensorKind.MOTION, transport=Transport.BLE, address=ble(2),
                     room="living", label="living room motion"),
        SensorConfig(id="motion-bath", kind=SensorKind.MOTION, transport=Transport.BLE, address=ble(3),
                     room="bathroom", label="bathroom motion"),
        SensorConfig(id="door-front", kind=SensorKind.DOOR, transport=Transport.BLE, address=DOOR_MAC,
                     room="entrance", label="front door"),
        SensorConfig(id="radar-bath", kind=SensorKind.RADAR_FALL, transport=Transport.SERIAL,
                     address=str(workdir / "tty-radar"), room="bathroom", label="bathroom fall radar",
                     protocol="mr60fda2", model="MR60FDA2"),
        SensorConfig(id="pendant", kind=SensorKind.PENDANT, transport=Transport.BLE, address=ble(5),
                     room="living", label="waist pendant"),
    )
    rooms = (
        RoomConfig(id="bedroom", name="卧室", kind="bedroom"),
        RoomConfig(id="living", name="客厅", kind="living"),
        RoomConfig(id="bathroom", name="卫生间", kind="bathroom"),
        RoomConfig(id="kitchen", name="厨房", kind="kitchen"),
        RoomConfig(id="entrance", name="门厅", kind="entrance"),
    )
    return Config(
        gateway=GatewayConfig(id="demo-gw", home="demo-home-0001", name="Demo flat"),
        rooms=rooms,
        sensors=sensors,
        uplink=UplinkConfig(broker_url=broker_url, escalate_after_s=20, repeat_every_s=15,
                            event_interval_s=1.0, reconnect_min_s=0.2, reconnect_max_s=2.0,
                            telemetry_interval_s=15),
        storage=StorageConfig(path=str(workdir / "anxin-demo.db"), budget_mb=64, reserve_mb=2,
                              group_commit_ms=50),
        secrets=SecretsConfig(keys={BUTTON_KEY_NAME: BUTTON_KEY}),
    )


def _accel(at_s: float, samples: list[list[float]]) -> Step:
    return Step(at_s, "pendant", "accel", None, {"samples_g": samples, "rate_hz": 50})


def pendant_sample(t: float, fall_at: float | None) -> tuple[float, float, float]:
    """The waist accelerometer (g) ``t`` s into a walk: walking, then (from ``fall_at``) a
    free fall, the impact and lying on the back, still. The y axis points down when upright."""
    if fall_at is None or t < fall_at:
        return (0.15 * math.sin(2 * math.pi * 1.8 * t), -1.0 + 0.2 * math.sin(2 * math.pi * 3.6 * t),
                0.1 * math.cos(2 * math.pi * 1.8 * t))
    if t < fall_at + 0.4:
        return (0.0, -0.2, 0.1)  # free fall
    if t < fall_at + 0.6:
        return (2.5, 3.5, -2.0)  # impact
    return (0.02, 0.05, -0.98)  # lying on the back, still


SITTING_G = (0.03, -0.99, 0.05)  # upright and still


def pendant_stream(start_s: float, seconds: float, *, fall_at: float | None) -> list[Step]:
    """50 Hz waist accelerometer in 1 s notifications: walking, then (maybe) a fall and lying still."""
    steps = []
    for sec in range(int(seconds)):
        samples = [pendant_sample(sec + i / 50, fall_at) for i in range(50)]
        steps.append(_accel(start_s + sec, [[round(v, 3) for v in s] for s in samples]))
    return steps


PENDANT_STREAM_S = 17.0  # how much of the pendant's stream the replay feed carries


def story() -> list[Step]:
    steps = [
        # A normal morning: out of bed, bathroom, living room.
        Step(1.0, "bed-pad", "in_bed", False),
        Step(2.0, "motion-bath", "motion", True),
        Step(4.0, "motion-bath", "motion", False),
        Step(5.0, "motion-living", "motion", True),
        Step(6.0, "motion-living", "battery", 87, {"rssi_dbm": -61}),
        # The emergency button, pressed.
        Step(9.0, "button-bedside", "button", "press", {"packet_id": 17}),
        # A fall in the bathroom seen by the radar: nobody cancels it.
        Step(20.0, "radar-bath", "fall", True, {"distance_cm": 140}),
        # Walking with the pendant, a fall at 31 s and lying still: confirmed after 10 s of
        # stillness, the fall alert is raised (about 41 s); "I'm OK" at 45 s cancels it, and
        # she sits up. (What the pendant's accelerometer feels; see for_replay.)
        Step(27.0, "pendant", "activity", "walk"),
        Step(31.0, "pendant", "activity", "fall"),
        Step(45.0, "pendant", "cancel", True),
        Step(47.0, "pendant", "activity", "sit"),
    ]
    # Readings while the broker is down (50-60 s); they drain afterwards.
    steps += [Step(51.0 + i, "motion-living", "motion", i % 2 == 0) for i in range(8)]
    steps.append(Step(63.0, "door-front", "contact", True))
    steps.append(Step(65.0, "door-front", "contact", False))
    return sorted(steps, key=lambda s: s.at_s)


def for_replay(steps: list[Step]) -> list[Step]:
    """Steps as readings: the pendant's activities become its 50 Hz stream (walk, fall, still)."""
    out = [s for s in steps if s.kind != "activity"]
    walk = next((s.at_s for s in steps if s.kind == "activity" and s.value == "walk"), None)
    fall = next((s.at_s for s in steps if s.kind == "activity" and s.value == "fall"), None)
    if walk is not None:
        sensor = next(s.sensor for s in steps if s.kind == "activity")
        stream = pendant_stream(walk, PENDANT_STREAM_S, fall_at=None if fall is None else fall - walk)
        out += [Step(s.at_s, sensor, s.kind, s.value, s.extra) for s in stream]
    return sorted(out, key=lambda s: s.at_s)


OUTAGE = (50.0, 60.0)
DURATION_S = 72.0


def write_session(path: Path, steps: list[Step] | None = None) -> Path:
    """The replayed part of the story (all of it by default) as JSON lines of readings."""
    lines = for_replay(story() if steps is None else steps)
    path.write_text("".join(s.line() + "\n" for s in lines), encoding="utf-8")
    return path
