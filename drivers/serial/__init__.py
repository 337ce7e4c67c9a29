"""Serial sensors: mmWave radars (HLK-LD2410, Seeed MR60FDA2/MR60BHA2), 433 MHz receivers
(RFLink, rtl_433 JSON lines) and the project's bed pad.

Each protocol is a pure module (bytes in, frozen dataclasses out, no I/O) built on the
incremental framer in :mod:`drivers.serial.framing`; :mod:`drivers.serial.driver` does the I/O.
"""
