"""BLE driver: bleak scanning -> BTHome frames -> Readings for paired sensors only.

Flow: bleak's detection callback (or a test, through :meth:`BleDriver.on_advertisement`)
puts an :class:`Advert` on a bounded queue; ``readings()`` takes them one by one through
:meth:`BleDriver.process` (decode, authenticate, replay check, packet-id de-duplication,
mapping) and yields the readings. A watchdog task restarts a scanner that has gone silent,
then recovers the adapter, then raises a ``gateway_health`` alert; it never exits.

BlueZ reports a device's advertisement to D-Bus clients only when a property changes
(``DuplicateData`` is off by default, and even with it on, BlueZ emits PropertiesChanged
only for changed values). A sensor repeating the same payload may therefore be heard only
through RSSI changes. So last-seen is taken from *every* callback for a paired address,
not from decoded payload changes, and an ``rssi`` heartbeat reading is emitted at most every
``heartbeat_s`` so that supervision downstream sees a live sensor whose payload is constant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drivers.base import Driver
from drivers.ble.protocol import BTHOME_UUID, PROTOCOL, BTHomeFrame, decode, parse_bindkey
from gateway.clock import Clock, Stamp
from gateway.config import BleConfig, Config
from gateway.errors import ConfigError, DeviceUnavailableError, FrameError
from gateway.model import Alert, AlertState, AlertType, Reading, ReadingKind, Sensor, Transport
from gateway.store import Store

log = logging.getLogger(__name__)

BUTTON_EVENT_PREFIX = "button"
BINARY_KINDS: Mapping[str, ReadingKind] = {
    "window": ReadingKind.CONTACT,
    "door": ReadingKind.CONTACT,
    "opening": ReadingKind.CONTACT,
    "garage_door": ReadingKind.CONTACT,
    "motion": ReadingKind.MOTION,
    "occupancy": ReadingKind.OCCUPANCY,
    "presence": ReadingKind.OCCUPANCY,
    "battery": ReadingKind.BATTERY_LOW,
    "tamper": ReadingKind.TAMPER,
    "smoke": ReadingKind.SMOKE,
    "gas": ReadingKind.GAS,
    "moisture": ReadingKind.WATER_LEAK,
}
MEASUREMENT_KINDS: Mapping[str, tuple[ReadingKind, str]] = {
    "battery": (ReadingKind.BATTERY, "%"),
    "temperature": (ReadingKind.TEMPERATURE, "°C"),
}


def counter_name(mac: str) -> str:
    """The store counter that holds a sensor's last accepted encryption counter."""
    return f"bthome:{mac.upper()}"


@dataclass(frozen=True, slots=True)
class Advert:
    """One advertisement as the scanner reported it."""

    address: str
    name: str
    rssi: int | None
    service_data: Mapping[str, bytes]
    mono: float


@dataclass(frozen=True, slots=True)
class BleOptions:
    adapter: str = "hci0"
    scanning_mode: str = "passive"
    dedup_window_s: float = 30.0
    heartbeat_s: float = 60.0
    watchdog_silence_s: float = 120.0
    watchdog_check_s: float = 5.0
    queue_max: int = 2000
    unpaired_max: int = 256

    @classmethod
    def from_config(cls, ble: BleConfig, sensors: Iterable[Sensor]) -> BleOptions:
        """Options from the [ble] section; the watchdog default follows the sensors."""
        silence = ble.watchdog_silence_s
        if silence is None:
            intervals = [s.expected_interval_s for s in sensors
                         if s.transport is Transport.BLE and s.expected_interval_s]
            silence = max(120.0, min(intervals)) if intervals else 600.0
        return cls(
            adapter=ble.adapter,
            scanning_mode=ble.scanning_mode,
            dedup_window_s=ble.dedup_window_s,
            heartbeat_s=ble.heartbeat_s,
            watchdog_silence_s=silence,
        )


@dataclass(slots=True)
class UnpairedDevice:
    """A BTHome device heard but not in the config: listed for pairing, never a Reading."""

    address: str
    name: str
    rssi: int | None
    encrypted: bool
    last_seen_mono: float
    count: int = 0


@dataclass(slots=True)
class BleCounters:
    duplicates: int = 0
    heartbeats: int = 0
    queue_overflow: int = 0
    scanner_restarts: int = 0
    adapter_recoveries: int = 0
    health_alerts: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def frame_readings(
    frame: BTHomeFrame, sensor: Sensor, stamp: Stamp, rssi: int | None
) -> list[Reading]:
    """Map one decoded frame to readings. Buttons first: they are the urgent ones."""
    extra: dict[str, Any] = {"rssi_dbm": rssi, "packet_id": frame.packet_id}
    out: list[Reading] = []
    for key, gesture in frame.events:
        if key.startswith(BUTTON_EVENT_PREFIX):
            ex = {**extra, "button": key}
            out.append(Reading.at(stamp, sensor.id, ReadingKind.BUTTON, gesture, extra=ex))
    for key, on in frame.binary:
        kind = BINARY_KINDS.get(key)
        if kind is not None:
            out.append(Reading.at(stamp, sensor.id, kind, on, extra={**extra, "object": key}))
    for m in frame.measurements:
        mapped = MEASUREMENT_KINDS.get(m.key)
        if mapped is not None:
            kind, unit = mapped
            out.append(Reading.at(stamp, sensor.id, kind, m.value, unit=unit, extra=extra))
    return out


ScannerFactory = Callable[[Callable[[Any, Any], None], str, str], Any]
"""(detection_callback, scanning_mode, adapter) -> an object with async start() and stop()."""
Recover = Callable[[str], Awaitable[bool]]


def bleak_scanner(callback: Callable[[Any, Any], None], mode: str, adapter: str) -> Any:
    """A BleakScanner. Passive mode matches BTHome service data via an advertisement monitor."""
    from bleak import BleakScanner

    if mode == "passive":
        from bleak.args.bluez import OrPattern
        from bleak.assigned_numbers import AdvertisementDataType

        pattern = OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\xd2\xfc")
        return BleakScanner(
            callback, scanning_mode="passive", bluez={"adapter": adapter, "or_patterns": [pattern]}
        )
    # DuplicateData: ask BlueZ for repeated adverts too (see the module docstring).
    return BleakScanner(
        callback,
        scanning_mode="active",
        bluez={"adapter": adapter, "filters": {"DuplicateData": True}},
    )


class BleDriver(Driver):
    """BTHome sensors over BLE. Only addresses in the config become readings."""

    name = "ble"

    def __init__(
        self,
        sensors: Iterable[Sensor],
        keys: Mapping[str, str] | None = None,
        *,
        store: Store | None = None,
        clock: Clock | None = None,
        options: BleOptions | None = None,
        scanner_factory: ScannerFactory | None = None,
        recover: Recover | None = None,
        on_health: Callable[[Alert], None] | None = None,
    ) -> None:
        super().__init__()
        self.options = options or BleOptions()
        self.store = store
        self.clock = clock or Clock()
        self.paired: dict[str, Sensor] = {}
        self.bindkeys: dict[str, bytes] = {}
        self._load_sensors(sensors, keys or {})
        self.unpaired: dict[str, UnpairedDevice] = {}
        self.counters = BleCounters()
        self.health: asyncio.Queue[Alert] = asyncio.Queue()
        self.scanning_mode = ""
        self._scanner_factory = scanner_factory or bleak_scanner
        self._recover = recover or recover_adapter
        self._on_health = on_health
        self._queue: asyncio.Queue[Advert] = asyncio.Queue(self.options.queue_max)
        self._scanner: Any = None
        self._watchdog: asyncio.Task[None] | None = None
        self._mem_counters: dict[str, int] = {}
        self._pending_counters: dict[str, int] = {}
        self._last_raw: dict[str, bytes] = {}
        self._last_packet: dict[str, tuple[int, float]] = {}
        self._last_emit: dict[str, float] = {}
        self.last_seen: dict[str, float] = {}
        self._last_any = 0.0
        self._last_action = time.monotonic()
        self._health_alert: Alert | None = None
        self._passive_refused = False

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        *,
        store: Store | None = None,
        clock: Clock | None = None,
        on_health: Callable[[Alert], None] | None = None,
    ) -> BleDriver:
        """The driver for a loaded config: its BLE sensors, bind keys and [ble] options."""
        sensors = cfg.sensor_list()
        return cls(
            sensors,
            cfg.secrets.keys,
            store=store,
            clock=clock,
            options=BleOptions.from_config(cfg.ble, sensors),
            on_health=on_health,
        )

    def _load_sensors(self, sensors: Iterable[Sensor], keys: Mapping[str, str]) -> None:
        for s in sensors:
            if s.transport is not Transport.BLE:
                continue
            mac = s.address.upper()
            self.paired[mac] = s
            if s.key_ref:
                if s.key_ref not in keys:
                    raise ConfigError(
                        f"sensor {s.id!r} names bind key {s.key_ref!r}, "
                        "which is not in the secrets file [keys]",
                        key="sensors.key",
                    )
                try:
                    self.bindkeys[mac] = parse_bindkey(keys[s.key_ref])
                except FrameError as exc:
                    raise ConfigError(
                        f"bind key {s.key_ref!r}: {exc.reason}", key="secrets.keys"
                    ) from None

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        await self._start_scanner()
        self._last_action = time.monotonic()
        self._watchdog = asyncio.create_task(self._watch(), name="ble-watchdog")

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        await self._stop_scanner()

    async def _start_scanner(self) -> None:
        mode = "active" if self._passive_refused else self.options.scanning_mode
        adapter = self.options.adapter
        if mode == "passive":
            try:
                self._scanner = self._scanner_factory(self._detected, "passive", adapter)
                await self._scanner.start()
            except Exception as exc:  # noqa: BLE001 - any refusal of passive mode means: fall back
                log.warning(
                    "passive BLE scanning is not available on %s (%s: %s); falling back to "
                    "active scanning (BlueZ needs the AdvertisementMonitor API, bluetoothd "
                    "--experimental on BlueZ < 5.65)",
                    self.options.adapter, type(exc).__name__, exc,
                )
                await self._stop_scanner()
                self._passive_refused = True  # restarts by the watchdog go straight to active
                mode = "active"
        if mode == "active":
            try:
                self._scanner = self._scanner_factory(self._detected, "active", adapter)
                await self._scanner.start()
            except Exception as exc:
                self._scanner = None
                raise DeviceUnavailableError(
                    f"BLE adapter {self.options.adapter}: cannot start scanning: {exc}"
                ) from exc
        self.scanning_mode = mode
        log.info("BLE scanning on %s in %s mode", self.options.adapter, mode)

    async def _stop_scanner(self) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is None:
            return
        try:
            async with asyncio.timeout(10):
                await scanner.stop()
        except Exception as exc:  # noqa: BLE001 - a wedged BlueZ may fail to stop; go on
            log.warning("stopping the BLE scanner failed: %s: %s", type(exc).__name__, exc)

    # ------------------------------------------------------------------ input

    def _detected(self, device: Any, adv: Any) -> None:
        self.on_advertisement(
            Advert(
                address=str(device.address),
                name=adv.local_name or getattr(device, "name", None) or "",
                rssi=adv.rssi,
                service_data=dict(adv.service_data),
                mono=time.monotonic(),
            )
        )

    def on_advertisement(self, advert: Advert) -> None:
        """Entry point for every advertisement (bleak's callback calls this)."""
        self._last_any = advert.mono
        try:
            self._queue.put_nowait(advert)
        except asyncio.QueueFull:
            self.counters.queue_overflow += 1

    async def readings(self) -> AsyncIterator[Reading]:
        while True:
            advert = await self._queue.get()
            for reading in await self.process(advert, commit_counter=False):
                yield reading
            # The consumer asks for the next reading only once it has handled these (a
            # press's alert is committed by then): only now is the counter advanced in the
            # store. Killed before that, the press is not lost: the button repeats its advert
            # for seconds, and after the restart that repeat is accepted as new.
            await self._commit_counters()

    # ------------------------------------------------------------------ decode path

    async def process(self, advert: Advert, *, commit_counter: bool = True) -> list[Reading]:
        """Everything one advertisement does: decode, checks, last-seen, readings.

        With ``commit_counter`` False an accepted encryption counter is only held (later
        adverts are checked against it) until ``_commit_counters`` stores it: ``readings``
        does that once the readings are handled, so a crash in between loses no press.
        """
        mac = advert.address.upper()
        raw = advert.service_data.get(BTHOME_UUID)
        sensor = self.paired.get(mac)
        if sensor is None:
            if raw is not None:
                self._note_unpaired(mac, advert, raw)
            return []
        stamp = self.clock.now()
        rejected_before = self.stats.frames_rejected
        out = (await self._decode_for(sensor, mac, raw, advert, stamp, commit_counter)
               if raw is not None else [])
        if self.stats.frames_rejected != rejected_before:
            return []  # a frame that failed its checks is no sign of life (it may be spoofed)
        self.last_seen[sensor.id] = advert.mono
        if out:
            self._last_emit[mac] = advert.mono
        elif advert.mono - self._last_emit.get(mac, -1e18) >= self.options.heartbeat_s:
            self._last_emit[mac] = advert.mono
            self.counters.heartbeats += 1
            out = [Reading.at(stamp, sensor.id, ReadingKind.RSSI, advert.rssi, unit="dBm",
                              extra={"heartbeat": True})]
        return out

    async def _decode_for(
        self, sensor: Sensor, mac: str, raw: bytes, advert: Advert, stamp: Stamp, commit_counter: bool
    ) -> list[Reading]:
        source = f"ble:{sensor.id}"
        try:
            frame = decode(raw, mac, bindkey=self.bindkeys.get(mac), name=advert.name)
        except FrameError as err:
            self._reject(err, source)
            return []
        if frame.counter is not None:
            if self._last_raw.get(mac) == raw:
                self.counters.duplicates += 1
                return []
            verdict = await self._check_counter(mac, frame.counter, commit_counter)
            if verdict == "duplicate":
                self.counters.duplicates += 1
                return []
            if verdict == "replay":
                self._reject(FrameError("replayed_counter", raw, protocol=PROTOCOL), source)
                log.warning(
                    "%s: encryption counter %d is not above the stored one; if the sensor's "
                    "battery was replaced, run `anxin ble reset-counter %s`",
                    source, frame.counter, sensor.id,
                )
                return []
            self._last_raw[mac] = raw
        if frame.packet_id is not None:
            last = self._last_packet.get(mac)
            window = self.options.dedup_window_s
            if last and last[0] == frame.packet_id and advert.mono - last[1] < window:
                self.counters.duplicates += 1
                return []
            self._last_packet[mac] = (frame.packet_id, advert.mono)
        self.stats.frames_ok += 1
        return frame_readings(frame, sensor, stamp, advert.rssi)

    async def _check_counter(self, mac: str, counter: int, commit: bool = True) -> str:
        name = counter_name(mac)
        if self.store is None:
            stored = self._mem_counters.get(name)
            if stored is not None and counter <= stored:
                return "duplicate" if counter == stored else "replay"
            self._mem_counters[name] = counter
            return "ok"
        if not commit:
            # Read each time (no fsync): `anxin ble reset-counter` on a running gateway
            # takes effect at once.
            held = await asyncio.to_thread(self.store.counter, name, -1)
            pending = self._pending_counters.get(name)
            if pending is not None:
                held = max(held, pending)
            if counter > held:
                self._pending_counters[name] = counter
                return "ok"
            return "duplicate" if counter == held else "replay"
        # advance_counter fsyncs: off the loop, so a slow SD card does not stall other sensors.
        if await asyncio.to_thread(self.store.advance_counter, name, counter):
            return "ok"
        stored = await asyncio.to_thread(self.store.counter, name)
        return "duplicate" if counter == stored else "replay"

    async def _commit_counters(self) -> None:
        """Store the counters of adverts whose readings have been handled."""
        if self.store is None:
            return
        while self._pending_counters:
            name, value = next(iter(self._pending_counters.items()))
            await asyncio.to_thread(self.store.advance_counter, name, value)
            if self._pending_counters.get(name) == value:
                del self._pending_counters[name]

    def _reject(self, err: FrameError, source: str) -> None:
        self.counters.reasons[err.reason] = self.counters.reasons.get(err.reason, 0) + 1
        self.stats.reject(err, source)

    def _note_unpaired(self, mac: str, advert: Advert, raw: bytes) -> None:
        known = self.unpaired.get(mac)
        if known is None:
            if len(self.unpaired) >= self.options.unpaired_max:
                # Bounded: random addresses (phones rotate them; an attacker can too) must
                # not grow memory. The longest-silent entry makes room.
                oldest = min(self.unpaired.values(), key=lambda u: u.last_seen_mono)
                del self.unpaired[oldest.address]
            log.info("unpaired BTHome device %s (%s) heard; add it to [[sensors]] to pair it",
                     mac, advert.name or "no name")
            encrypted = bool(raw[:1] and raw[0] & 1)
            known = UnpairedDevice(mac, advert.name, advert.rssi, encrypted, advert.mono)
            self.unpaired[mac] = known
        known.count += 1
        known.rssi = advert.rssi
        known.last_seen_mono = advert.mono
        known.name = advert.name or known.name

    # ------------------------------------------------------------------ watchdog

    async def _watch(self) -> None:
        stage = 0
        while True:
            await asyncio.sleep(self.options.watchdog_check_s)
            now = time.monotonic()
            if self._last_any > self._last_action:
                if stage:
                    self._recovered(stage)
                stage = 0
            if now - max(self._last_any, self._last_action) < self.options.watchdog_silence_s:
                continue
            stage += 1
            try:
                await self._escalate(stage)
            except Exception:  # the watchdog must outlive any one failed step
                log.exception("BLE watchdog step %d failed; will try again", stage)
            self._last_action = time.monotonic()

    async def _escalate(self, stage: int) -> None:
        silent_s = round(time.monotonic() - self._last_any, 1) if self._last_any else None
        if stage >= 2:
            log.error("BLE scanner still silent after a restart; recovering adapter %s",
                      self.options.adapter)
            self.counters.adapter_recoveries += 1
            try:
                ok = await self._recover(self.options.adapter)
            except Exception as exc:  # noqa: BLE001 - recovery is best effort; we escalate next
                log.error("adapter recovery failed: %s: %s", type(exc).__name__, exc)  # noqa: TRY400 - expected failure, no traceback
                ok = False
            log.warning("adapter %s recovery %s", self.options.adapter, "done" if ok else "failed")
        else:
            log.warning("BLE scanner silent for %ss; restarting it", silent_s)
        if stage >= 3 and self._health_alert is None:
            self._raise_health(silent_s, stage)
        self.counters.scanner_restarts += 1
        self.stats.reconnects += 1
        await self._stop_scanner()
        try:
            await self._start_scanner()
        except DeviceUnavailableError as exc:
            log.error("%s", exc)  # noqa: TRY400 - the message says it all

    def _raise_health(self, silent_s: float | None, stage: int) -> None:
        alert = Alert.raise_(
            AlertType.GATEWAY_HEALTH,
            self.clock.now(),
            evidence={
                "component": "ble_scanner",
                "adapter": self.options.adapter,
                "silent_s": silent_s,
                "attempts": stage,
                "actions": ["scanner_restart", "adapter_recovery"],
            },
        )
        self._health_alert = alert
        self.counters.health_alerts += 1
        log.error("BLE scanner on %s stays down; raising gateway_health", self.options.adapter)
        self._emit_health(alert)

    def _recovered(self, stage: int) -> None:
        log.warning("BLE scanner on %s delivers again (after %d recovery steps)",
                    self.options.adapter, stage)
        if self._health_alert is not None:
            resolved = self._health_alert.with_state(AlertState.RESOLVED)
            self._health_alert = None
            self._emit_health(resolved)

    def _emit_health(self, alert: Alert) -> None:
        self.health.put_nowait(alert)
        if self._on_health is not None:
            self._on_health(alert)


# ---------------------------------------------------------------------- adapter recovery


async def power_cycle_adapter(adapter: str, off_s: float = 1.0) -> bool:
    """Power the adapter off and on through BlueZ (org.bluez.Adapter1.Powered)."""
    from dbus_fast import BusType, Message, MessageType, Variant
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        for value in (False, True):
            reply = await bus.call(
                Message(
                    destination="org.bluez",
                    path=f"/org/bluez/{adapter}",
                    interface="org.freedesktop.DBus.Properties",
                    member="Set",
                    signature="ssv",
                    body=["org.bluez.Adapter1", "Powered", Variant("b", value)],
                )
            )
            if reply is None or reply.message_type == MessageType.ERROR:
                log.error("power cycle of %s: %s", adapter, reply.body if reply else "no reply")
                return False
            if not value:
                await asyncio.sleep(off_s)
    finally:
        bus.disconnect()
    return True


async def recover_adapter(adapter: str) -> bool:
    """bluetooth-auto-recovery (mgmt power cycle, rfkill, USB reset), else a BlueZ power cycle."""
    try:
        from bluetooth_auto_recovery import recover_adapter as bar_recover

        mac = await _adapter_address(adapter)
        if mac:
            async with asyncio.timeout(30):
                if await bar_recover(int(adapter.removeprefix("hci") or 0), mac, gone_silent=True):
                    return True
    except Exception as exc:  # noqa: BLE001 - fall through to the D-Bus power cycle
        log.warning("bluetooth-auto-recovery failed on %s: %s: %s",
                    adapter, type(exc).__name__, exc)
    return await power_cycle_adapter(adapter)


async def _adapter_address(adapter: str) -> str | None:
    from dbus_fast import BusType, Message, MessageType
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        reply = await bus.call(
            Message(
                destination="org.bluez",
                path=f"/org/bluez/{adapter}",
                interface="org.freedesktop.DBus.Properties",
                member="Get",
                signature="ss",
                body=["org.bluez.Adapter1", "Address"],
            )
        )
    finally:
        bus.disconnect()
    if reply is None or reply.message_type == MessageType.ERROR:
        return None
    return str(reply.body[0].value)


def sensors_from(sensors: Sequence[Sensor]) -> list[Sensor]:
    """The BLE sensors of a config's sensor list."""
    return [s for s in sensors if s.transport is Transport.BLE]
