"""The demo: a local broker, the gateway with an example home, the story, the platform's view.

The gateway runs in this process on the same path as `anxin run` (drivers → detectors →
store → uplink). The button, the door, the pendant and the bed pad run their real firmware on
emulated boards and reach the gateway's own BLE, pendant (GATT) and serial drivers; the
radar is an emulator on a pty; the motion sensors are replayed (:mod:`gateway.demo.devices`). The
platform's view is a separate MQTT client that prints what
arrives and acknowledges the emergency button as an operator would. Midway the broker is
cut off from the home for ten seconds (its internet link drops; the platform stays up), and
the backlog drains when the link returns.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from drivers.base import Driver
from drivers.replay import ReplayDriver
from gateway import assemble, logs
from gateway.clock import Clock
from gateway.config import Config
from gateway.demo.broker import LocalBroker
from gateway.demo.devices import EmulatedHome
from gateway.demo.link import LinkRelay
from gateway.demo.story import DURATION_S, OUTAGE, Step, demo_config, story, write_session
from gateway.hil import Subscriber
from gateway.model import SensorKind, Transport
from gateway.service import Service, open_store

log = logging.getLogger(__name__)

EXPECTED: tuple[tuple[str, str], ...] = (
    ("emergency_button", "raised"),
    ("emergency_button", "acknowledged"),
    ("fall_radar", "raised"),
    ("fall", "raised"),
    ("fall", "cancelled"),
)


class View:
    """Prints what the platform receives, one line a message."""

    def __init__(self, out: TextIO, start: float, *, color: bool) -> None:
        self.out = out
        self.start = start
        self.color = color

    def _paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def __call__(self, rec: dict[str, Any]) -> None:
        t = rec["t"] - self.start
        parts = rec["topic"].split("/")
        if "cmd" in parts:
            return  # our own operator's commands; their replies are shown
        kind = parts[-1] if "reply" not in parts else "reply"
        p = rec["payload"] if isinstance(rec["payload"], dict) else {}
        if kind == "alert":
            sev = p.get("severity", "?")
            code = {"critical": "1;31", "warning": "33"}.get(sev, "36")
            sensor = p.get("sensor") or {}
            text = self._paint(f"ALERT {p.get('type')} [{p.get('state')}] {sev}", code)
            detail = f"sensor={sensor.get('id')} room={sensor.get('room')} seq={p.get('seq')}"
        elif kind == "event":
            readings = p.get("readings") or []
            text = f"event  {len(readings)} readings"
            detail = ", ".join(sorted({f"{r.get('sensor')}:{r.get('kind')}" for r in readings}))[:70]
        elif kind == "status":
            text = self._paint(f"status {p.get('state')}", "32" if p.get("state") == "online" else "35")
            detail = f"queue={p.get('queue_depth')}"
        elif kind == "reply":
            text = f"reply to {parts[-1]}"
            detail = "ok" if p.get("ok", True) and not p.get("error") else f"error: {p.get('error')}"
        else:
            text, detail = kind, ""
        print(f"[platform {t:+6.1f}s] {text}  {detail}", file=self.out, flush=True)


async def run_demo(*, out: TextIO = sys.stdout, tty: bool | None = None, speed: float = 1.0,
                   broker_kind: str = "auto", emulate: bool = True, record: Path | None = None) -> int:
    """Play the story; 0 when every expected alert reached the platform.

    ``emulate=False`` replays every sensor instead of running the firmware and the radar
    emulator; ``record`` gets every message the platform received, one JSON line each.
    """
    tty = out.isatty() if tty is None else tty
    logs.setup("WARNING" if tty else "INFO", "text")
    with tempfile.TemporaryDirectory(prefix="anxin-demo-") as tmp:
        work = Path(tmp)
        broker = LocalBroker(prefer=broker_kind)
        await broker.start()
        link = LinkRelay(broker.port)  # the home's internet link; the platform stays connected
        await link.start()
        print(f"anxin demo: broker {broker.kind} on {broker.url}; store in {work}", file=out, flush=True)
        home = EmulatedHome(work, emulate=emulate)
        drivers: list[Driver] = []
        try:
            await home.start()
            for note in home.notes:
                log.warning("demo: %s", note)
            cfg = demo_config(work, link.url)
            for s in cfg.sensors:
                print(f"anxin demo: sensor {s.id:<15} {home.feeds.get(s.id, 'replayed (recorded readings)')}",
                      file=out, flush=True)
            steps = story()
            session = write_session(work / "story.jsonl",
                                    [s for s in steps if not home.handles(s.sensor, s.kind, s.value)])
            # the bed pad's firmware boots 3 s after its process: the serial driver has the pty open by then
            start = time.time() + (3.0 if home.boards else 1.0)
            view = View(out, start, color=tty)
            sub = Subscriber("127.0.0.1", broker.port, cfg.uplink.topic_root, cfg.gateway.id, ack=True,
                             ack_types=frozenset({"emergency_button"}), on_message=view)
            try:
                drivers = await _play(cfg, home, session, steps, start=start, speed=speed, out=out, link=link)
            finally:
                await asyncio.sleep(0.5)
                sub.close()
        finally:
            await home.close()
            await link.close()
            await broker.close()
        messages = sub.snapshot()
        if record is not None:
            text = "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in messages)
            await asyncio.to_thread(record.write_text, text, encoding="utf-8")
        return _summary(messages, out, home.feeds, drivers)


async def _play(cfg: Config, home: EmulatedHome, session: Path, steps: list[Step], *, start: float,
                speed: float, out: TextIO, link: LinkRelay) -> list[Driver]:
    """Run the gateway on the demo home and walk the timeline: device stimuli and the outage."""
    clock = Clock()
    store = open_store(cfg)
    service = Service(cfg, detectors=assemble.build_detectors(cfg, store, clock),
                      uplink_factory=assemble.uplink_factory(cfg, clock), store=store, clock=clock)
    replay = ReplayDriver(session, speed=speed, clock=clock, start_at_epoch_s=start,
                          sensors=frozenset(s.id for s in cfg.sensors))
    drivers: list[Driver] = [replay]
    if home.ble_live:
        from drivers.ble.driver import BleDriver

        drivers.append(BleDriver.from_config(cfg, store=store, clock=clock, on_health=service.submit_alert))
    pendants = [s for s in cfg.sensor_list() if s.kind is SensorKind.PENDANT and s.id in home.boards]
    if pendants:
        from drivers.ble.pendant import PendantDriver

        drivers.extend(PendantDriver(s, clock=clock) for s in pendants)
    serial = [s for s in cfg.sensor_list() if s.transport is Transport.SERIAL and s.id in home.feeds]
    if serial:
        from drivers.serial.driver import build_serial_drivers

        drivers.extend(build_serial_drivers(serial, clock))
    service.drivers = drivers

    def cut() -> None:
        print("anxin demo: --- the home's internet link goes down ---", file=out, flush=True)
        link.cut()

    def restore() -> None:
        link.restore()
        print("anxin demo: --- the link is back; the backlog drains ---", file=out, flush=True)

    timeline: list[tuple[float, Callable[[], object]]] = [(0.0, home.go_live), (OUTAGE[0], cut), (OUTAGE[1], restore)]
    timeline += [(s.at_s, functools.partial(home.act, s.sensor, s.kind, s.value))
                 for s in steps if home.handles(s.sensor, s.kind, s.value)]
    timeline.sort(key=lambda item: item[0])
    task = asyncio.create_task(service.run())
    try:
        for at_s, action in timeline:
            await asyncio.sleep(max(0.0, start + at_s / speed - time.time()))
            action()
        await asyncio.sleep(max(0.0, start + DURATION_S / speed - time.time()))
    finally:
        service.request_stop()
        await asyncio.wait_for(task, 15)
    return drivers


def _summary(messages: list[dict[str, Any]], out: TextIO, feeds: dict[str, str],
             drivers: list[Driver]) -> int:
    seen = Counter((m["payload"].get("type"), m["payload"].get("state"))
                   for m in messages if m["topic"].endswith("/alert") and isinstance(m["payload"], dict))
    events = sum(len(m["payload"].get("readings") or []) for m in messages
                 if m["topic"].endswith("/event") and isinstance(m["payload"], dict))
    missing = [f"{t} {s}" for t, s in EXPECTED if not seen[(t, s)]]
    summary = {
        "alerts": {f"{t}:{s}": n for (t, s), n in sorted(seen.items(), key=str)},
        "event_readings": events,
        "messages": len(messages),
        "feeds": dict(sorted(feeds.items())),
        "drivers": {_driver_label(d): {"frames_ok": d.stats.frames_ok, "frames_rejected": d.stats.frames_rejected}
                    for d in drivers},
        "missing": missing,
        "ok": not missing and events > 0,
    }
    print("anxin demo: " + ("every expected alert arrived" if summary["ok"] else f"MISSING: {missing}"),
          file=out, flush=True)
    print(json.dumps(summary), file=out, flush=True)
    return 0 if summary["ok"] else 1


def _driver_label(d: Driver) -> str:
    sensor = getattr(d, "sensor", None)
    return f"{d.name}:{sensor.id}" if sensor is not None else d.name
