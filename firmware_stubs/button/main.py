# Anxin emergency button: BTHome v2, encrypted, on a Seeed Studio XIAO ESP32C3.
#
# Wiring (see README.md): push button between D1 (GPIO3) and GND, internal pull-up;
# battery through a 1:2 divider (2 x 1 MOhm, 100 nF) to A2 (GPIO4).
# On flash: main.py (this file), lib/bthome.py, lib/inputs.py, config.py with
#   KEY = "<32 hex digits>"   # the bind key also written to the gateway's secrets file
#
# Every advert carries packet id (0x00), battery (0x01) and, for a gesture, the button
# event (0x3A: press, double press, triple press, long press). Adverts are encrypted with
# AES-CCM; the counter in the nonce comes from flash (bthome.Counter) so it never repeats.
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

BUTTON_PIN = const(3)
BATTERY_PIN = const(4)
POLL_MS = const(10)  # sampling while a press is in progress
IDLE_MS = const(100)  # otherwise; the pin IRQ cuts the wait short on a board (lightsleep)
ADV_INTERVAL_US = const(30_000)  # 30 ms: fast, so a scanner catches the event at once
ADV_BURST_MS = const(1500)  # how long one payload stays on air


def _cfg(name, default):
    return getattr(config, name, default) if config is not None else default


class App:
    def __init__(self):
        key = _cfg("KEY", None)
        self.key = bthome.parse_key(key) if key else None
        self.name = _cfg("NAME", "AX-BTN")
        self.heartbeat_ms = int(_cfg("HEARTBEAT_S", 600)) * 1000
        self.empty_v = _cfg("BATTERY_EMPTY_V", 2.9)
        self.full_v = _cfg("BATTERY_FULL_V", 3.4)
        self.divider = _cfg("BATTERY_DIVIDER", 2.0)
        self.button = machine.Pin(BUTTON_PIN, machine.Pin.IN, machine.Pin.PULL_UP)
        self.battery = machine.ADC(machine.Pin(BATTERY_PIN), atten=machine.ADC.ATTN_11DB)
        self.gestures = inputs.Gestures(
            debounce_ms=_cfg("DEBOUNCE_MS", 30), long_ms=_cfg("LONG_MS", 800), gap_ms=_cfg("GAP_MS", 350)
        )
        self.counter = bthome.Counter("bthome.cnt", block=_cfg("COUNTER_BLOCK", 16))
        self.ble = bluetooth.BLE()
        self.ble.active(True)
        self.mac = bytes(self.ble.config("mac")[1])
        self.packet_id = 0
        self.woken = False
        self.adv_until = None
        self.next_heartbeat = time.ticks_ms()  # announce at power-up
        self.button.irq(self._wake, machine.Pin.IRQ_FALLING | machine.Pin.IRQ_RISING)

    def _wake(self, _pin):
        self.woken = True

    def battery_percent(self):
        volts = self.battery.read_uv() * self.divider / 1_000_000
        return bthome.battery_percent(volts, self.empty_v, self.full_v)

    def objects(self, event):
        self.packet_id = (self.packet_id + 1) & 0xFF
        obj = bytes([bthome.OBJ_PACKET_ID, self.packet_id, bthome.OBJ_BATTERY, self.battery_percent()])
        if event:
            obj += bytes([bthome.OBJ_BUTTON, event])
        return obj

    def advertise(self, event, now):
        counter = self.counter.take() if self.key is not None else 0
        data = bthome.frame(self.objects(event), self.mac, self.key, counter, trigger=bool(event))
        self.ble.gap_advertise(ADV_INTERVAL_US, bthome.advertisement(data, self.name), connectable=False)
        self.adv_until = time.ticks_add(now, ADV_BURST_MS)
        self.next_heartbeat = time.ticks_add(now, self.heartbeat_ms)

    def step(self):
        """One turn of the main loop: sample, maybe advertise, sleep."""
        now = time.ticks_ms()
        event = self.gestures.feed(self.button.value() == 0, now)
        if event:
            self.advertise(event, now)
        elif time.ticks_diff(now, self.next_heartbeat) >= 0:
            self.advertise(0, now)
        elif self.adv_until is not None and time.ticks_diff(now, self.adv_until) >= 0:
            self.ble.gap_advertise(None)
            self.adv_until = None
        busy = self.gestures.busy or self.woken
        self.woken = False
        time.sleep_ms(POLL_MS if busy else IDLE_MS)


def main():
    app = App()
    while True:
        app.step()


if __name__ == "__main__":
    main()
