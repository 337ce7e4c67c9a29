"""Build BTHome v2 frames for tests (plaintext objects, optionally AES-CCM encrypted)."""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers.aead import AESCCM

SHELLY_KEY = bytes.fromhex("90bffd73cb6b26ef58a7a8eba9232036")
SHELLY_MAC = "B4:35:22:F5:3D:A4"
# Captured from a Shelly BLU Button1 (bthome-ble's test-suite): packet id 7, press, counter 442.
SHELLY_PRESS = bytes.fromhex("450aeb84467f85ba0100003188788c")


def plain(objects: bytes, *, trigger: bool = True) -> bytes:
    return bytes([0x44 if trigger else 0x40]) + objects


def encrypted(objects: bytes, mac: str, key: bytes, counter: int, *, trigger: bool = True) -> bytes:
    flags = 0x45 if trigger else 0x41
    ctr = counter.to_bytes(4, "little")
    nonce = bytes.fromhex(mac.replace(":", "")) + b"\xd2\xfc" + bytes([flags]) + ctr
    sealed = AESCCM(key, tag_length=4).encrypt(nonce, objects, None)
    return bytes([flags]) + sealed[:-4] + ctr + sealed[-4:]


def button(packet_id: int, gesture: int = 1, battery: int = 100) -> bytes:
    """Objects of a Shelly BLU Button1 advert: packet id, battery, button event."""
    return bytes([0x00, packet_id, 0x01, battery, 0x3A, gesture])
