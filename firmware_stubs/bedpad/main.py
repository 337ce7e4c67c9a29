# Anxin bed pad: a pressure mat on an ADC, reported in the bed-pad serial protocol.
#
# Board: Seeed Studio XIAO ESP32C3, USB powered. Wiring (see README.md): the mat (a
# resistive pressure mat / FSR strip) from 3V3 to A2 (GPIO4), 10 kOhm from A2 to GND, and
# 1 MOhm across the mat's connector so an empty bed still reads a little above zero while
# an unplugged mat reads zero (open circuit). UART1 TX on D6 (GPIO21) to the gateway's RX,
# 9600 8N1, 3.3 V levels.
#
# Frame (docs/bedpad-protocol.md and drivers/serial/bedpad.py of the gateway, version 1):
#   A5 5A | len | type | seq | payload[len-2] | CRC-16/CCITT-FALSE (big endian)
# len counts type, seq and payload; the CRC covers len, type, seq and payload.
#   HELLO  0x02: major u8, minor u8, serial u32 LE, interval_s u8 -- once at power-up
#   STATUS 0x01: state u8 (0 out, 1 in, 2 unknown), pressure u16 LE, flags u8
#                (bit 0 battery low, bit 1 tamper: the mat cable unplugged or cut)
#   FAULT  0x03: code u8 (1 open circuit, 2 short circuit, 3 calibration)
# The pad reports its raw state on every change and every INTERVAL_S; the gateway
# debounces (someone turning over is not a bed exit), so the pad only applies hysteresis.
import struct
import time

import machine
from micropython import const

try:
    import config
except ImportError:
    config = None

MAT_PIN = const(4)
UART_ID = const(1)
TX_PIN = const(21)
RX_PIN = const(20)
BAUD = const(9600)
FW_MAJOR = const(1)
FW_MINOR = const(0)

TYPE_STATUS = const(0x01)
TYPE_HELLO = const(0x02)
TYPE_FAULT = const(0x03)
OUT = const(0)
IN = const(1)
UNKNOWN = const(2)
FAULT_OPEN = const(1)
FAULT_SHORT = const(2)
FLAG_BATTERY_LOW = const(0x01)
FLAG_TAMPER = const(0x02)

SAMPLE_MS = const(100)
SMOOTH = const(5)  # median of the last 5 samples: one spike is not a person


def _cfg(name, default):
    return getattr(config, name, default) if config is not None else default


def crc16_ccitt(data, crc=0xFFFF):
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        crc &= 0xFFFF
    return crc


def encode(frame_type, seq, payload):
    body = bytes([len(payload) + 2, frame_type, seq & 0xFF]) + payload
    crc = crc16_ccitt(body)
    return b"\xa5\x5a" + body + bytes([crc >> 8, crc & 0xFF])


def status_frame(seq, state, pressure, flags=0):
    return encode(TYPE_STATUS, seq, struct.pack("<BHB", state, pressure, flags))


def hello_frame(seq, serial, interval_s, major=FW_MAJOR, minor=FW_MINOR):
    return encode(TYPE_HELLO, seq, struct.pack("<BBIB", major, minor, serial, interval_s))


def fault_frame(seq, code):
    return encode(TYPE_FAULT, seq, bytes([code]))


class Mat:
    """ADC counts -> OUT / IN with hysteresis, or a fault for a cut or shorted mat."""

    def __init__(self, on_level, off_level, open_below, short_above):
        self.on_level = on_level
        self.off_level = off_level
        self.open_below = open_below
        self.short_above = short_above
        self.state = UNKNOWN

    def classify(self, pressure):
        """Return (state, fault code or 0)."""
        if pressure < self.open_below:
            self.state = UNKNOWN
            return UNKNOWN, FAULT_OPEN
        if pressure > self.short_above:
            self.state = UNKNOWN
            return UNKNOWN, FAULT_SHORT
        if pressure >= self.on_level:
            self.state = IN
        elif pressure <= self.off_level or self.state == UNKNOWN:
            self.state = OUT
        return self.state, 0


class App:
    def __init__(self):
        self.interval_s = int(_cfg("INTERVAL_S", 5))
        self.uart = machine.UART(UART_ID, baudrate=BAUD, tx=machine.Pin(TX_PIN), rx=machine.Pin(RX_PIN))
        self.adc = machine.ADC(machine.Pin(MAT_PIN), atten=machine.ADC.ATTN_11DB)
        self.mat = Mat(
            _cfg("ON_LEVEL", 20000), _cfg("OFF_LEVEL", 14000), _cfg("OPEN_BELOW", 300), _cfg("SHORT_ABOVE", 64000)
        )
        uid = bytes(machine.unique_id())
        self.serial = int.from_bytes(uid[-4:], "big")
        self.seq = 0
        self.window = []
        self.reported = None  # (state, fault) last sent
        self.next_report = time.ticks_ms()
        self.send(hello_frame(self.seq, self.serial, self.interval_s))

    def send(self, frame):
        self.uart.write(frame)
        self.seq = (self.seq + 1) & 0xFF

    def pressure(self):
        self.window.append(self.adc.read_u16())
        if len(self.window) > SMOOTH:
            self.window.pop(0)
        return sorted(self.window)[len(self.window) // 2]

    def step(self):
        now = time.ticks_ms()
        pressure = self.pressure()
        state, fault = self.mat.classify(pressure)
        due = time.ticks_diff(now, self.next_report) >= 0
        if (state, fault) != self.reported or due:
            if fault:
                self.send(fault_frame(self.seq, fault))
            # An open circuit is the mat's plug pulled or its cable cut: the tamper flag.
            self.send(status_frame(self.seq, state, pressure, FLAG_TAMPER if fault == FAULT_OPEN else 0))
            self.reported = (state, fault)
            self.next_report = time.ticks_add(now, self.interval_s * 1000)
        time.sleep_ms(SAMPLE_MS)


def main():
    app = App()
    while True:
        app.step()


if __name__ == "__main__":
    main()
