# BTHome v2 advertisements for MicroPython: objects, AES-CCM encryption, persisted counter.
#
# Runs unchanged on a board (copy to /lib on the flash) and under CPython through
# firmware_stubs/host. Written for MicroPython: no f-strings with format specs the port may
# lack, no int.from_bytes keywords, no dataclasses, bytes built from lists.
#
# Frame (service data of UUID 0xFCD2):
#   flags | objects...                                    (plaintext)
#   flags | AES-CCM(objects) | counter (u32 LE) | MIC (4)  (encrypted)
# flags: bit 0 encrypted, bit 2 trigger based, bits 5-7 version (2).
# nonce = MAC (6, as printed) | UUID 0xFCD2 little endian (d2 fc) | flags | counter (4 LE).
import os

import cryptolib
from micropython import const

_AES_ECB = const(1)  # cryptolib has no mode constants unless the port enables them
UUID16 = const(0xFCD2)
FLAG_ENCRYPTED = const(0x01)
FLAG_TRIGGER = const(0x04)
_VERSION_2 = const(0x40)
MIC_LEN = const(4)

# Object ids (BTHome v2); a frame lists them in ascending id order.
OBJ_PACKET_ID = const(0x00)
OBJ_BATTERY = const(0x01)
OBJ_OPENING = const(0x11)
OBJ_BUTTON = const(0x3A)

# Button events (object 0x3A).
EVENT_NONE = const(0x00)
EVENT_PRESS = const(0x01)
EVENT_DOUBLE = const(0x02)
EVENT_TRIPLE = const(0x03)
EVENT_LONG = const(0x04)

_AD_FLAGS = const(0x01)
_AD_NAME_SHORT = const(0x08)
_AD_NAME = const(0x09)
_AD_SERVICE_DATA16 = const(0x16)
_ADV_MAX = const(31)


def _ctr_block(nonce, i):
    # A_i: flags (L - 1 = 1) | nonce (13) | i (2, big endian)
    return bytes([0x01]) + nonce + bytes([(i >> 8) & 0xFF, i & 0xFF])


def ccm_encrypt(key, nonce, msg, mic_len=MIC_LEN):
    """AES-CCM (RFC 3610, L = 2, no associated data) on top of AES-ECB.

    Returns (ciphertext, mic). MicroPython's cryptolib only offers ECB/CBC/CTR without
    authentication, so the CBC-MAC and the counter stream are built here from ECB blocks.
    """
    if len(key) != 16 or len(nonce) != 13:
        raise ValueError("key must be 16 bytes and nonce 13")
    aes = cryptolib.aes(key, _AES_ECB)
    n = len(msg)
    b0 = bytes([(((mic_len - 2) // 2) << 3) | 0x01]) + nonce + bytes([(n >> 8) & 0xFF, n & 0xFF])
    x = aes.encrypt(b0)
    for i in range(0, n, 16):
        blk = msg[i:i + 16]
        x = aes.encrypt(bytes([x[j] ^ blk[j] if j < len(blk) else x[j] for j in range(16)]))
    out = bytearray(n)
    for i in range(0, n, 16):
        s = aes.encrypt(_ctr_block(nonce, i // 16 + 1))
        for j in range(min(16, n - i)):
            out[i + j] = msg[i + j] ^ s[j]
    s0 = aes.encrypt(_ctr_block(nonce, 0))
    mic = bytes([x[j] ^ s0[j] for j in range(mic_len)])
    return bytes(out), mic


def frame(objects, mac=None, key=None, counter=0, trigger=True):
    """One BTHome v2 service-data payload. ``mac`` (6 bytes) and ``counter`` when ``key``."""
    flags = _VERSION_2 | (FLAG_TRIGGER if trigger else 0)
    if key is None:
        return bytes([flags]) + bytes(objects)
    flags |= FLAG_ENCRYPTED
    ctr = (counter & 0xFFFFFFFF).to_bytes(4, "little")
    nonce = bytes(mac) + bytes([UUID16 & 0xFF, UUID16 >> 8, flags]) + ctr
    sealed, mic = ccm_encrypt(key, nonce, bytes(objects))
    return bytes([flags]) + sealed + ctr + mic


def advertisement(service_data, name=None):
    """Legacy advertising data: flags, BTHome service data, then the name if it fits."""
    adv = bytes([2, _AD_FLAGS, 0x06])
    adv += bytes([3 + len(service_data), _AD_SERVICE_DATA16, UUID16 & 0xFF, UUID16 >> 8])
    adv += service_data
    if len(adv) > _ADV_MAX:
        raise ValueError("BTHome payload too long for one advertisement")
    if name:
        room = _ADV_MAX - len(adv) - 2
        if room > 0:
            raw = name.encode()
            kind = _AD_NAME if len(raw) <= room else _AD_NAME_SHORT
            raw = raw[:room]
            adv += bytes([len(raw) + 1, kind]) + raw
    return adv


def battery_percent(volts, empty_v, full_v):
    if volts <= empty_v:
        return 0
    if volts >= full_v:
        return 100
    return int((volts - empty_v) * 100 / (full_v - empty_v) + 0.5)


def parse_key(text):
    """A bind key as 32 hex digits (the form the gateway's secrets file uses)."""
    text = text.strip()
    if len(text) != 32:
        raise ValueError("bind key must be 32 hex digits")
    return bytes([int(text[i:i + 2], 16) for i in range(0, 32, 2)])


class Counter:
    """The encryption counter, never reused across reboots.

    The gateway rejects a frame whose counter is not above the last one it accepted, so a
    counter that went back after a reset would mute the sensor. Writing flash on every
    advert would wear it, so the file holds a *reservation*: before the first value of a
    block of ``block`` counters is used, the end of the block is written (new file, then
    rename, so a power cut leaves the old or the new value, never a torn one). After a
    reboot counting resumes at the stored reservation: at most ``block - 1`` values are
    skipped, none repeated.
    """

    def __init__(self, path="bthome.cnt", block=16):
        self.path = path
        self.block = block
        self.next = self._load()
        self.limit = self.next

    def _load(self):
        for path in (self.path, self.path + ".tmp"):
            try:
                with open(path) as f:
                    return int(f.read().strip())
            except (OSError, ValueError):
                pass
        return 0

    def _store(self, value):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(value))
        try:  # noqa: SIM105 - MicroPython has no contextlib
            os.remove(self.path)
        except OSError:
            pass
        os.rename(tmp, self.path)

    def take(self):
        if self.next >= self.limit:
            self.limit = self.next + self.block
            self._store(self.limit)
        value = self.next
        self.next += 1
        return value
