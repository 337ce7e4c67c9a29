# Anxin pendant: 50 Hz accelerometer stream over GATT notifications, plus "I'm OK".
#
# Board: Seeed Studio XIAO ESP32C3 with an ADXL345 breakout on I2C (SDA D4/GPIO6,
# SCL D5/GPIO7, 400 kHz, address 0x53 with SDO to GND), the "I'm OK" button between
# D1 (GPIO3) and GND, battery through a 1:2 divider to A2 (GPIO4). See README.md.
#
# Frame (the gateway's docs/pendant-protocol.md, version 1), little endian:
#   A5 | 01 | seq u16 | n u8 | scale_ug u16 | n x (x, y, z int16) | CRC-8 (poly 0x07, init 0)
# n is 10 samples once the central negotiated an ATT MTU of at least 71, else 2 (MTU 23).
# The ADXL345 runs at 50 Hz in FIFO stream mode (32 entries), so the loop can sleep
# 100 ms between reads without losing samples.
import struct
import time

import bluetooth
import machine
from micropython import const

try:
    import config
except ImportError:
    config = None

SDA_PIN = const(6)
SCL_PIN = const(7)
BUTTON_PIN = const(3)
BATTERY_PIN = const(4)
ADXL = const(0x53)
REG_DEVID = const(0x00)
REG_BW_RATE = const(0x2C)
REG_POWER_CTL = const(0x2D)
REG_DATA_FORMAT = const(0x31)
REG_DATAX0 = const(0x32)
REG_FIFO_CTL = const(0x38)
REG_FIFO_STATUS = const(0x39)
SCALE_UG = const(3906)  # full resolution: 3.9 mg per count at any range
MAGIC = const(0xA5)
VERSION = const(1)
MAX_PER_FRAME = const(10)
POLL_MS = const(100)
LOCKOUT_MS = const(300)
BATTERY_EVERY_MS = const(60_000)
ADV_INTERVAL_US = const(250_000)

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_MTU_EXCHANGED = const(21)
_FLAG_READ = const(0x0002)
_FLAG_NOTIFY = const(0x0010)

SERVICE_UUID = "7a6e0001-5f1c-4a7e-9f3b-616e78696e01"
ACCEL_UUID = "7a6e0002-5f1c-4a7e-9f3b-616e78696e01"
CANCEL_UUID = "7a6e0003-5f1c-4a7e-9f3b-616e78696e01"


def _cfg(name, default):
    return getattr(config, name, default) if config is not None else default


def crc8(data):
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def encode_frame(seq, samples, scale_ug=SCALE_UG):
    body = struct.pack("<BBHBH", MAGIC, VERSION, seq & 0xFFFF, len(samples), scale_ug)
    for x, y, z in samples:
        body += struct.pack("<hhh", x, y, z)
    return body + bytes([crc8(body)])


def samples_for_mtu(mtu):
    return max(1, min(MAX_PER_FRAME, (mtu - 3 - 8) // 6))


def _uuid128_le(text):
    hexits = text.replace("-", "")
    return bytes([int(hexits[i:i + 2], 16) for i in range(30, -2, -2)])


def adv_payload(name):
    adv = bytes([2, 0x01, 0x06, 17, 0x07]) + _uuid128_le(SERVICE_UUID)
    short = name.encode()[: 31 - len(adv) - 2]
    return adv + bytes([len(short) + 1, 0x08]) + short


class App:
    def __init__(self):
        self.name = _cfg("NAME", "Anxin Pendant")
        self.empty_v = _cfg("BATTERY_EMPTY_V", 3.3)
        self.full_v = _cfg("BATTERY_FULL_V", 4.1)
        self.i2c = machine.I2C(0, sda=machine.Pin(SDA_PIN), scl=machine.Pin(SCL_PIN), freq=400_000)
        self._adxl_init()
        self.button = machine.Pin(BUTTON_PIN, machine.Pin.IN, machine.Pin.PULL_UP)
        self.cancel_pending = False
        self.last_edge = None
        self.button.irq(self._button, machine.Pin.IRQ_FALLING)
        self.battery = machine.ADC(machine.Pin(BATTERY_PIN), atten=machine.ADC.ATTN_11DB)
        self.ble = bluetooth.BLE()
        self.ble.active(True)
        self.ble.config(gap_name=self.name, mtu=247)
        self.ble.irq(self._irq)
        svc = (
            bluetooth.UUID(SERVICE_UUID),
            (
                (bluetooth.UUID(ACCEL_UUID), _FLAG_NOTIFY),
                (bluetooth.UUID(CANCEL_UUID), _FLAG_READ | _FLAG_NOTIFY),
            ),
        )
        bas = (bluetooth.UUID(0x180F), ((bluetooth.UUID(0x2A19), _FLAG_READ | _FLAG_NOTIFY),))
        ((self.h_accel, self.h_cancel), (self.h_battery,)) = self.ble.gatts_register_services((svc, bas))
        self.conn = None
        self.per_frame = samples_for_mtu(23)
        self.seq = 0
        self.buf = []
        self.dropped = 0
        self.next_battery = time.ticks_ms()
        self._advertise()

    def _adxl_init(self):
        if self.i2c.readfrom_mem(ADXL, REG_DEVID, 1)[0] != 0xE5:
            raise OSError("ADXL345 not found at 0x53")
        self.i2c.writeto_mem(ADXL, REG_POWER_CTL, b"\x00")  # standby while configuring
        self.i2c.writeto_mem(ADXL, REG_BW_RATE, b"\x09")  # 50 Hz output data rate
        self.i2c.writeto_mem(ADXL, REG_DATA_FORMAT, b"\x0b")  # full resolution, +-16 g
        self.i2c.writeto_mem(ADXL, REG_FIFO_CTL, b"\x80")  # stream mode
        self.i2c.writeto_mem(ADXL, REG_POWER_CTL, b"\x08")  # measure

    def _advertise(self):
        resp = bytes([len(self.name) + 1, 0x09]) + self.name.encode()
        self.ble.gap_advertise(ADV_INTERVAL_US, adv_payload(self.name), resp_data=resp[:31])

    def _irq(self, event, data):
        if event == _IRQ_CENTRAL_CONNECT:
            self.conn = data[0]
            self.per_frame = samples_for_mtu(23)
            self.buf = []
        elif event == _IRQ_CENTRAL_DISCONNECT:
            self.conn = None
            self._advertise()
        elif event == _IRQ_MTU_EXCHANGED:
            self.per_frame = samples_for_mtu(data[1])

    def _button(self, _pin):
        # Edges closer than LOCKOUT_MS are the contact bouncing: one press, not several.
        now = time.ticks_ms()
        if self.last_edge is None or time.ticks_diff(now, self.last_edge) > LOCKOUT_MS:
            self.cancel_pending = True
        self.last_edge = now

    def read_fifo(self):
        n = self.i2c.readfrom_mem(ADXL, REG_FIFO_STATUS, 1)[0] & 0x3F
        out = []
        for _ in range(n):
            out.append(struct.unpack("<hhh", self.i2c.readfrom_mem(ADXL, REG_DATAX0, 6)))
        return out

    def stream(self):
        samples = self.read_fifo()
        if self.conn is None:
            return  # nobody listens: keep the FIFO drained, start afresh on connect
        self.buf.extend(samples)
        while len(self.buf) >= self.per_frame:
            chunk, self.buf = self.buf[: self.per_frame], self.buf[self.per_frame:]
            try:
                self.ble.gatts_notify(self.conn, self.h_accel, encode_frame(self.seq, chunk))
            except OSError:
                self.dropped += 1  # link going down; the gateway counts the gap from seq
            self.seq = (self.seq + 1) & 0xFFFF

    def battery_percent(self):
        volts = self.battery.read_uv() * 2 / 1_000_000
        if volts <= self.empty_v:
            return 0
        return min(100, int((volts - self.empty_v) * 100 / (self.full_v - self.empty_v) + 0.5))

    def step(self):
        now = time.ticks_ms()
        self.stream()
        if self.cancel_pending:
            self.cancel_pending = False
            self.ble.gatts_write(self.h_cancel, b"\x01")
            if self.conn is not None:
                self.ble.gatts_notify(self.conn, self.h_cancel, b"\x01")
        if time.ticks_diff(now, self.next_battery) >= 0:
            self.ble.gatts_write(self.h_battery, bytes([self.battery_percent()]))
            if self.conn is not None:
                self.ble.gatts_notify(self.conn, self.h_battery)
            self.next_battery = time.ticks_add(now, BATTERY_EVERY_MS)
        time.sleep_ms(POLL_MS)


def main():
    app = App()
    while True:
        app.step()


if __name__ == "__main__":
    main()
