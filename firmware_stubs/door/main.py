# Anxin door contact: BTHome v2 opening (0x11) from a reed switch, on a XIAO ESP32C3.
#
# Wiring (see README.md): normally-open reed switch between D1 (GPIO3) and GND, internal
# pull-up; the magnet on the door closes the reed, so the pin reads 0 with the door shut
# and 1 (open) when the magnet moves away -- a cut wire also reads "open", the safe side.
# Battery through a 1:2 divider to A2 (GPIO4).
# config.py (optional): KEY = "<32 hex digits>" to encrypt; without it adverts are plain.
#
# An advert on every debounced change (trigger based) and a heartbeat with the current
# state every HEARTBEAT_S, so the gateway knows the sensor is alive.
import time

import bluetooth
import bthome
import inputs
import machine
from micropython import const

try:
    import config
except ImportError:
    config = None

REED_PIN = const(3)
BATTERY_PIN = const(4)
POLL_MS = const(10)
IDLE_MS = const(200)
ADV_INTERVAL_US = const(50_000)
ADV_BURST_MS = const(1500)


def _cfg(name, default):
    return getattr(config, name, default) if config is not None else default


class App:
    def __init__(self):
        key = _cfg("KEY", None)
        self.key = bthome.parse_key(key) if key else None
        self.name = _cfg("NAME", "AX-DOOR")
        self.heartbeat_ms = int(_cfg("HEARTBEAT_S", 300)) * 1000
        self.empty_v = _cfg("BATTERY_EMPTY_V", 2.9)
        self.full_v = _cfg("BATTERY_FULL_V", 3.4)
        self.divider = _cfg("BATTERY_DIVIDER", 2.0)
        self.reed = machine.Pin(REED_PIN, machine.Pin.IN, machine.Pin.PULL_UP)
        self.battery = machine.ADC(machine.Pin(BATTERY_PIN), atten=machine.ADC.ATTN_11DB)
        self.contact = inputs.Debounced(self.reed.value() == 1, _cfg("DEBOUNCE_MS", 50))
        self.counter = bthome.Counter("bthome.cnt", block=_cfg("COUNTER_BLOCK", 16)) if self.key else None
        self.ble = bluetooth.BLE()
        self.ble.active(True)
        self.mac = bytes(self.ble.config("mac")[1])
        self.packet_id = 0
        self.woken = False
        self.adv_until = None
        self.next_heartbeat = time.ticks_ms()
        self.reed.irq(self._wake, machine.Pin.IRQ_FALLING | machine.Pin.IRQ_RISING)

    def _wake(self, _pin):
        self.woken = True

    def battery_percent(self):
        volts = self.battery.read_uv() * self.divider / 1_000_000
        return bthome.battery_percent(volts, self.empty_v, self.full_v)

    def advertise(self, now, trigger):
        self.packet_id = (self.packet_id + 1) & 0xFF
        objects = bytes([
            bthome.OBJ_PACKET_ID, self.packet_id,
            bthome.OBJ_BATTERY, self.battery_percent(),
            bthome.OBJ_OPENING, 1 if self.contact.level else 0,
        ])
        counter = self.counter.take() if self.counter is not None else 0
        data = bthome.frame(objects, self.mac, self.key, counter, trigger=trigger)
        self.ble.gap_advertise(ADV_INTERVAL_US, bthome.advertisement(data, self.name), connectable=False)
        self.adv_until = time.ticks_add(now, ADV_BURST_MS)
        self.next_heartbeat = time.ticks_add(now, self.heartbeat_ms)

    def step(self):
        now = time.ticks_ms()
        if self.contact.feed(self.reed.value() == 1, now):
            self.advertise(now, True)
        elif time.ticks_diff(now, self.next_heartbeat) >= 0:
            self.advertise(now, False)
        elif self.adv_until is not None and time.ticks_diff(now, self.adv_until) >= 0:
            self.ble.gap_advertise(None)
            self.adv_until = None
        busy = self.contact.settling or self.woken
        self.woken = False
        time.sleep_ms(POLL_MS if busy else IDLE_MS)


def main():
    app = App()
    while True:
        app.step()


if __name__ == "__main__":
    main()
