"""BTHome decode throughput: the driver's whole decode path vs bare bthome-ble, same run.

Driver path = ``BleDriver.process``: header checks, bthome-ble decode on a fresh parser,
AES-CCM for encrypted frames, replay check (in-memory counters: the store's fsync is
measured by the store's own bench), packet-id de-duplication, mapping to Readings.
Baseline = ``BTHomeBluetoothDeviceData.update`` with one long-lived parser per device
(how Home Assistant uses it), on the same frames.

The frames are a mix: Shelly BLU Button1 encrypted presses, plain door/window and motion
adverts, each with fresh packet ids / counters so nothing is skipped as a duplicate.
Last line: JSON with adverts_per_s, baseline_adverts_per_s, cpu_ms_per_1000 and more.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bthome_ble import BTHomeBluetoothDeviceData  # noqa: E402
from bthome_frames import SHELLY_KEY, SHELLY_MAC, button, encrypted, plain  # noqa: E402
from habluetooth import BluetoothServiceInfoBleak  # noqa: E402

from drivers.ble.driver import Advert, BleDriver, BleOptions  # noqa: E402
from drivers.ble.protocol import BTHOME_UUID  # noqa: E402
from gateway.clock import Clock  # noqa: E402
from gateway.model import Sensor, SensorKind, Transport  # noqa: E402

DOOR_MAC = "A4:C1:38:8D:18:B2"
MOTION_MAC = "A4:C1:38:00:00:01"
SENSORS = [
    Sensor("btn1", SensorKind.BUTTON, Transport.BLE, SHELLY_MAC, "bedroom", key_ref="k"),
    Sensor("door1", SensorKind.DOOR, Transport.BLE, DOOR_MAC, "entrance"),
    Sensor("motion1", SensorKind.MOTION, Transport.BLE, MOTION_MAC, "hall"),
]
NAMES = {SHELLY_MAC: "SBBT-002C", DOOR_MAC: "SBDW-002C", MOTION_MAC: "SBMO-003Z"}


def frames(n: int) -> list[tuple[str, bytes, float]]:
    out: list[tuple[str, bytes, float]] = []
    for i in range(n):
        pid = (i // 3) % 256
        t = float(i)
        match i % 3:
            case 0:
                raw = encrypted(button(pid), SHELLY_MAC, SHELLY_KEY, 1000 + i)
                out.append((SHELLY_MAC, raw, t))
            case 1:
                out.append((DOOR_MAC, plain(bytes([0x00, pid, 0x01, 90, 0x2D, i & 1])), t))
            case _:
                objs = bytes([0x00, pid, 0x01, 80, 0x05, 0x4C, 0x04, 0x00, 0x21, 1])
                out.append((MOTION_MAC, plain(objs), t))
    return out


def run_driver(data: list[tuple[str, bytes, float]]) -> tuple[float, float, list[float]]:
    driver = BleDriver(SENSORS, {"k": SHELLY_KEY.hex()}, clock=Clock(assume_synced=True),
                       options=BleOptions(heartbeat_s=1e9))
    adverts = [Advert(mac, NAMES[mac], -60, {BTHOME_UUID: raw}, t) for mac, raw, t in data]
    lat: list[float] = []

    async def go() -> int:
        n = 0
        for a in adverts:
            t0 = time.perf_counter()
            n += len(await driver.process(a))
            lat.append(time.perf_counter() - t0)
        return n

    w0, c0 = time.perf_counter(), time.process_time()
    readings = asyncio.run(go())
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    assert driver.stats.frames_rejected == 0, driver.stats
    assert readings >= len(data), readings
    return wall, cpu, lat


def run_baseline(data: list[tuple[str, bytes, float]]) -> tuple[float, float]:
    parsers = {SHELLY_MAC: BTHomeBluetoothDeviceData(SHELLY_KEY),
               DOOR_MAC: BTHomeBluetoothDeviceData(), MOTION_MAC: BTHomeBluetoothDeviceData()}
    infos = [
        BluetoothServiceInfoBleak(NAMES[mac], mac, -60, {}, {BTHOME_UUID: raw}, [BTHOME_UUID],
                                  "bench", None, None, False, t, None)  # type: ignore[arg-type]
        for mac, raw, t in data
    ]
    w0, c0 = time.perf_counter(), time.process_time()
    for info in infos:
        parsers[info.address].update(info)
    return time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adverts", type=int, default=3000, help="adverts per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    args = ap.parse_args()
    data = frames(args.adverts)
    drv, base, lats = [], [], []
    for _ in range(args.rounds):
        wall, cpu, lat = run_driver(data)
        drv.append((wall, cpu))
        lats.extend(lat)
        base.append(run_baseline(data))
    n = args.adverts
    d_wall = statistics.median(w for w, _ in drv)
    d_cpu = statistics.median(c for _, c in drv)
    b_wall = statistics.median(w for w, _ in base)
    b_cpu = statistics.median(c for _, c in base)
    lats.sort()
    result = {
        "adverts": n,
        "rounds": args.rounds,
        "adverts_per_s": round(n / d_wall, 1),
        "baseline_adverts_per_s": round(n / b_wall, 1),
        "throughput_ratio": round(b_wall / d_wall, 3),
        "cpu_ms_per_1000": round(d_cpu / n * 1000 * 1000, 2),
        "baseline_cpu_ms_per_1000": round(b_cpu / n * 1000 * 1000, 2),
        "p50_us": round(lats[len(lats) // 2] * 1e6, 1),
        "p99_us": round(lats[int(len(lats) * 0.99)] * 1e6, 1),
        "mix": "1/3 encrypted Shelly button, 1/3 plain door, 1/3 plain motion",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
