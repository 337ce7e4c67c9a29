"""The serial driver over real pseudo-terminals, a real TCP socket and loop://.

An emulator writes device frames on the pty master; the driver opens a stable symlink
(as /dev/serial/by-id/... is) to the slave. Unplug closes the master; re-plug opens a
new pty and re-points the symlink.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.serial import bedpad, ld2410, mr60
from drivers.serial.driver import SerialDriver, build_serial_drivers
from gateway.backoff import Backoff
from gateway.errors import ConfigError
from gateway.model import Reading, ReadingKind, Sensor, SensorKind, Transport
from gateway.store import Store
from tests.serial_emulator import PtyDevice

pytestmark = pytest.mark.timeout(30)

LD_STILL = bytes.fromhex("F4 F3 F2 F1 0D 00 02 AA 02 51 00 00 00 00 3B 00 00 55 00 F8 F7 F6 F5")
LD_BOTH = bytes.fromhex("f4 f3 f2 f1 0d 00 02 aa 03 4f 00 64 4c 00 64 32 00 55 00 f8 f7 f6 f5")
LD_NONE = bytes.fromhex("F4 F3 F2 F1 0D 00 02 AA 00 45 00 3E 00 00 3A 00 00 55 00 F8 F7 F6 F5")
LD_BAD_TAIL = LD_STILL[:-1] + b"\x00"


def port_sensor(sid: str, address: str, protocol: str, kind: SensorKind) -> Sensor:
    return Sensor(sid, kind, Transport.SERIAL, address, "bedroom", 60.0,
                  options={"protocol": protocol})


def radio(sid: str, address: str, kind: SensorKind) -> Sensor:
    return Sensor(sid, kind, Transport.RF433, address, "living", 3600.0)


@pytest.fixture
def device(tmp_path: Path) -> PtyDevice:
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    dev = PtyDevice(by_id / "usb-1a86_USB_Serial-if00-port0")
    yield dev
    dev.close()


class Run:
    """Drives ``driver.readings()`` and hands out readings with a bounded wait."""

    def __init__(self, driver: SerialDriver) -> None:
        self.driver = driver
        self.it: AsyncIterator[Reading] = driver.readings()

    async def next(self, timeout: float = 10.0) -> Reading:
        return await asyncio.wait_for(anext(self.it), timeout)

    async def until(self, kind: ReadingKind, value: object = ..., timeout: float = 10.0) -> Reading:
        while True:
            r = await self.next(timeout)
            if r.kind is kind and (value is ... or r.value == value):
                return r

    async def close(self) -> None:
        await self.it.aclose()  # type: ignore[attr-defined]
        await self.driver.close()


@contextlib.asynccontextmanager
async def running(driver: SerialDriver) -> AsyncIterator[Run]:
    run = Run(driver)
    try:
        yield run
    finally:
        await run.close()


def fast(sensor: Sensor, **kw: object) -> SerialDriver:
    return SerialDriver(sensor, backoff_min_s=0.02, backoff_max_s=0.1, tick_s=0.05, **kw)  # type: ignore[arg-type]


async def test_ld2410_presence_over_pty(device: PtyDevice) -> None:
    device.plug()
    drv = fast(port_sensor("radar-bed", str(device.link), "ld2410", SensorKind.RADAR_PRESENCE))
    async with running(drv) as run:
        up = await run.next()
        assert (up.kind, up.value, up.sensor_id) == (ReadingKind.LINK, "up", "radar-bed")
        device.write(b"\x00\x13junk" + LD_BAD_TAIL + LD_BOTH[:5])
        device.write(LD_BOTH[5:])
        occ = await run.next()
        dist = await run.next()
        assert (occ.kind, occ.value) == (ReadingKind.OCCUPANCY, True)
        assert occ.extra["target"] == "both"
        assert (dist.kind, dist.value, dist.unit) == (ReadingKind.DISTANCE, 76, "cm")
        device.write(LD_BOTH * 5 + LD_NONE)  # unchanged reports are held back
        occ = await run.next()
        assert (occ.kind, occ.value) == (ReadingKind.OCCUPANCY, False)
    assert drv.stats.frames_ok == 7
    assert drv.stats.frames_rejected == 1
    assert drv.stats.rejects_by_reason == {"bad frame tail": 1}


async def test_unplug_and_replug_recovered(device: PtyDevice) -> None:
    device.plug()
    drv = fast(port_sensor("radar-bed", str(device.link), "ld2410", SensorKind.RADAR_PRESENCE))
    async with running(drv) as run:
        assert (await run.next()).value == "up"
        device.write(LD_BOTH)
        assert (await run.until(ReadingKind.OCCUPANCY)).value is True
        device.write(LD_STILL[:10])  # the adapter is pulled mid-frame
        device.unplug()
        down = await run.until(ReadingKind.LINK)
        assert down.value == "down"
        assert down.extra["port"] == str(device.link)
        assert drv.connected is False
        device.plug()  # udev re-creates the by-id link to a new tty
        up = await run.until(ReadingKind.LINK)
        assert up.value == "up"
        device.write(LD_NONE)
        occ = await run.until(ReadingKind.OCCUPANCY)
        assert occ.value is False
        # and once more: a second outage recovers as well
        device.unplug()
        assert (await run.until(ReadingKind.LINK)).value == "down"
        device.plug()
        assert (await run.until(ReadingKind.LINK)).value == "up"
    assert drv.stats.reconnects == 2
    assert drv.stats.frames_rejected == 0  # the half frame was dropped, not misparsed


async def test_missing_at_start_is_down_once_then_up(device: PtyDevice) -> None:
    drv = fast(port_sensor("pad", str(device.link), "bedpad", SensorKind.BED))
    async with running(drv) as run:
        down = await run.next()
        assert (down.kind, down.value) == (ReadingKind.LINK, "down")
        await asyncio.sleep(0.3)  # several failed retries, none announced again
        device.plug()
        up = await run.next()
        assert (up.kind, up.value) == (ReadingKind.LINK, "up")


async def test_bedpad_over_pty(device: PtyDevice) -> None:
    device.plug()
    drv = fast(port_sensor("pad", str(device.link), "bedpad", SensorKind.BED),
               options={"enter_s": 0.0, "exit_s": 0.2})
    async with running(drv) as run:
        await run.until(ReadingKind.LINK)
        device.write(
            bedpad.encode_hello(0, 1, 2, 7, 5) + bedpad.encode_status(1, bedpad.BedState.IN, 900)
        )
        r = await run.next()
        assert (r.kind, r.value, r.extra["pressure"]) == (ReadingKind.IN_BED, True, 900)
        assert (await run.next()).kind is ReadingKind.BATTERY_LOW
        assert ((await run.next()).kind, drv.interpreter.debouncer.state) == (  # type: ignore[union-attr]
            ReadingKind.TAMPER, True
        )
        device.write(bedpad.encode_status(2, bedpad.BedState.OUT, 10, bedpad.FLAG_TAMPER))
        tamper = await run.next()
        assert (tamper.kind, tamper.value) == (ReadingKind.TAMPER, True)
        # No new frame: the debouncer's timer confirms the exit on its own.
        r = await run.until(ReadingKind.IN_BED)
        assert r.value is False
        assert r.extra["debounce_s"] == 0.2


async def test_mr60fda2_fall_over_pty(device: PtyDevice) -> None:
    device.plug()
    drv = fast(port_sensor("radar-bath", str(device.link), "mr60fda2", SensorKind.RADAR_FALL))
    async with running(drv) as run:
        await run.until(ReadingKind.LINK)
        device.write(
            mr60.encode(mr60.TYPE_PRESENCE, b"\x01") + mr60.encode(mr60.TYPE_FALL, b"\x01")
        )
        assert (await run.next()).kind is ReadingKind.OCCUPANCY
        fall = await run.next()
        assert (fall.kind, fall.value, fall.sensor_id) == (ReadingKind.FALL, True, "radar-bath")
        device.write(mr60.encode(mr60.TYPE_FALL, b"\x00"))
        assert (await run.until(ReadingKind.FALL)).value is False


async def test_fall_behind_noise_is_not_held_when_the_radar_goes_quiet(device: PtyDevice) -> None:
    device.plug()
    drv = fast(port_sensor("radar-bath", str(device.link), "mr60fda2", SensorKind.RADAR_FALL))
    async with running(drv) as run:
        await run.until(ReadingKind.LINK)
        noise = mr60.encode(0x0A04, bytes(300))[:8]  # a header owing 300 bytes
        device.write(noise + mr60.encode(mr60.TYPE_FALL, b"\x01"))
        fall = await run.until(ReadingKind.FALL)
        assert fall.value is True


async def test_mr60bha2_vitals_over_pty(device: PtyDevice) -> None:
    device.plug()
    drv = fast(port_sensor("vitals", str(device.link), "mr60bha2", SensorKind.RADAR_VITALS))
    async with running(drv) as run:
        await run.until(ReadingKind.LINK)
        device.write(
            mr60.encode(mr60.TYPE_HEART_RATE, bytes.fromhex("00009042"))
            + mr60.encode(mr60.TYPE_BREATH_RATE, bytes.fromhex("00008041"))
        )
        hr = await run.next()
        br = await run.next()
        assert (hr.kind, hr.value, hr.unit) == (ReadingKind.HEART_RATE, 72.0, "bpm")
        assert (br.kind, br.value, br.unit) == (ReadingKind.BREATHING, 16.0, "rpm")


async def test_rflink_over_socket_pairs_by_address() -> None:
    """RFLink through a TCP serial bridge (socket://): paired devices only, repeats merged."""
    lines: asyncio.Queue[bytes] = asyncio.Queue()
    writers: list[asyncio.StreamWriter] = []
    handlers: list[asyncio.Task[None]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        while True:
            writer.write(await lines.get())
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    receiver = port_sensor("rx433", f"socket://127.0.0.1:{port}", "rflink", SensorKind.OTHER)
    button = radio("btn-bed", "rflink:ev1527:0f7499", SensorKind.BUTTON)
    door = radio("door", "rflink:newkaku:cac142:1", SensorKind.DOOR)
    smoke = radio("smoke", "rflink:fa20rf:97e3b2", SensorKind.SMOKE)
    (drv,) = build_serial_drivers([receiver, button, door, smoke])
    drv.backoff = Backoff(0.02, 0.1)
    try:
        async with running(drv) as run:
            assert (await run.next()).value == "up"
            press = b"20;77;EV1527;ID=0f7499;SWITCH=04;CMD=ON;\r\n"
            for line in (
                b"20;00;Nodo RadioFrequencyLink - RFLink Gateway V1.1 - R46;\r\n",
                press, press, press,  # one press, sent three times by the transmitter
                b"20;78;EV1527;ID=abcdef;SWITCH=01;CMD=ON;\r\n",  # a neighbour's doorbell
                b"20;79;NewKaku;ID=cac142;SWITCH=1;CMD=ON;\r\n",
                b"20;7A;FA20RF;ID=97e3b2;SMOKEALERT=ON;\r\n",
            ):
                await lines.put(line)
            got = [await run.next() for _ in range(3)]
            assert [(r.sensor_id, r.kind, r.value) for r in got] == [
                ("btn-bed", ReadingKind.BUTTON, "press"),
                ("door", ReadingKind.CONTACT, True),
                ("smoke", ReadingKind.SMOKE, True),
            ]
            assert [u["address"] for u in drv.unpaired] == ["rflink:ev1527:abcdef:01"]
            assert drv.unpaired[0]["count"] == 1
            # The bridge drops the connection: link down, then up again when it is back.
            for w in writers:
                w.close()
            assert (await run.until(ReadingKind.LINK)).value == "down"
            assert (await run.until(ReadingKind.LINK)).value == "up"
    finally:
        for w in writers:
            w.close()
        for t in handlers:
            t.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        server.close()
        await server.wait_closed()


async def test_rtl433_lines_over_pty(device: PtyDevice) -> None:
    device.plug()
    receiver = port_sensor("sdr", str(device.link), "rtl433", SensorKind.OTHER)
    leak = radio("leak-bath", "rtl433:govee-water:4242", SensorKind.WATER_LEAK)
    door = radio("door-front", "rtl433:honeywell-security:39809", SensorKind.DOOR)
    drv = fast(receiver, radio_sensors=[leak, door])
    async with running(drv) as run:
        await run.until(ReadingKind.LINK)
        device.write(
            b"[rtl_433] Tuned to 433.920MHz.\n"
            b'{"model":"Govee-Water","id":4242,"event":"Water Leak",'
            b'"detect_wet":1,"battery_ok":1}\n'
            b'{"model" : "Honeywell-Security", "id" : 39809, "channel" : 8, "state" : "open",'
            b' "contact_open" : 1, "tamper" : 1, "battery_ok" : 0}\n'
        )
        got = [await run.next() for _ in range(5)]
        assert [(r.sensor_id, r.kind, r.value) for r in got] == [
            ("leak-bath", ReadingKind.WATER_LEAK, True),
            ("leak-bath", ReadingKind.BATTERY_LOW, False),
            ("door-front", ReadingKind.CONTACT, True),
            ("door-front", ReadingKind.BATTERY_LOW, True),
            ("door-front", ReadingKind.TAMPER, True),
        ]
    assert drv.stats.rejects_by_reason == {"not JSON": 1}


async def test_loop_url_write_and_read_back() -> None:
    drv = fast(port_sensor("pad", "loop://", "bedpad", SensorKind.BED))
    async with running(drv) as run:
        assert (await run.next()).value == "up"
        drv.write(bedpad.encode_status(1, bedpad.BedState.IN, 321))
        r = await run.until(ReadingKind.IN_BED)
        assert (r.value, r.extra["pressure"]) == (True, 321)


async def test_ld2410_command_ack_is_not_a_reading(device: PtyDevice) -> None:
    device.plug()
    drv = fast(port_sensor("radar", str(device.link), "ld2410", SensorKind.RADAR_PRESENCE))
    async with running(drv) as run:
        await run.until(ReadingKind.LINK)
        ack = bytes.fromhex("FD FC FB FA 08 00 FF 01 00 00 01 00 40 00 04 03 02 01")
        device.write(ack + LD_NONE)
        r = await run.next()
        assert (r.kind, r.value) == (ReadingKind.OCCUPANCY, False)
    assert drv.stats.frames_ok == 2
    assert ld2410.encode_command(ld2410.CMD_END_CONFIG).hex() == "fdfcfbfa0200fe0004030201"


def test_build_drivers_groups_433_sensors_by_receiver() -> None:
    rx1 = port_sensor("rx-rflink", "/dev/serial/by-id/usb-rflink", "rflink", SensorKind.OTHER)
    rx2 = port_sensor("rx-sdr", "socket://127.0.0.1:1234", "rtl433", SensorKind.OTHER)
    pad = port_sensor("pad", "/dev/serial/by-id/usb-pad", "bedpad", SensorKind.BED)
    a = radio("a", "rflink:ev1527:01", SensorKind.BUTTON)
    b = radio("b", "rtl433:kerui-security:840811", SensorKind.MOTION)
    drivers = build_serial_drivers([rx1, rx2, pad, a, b])
    assert [d.sensor.id for d in drivers] == ["rx-rflink", "rx-sdr", "pad"]
    assert [list(d.interpreter.by_address) for d in drivers[:2]] == [  # type: ignore[union-attr]
        ["rflink:ev1527:01"], ["rtl433:kerui-security:840811"]
    ]
    (only_rflink,) = build_serial_drivers([rx1, b])  # no rtl433 receiver: logged, not fatal
    assert only_rflink.interpreter.by_address == {}  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="unknown serial protocol 'ld2411'; known: ld2410"):
        build_serial_drivers([port_sensor("r", "/dev/x", "ld2411", SensorKind.RADAR_PRESENCE)])
    with pytest.raises(ConfigError, match="SOURCE:PROTOCOL:ID"):
        build_serial_drivers([rx1, radio("c", "ev1527-01", SensorKind.BUTTON)])


async def test_inbox_is_bounded_and_keeps_the_newest_bytes() -> None:
    from drivers.serial.driver import _Inbox, _Lost

    inbox = _Inbox(asyncio.get_running_loop(), limit=8)
    for i in range(4):
        inbox.put(bytes([i]) * 4)
    inbox.lost("EIO")
    await asyncio.sleep(0)
    assert await inbox.get(1.0) == b"\x02" * 4 + b"\x03" * 4
    assert inbox.dropped == 8
    lost = await inbox.get(1.0)
    assert isinstance(lost, _Lost)
    assert lost.reason == "EIO"
    assert await _Inbox(asyncio.get_running_loop()).get(0.01) is None


async def test_fall_over_pty_becomes_a_stored_fall_radar_alert(
    device: PtyDevice, store: Store
) -> None:
    """End to end on real parts: emulated MR60FDA2 on a pty -> driver -> detector -> SQLite."""
    from gateway.detect.radar import RadarFallDetector
    from gateway.model import AlertType

    device.plug()
    sensor = port_sensor("radar-bath", str(device.link), "mr60fda2", SensorKind.RADAR_FALL)
    detector = RadarFallDetector([sensor], store)
    detector.restore()
    drv = fast(sensor)
    async with running(drv) as run:
        await run.until(ReadingKind.LINK)
        device.write(
            mr60.encode(mr60.TYPE_PRESENCE, b"\x01") + mr60.encode(mr60.TYPE_FALL, b"\x01")
        )
        alerts = []
        while not alerts:
            reading = await run.next()
            store.add_readings([reading])
            alerts = list(detector.feed(reading))
        for alert in alerts:
            store.commit_alert(alert)
    (stored,) = store.alerts()
    assert (stored.type, stored.sensor_id, stored.room) == (
        AlertType.FALL_RADAR, "radar-bath", "bedroom"
    )
    assert stored.evidence["occupied"] is True
