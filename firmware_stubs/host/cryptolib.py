"""Stand-in for MicroPython's ``cryptolib``: AES through the ``cryptography`` package.

Only what the firmware uses: ``aes(key, 1)`` (ECB) with ``encrypt``/``decrypt`` of whole
16-byte blocks, which is all MicroPython offers without a port option.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MODE_ECB = 1
MODE_CBC = 2
MODE_CTR = 6


class aes:
    def __init__(self, key: bytes, mode: int, iv: bytes | None = None) -> None:
        if mode != MODE_ECB:
            raise NotImplementedError("the host shim implements AES-ECB only")
        if len(key) not in (16, 32):
            raise ValueError("key")
        self._cipher = Cipher(algorithms.AES(bytes(key)), modes.ECB())

    def encrypt(self, data: bytes) -> bytes:
        if len(data) % 16:
            raise ValueError("data must be a multiple of 16 bytes")
        enc = self._cipher.encryptor()
        return enc.update(bytes(data)) + enc.finalize()

    def decrypt(self, data: bytes) -> bytes:
        if len(data) % 16:
            raise ValueError("data must be a multiple of 16 bytes")
        dec = self._cipher.decryptor()
        return dec.update(bytes(data)) + dec.finalize()
