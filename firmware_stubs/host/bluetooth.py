"""Stand-in for MicroPython's ``bluetooth``: advertising, a GATT server, notifications.

What leaves the radio is handed to the board's listeners: every ``gap_advertise`` call
becomes one :class:`HostAdvert` (``Board.on_advert`` callbacks, ``Board.adverts``), and
every ``gatts_notify`` one :class:`Notification`. Tests play the central with
``Board.ble_connect(mtu)`` / ``Board.ble_disconnect()``.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .board import Board

FLAG_BROADCAST = 0x0001
FLAG_READ = 0x0002
FLAG_WRITE_NO_RESPONSE = 0x0004
FLAG_WRITE = 0x0008
FLAG_NOTIFY = 0x0010
FLAG_INDICATE = 0x0020

IRQ_CENTRAL_CONNECT = 1
IRQ_CENTRAL_DISCONNECT = 2
IRQ_GATTS_WRITE = 3
IRQ_MTU_EXCHANGED = 21

BASE_UUID = "0000{:04x}-0000-1000-8000-00805f9b34fb"


class UUID:
    def __init__(self, value: int | str | bytes) -> None:
        if isinstance(value, int):
            self.text = BASE_UUID.format(value)
        elif isinstance(value, bytes | bytearray):
            self.text = bytes(reversed(value)).hex()
            self.text = "-".join((self.text[:8], self.text[8:12], self.text[12:16], self.text[16:20], self.text[20:]))
        else:
            self.text = str(value).lower()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UUID) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


@dataclass(frozen=True, slots=True)
class HostAdvert:
    """One advertising payload as a scanner would receive it."""

    mac: str
    t_ms: int
    adv_data: bytes
    resp_data: bytes
    connectable: bool
    name: str
    service_data: dict[str, bytes]  # 128-bit UUID text (bleak's form) -> data
    service_uuids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Notification:
    t_ms: int
    conn: int
    handle: int
    uuid: str
    data: bytes


def parse_ad(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    i = 0
    while i < len(data):
        n = data[i]
        if n == 0:
            break
        out.append((data[i + 1], bytes(data[i + 2:i + 1 + n])))
        i += 1 + n
    return out


def _decode(mac: str, t_ms: int, adv: bytes, resp: bytes, connectable: bool) -> HostAdvert:
    name = ""
    sd: dict[str, bytes] = {}
    uuids: list[str] = []
    for kind, value in parse_ad(adv) + parse_ad(resp):
        if kind in (0x08, 0x09) and (kind == 0x09 or not name):
            name = value.decode("utf-8", "replace")
        elif kind == 0x16 and len(value) >= 2:
            sd[BASE_UUID.format(int.from_bytes(value[:2], "little"))] = value[2:]
        elif kind in (0x06, 0x07):
            uuids += [str(UUID(value[i:i + 16])) for i in range(0, len(value), 16)]
        elif kind in (0x02, 0x03):
            uuids += [BASE_UUID.format(int.from_bytes(value[i:i + 2], "little")) for i in range(0, len(value), 2)]
    return HostAdvert(mac, t_ms, adv, resp, connectable, name, sd, tuple(uuids))


class BLE:
    _board: Board
    _instance: BLE | None = None

    def __new__(cls) -> BLE:  # MicroPython's BLE() is a singleton
        if cls._instance is None:
            inst = super().__new__(cls)
            inst._setup()
            cls._instance = inst
        return cls._instance

    def _setup(self) -> None:
        self._active = False
        self._irq: Callable[[int, Any], Any] | None = None
        self._config: dict[str, Any] = {"gap_name": "MPY", "mtu": 23}
        self._values: dict[int, bytes] = {}
        self._uuids: dict[int, str] = {}
        self._next_handle = 1
        self.conn: int | None = None
        self.advertising: tuple[int, bytes, bytes, bool] | None = None

    def active(self, on: bool | None = None) -> bool:
        if on is not None:
            self._active = bool(on)
        return self._active

    def config(self, *names: str, **values: Any) -> Any:
        self._config.update(values)
        if names:
            if names[0] == "mac":
                return (0, self._board.mac_bytes)
            return self._config.get(names[0])
        return None

    def irq(self, handler: Callable[[int, Any], Any]) -> None:
        self._irq = handler

    def gap_advertise(self, interval_us: int | None, adv_data: bytes | None = None,
                      resp_data: bytes | None = None, connectable: bool = True) -> None:
        if not self._active:
            raise OSError(22, "BLE not active")
        if interval_us is None:
            self.advertising = None
            return
        if adv_data is None and self.advertising is not None:
            adv_data = self.advertising[1]
        adv = bytes(adv_data or b"")
        resp = bytes(resp_data or b"")
        if len(adv) > 31 or len(resp) > 31:
            raise ValueError("legacy advertising data is at most 31 bytes")
        self.advertising = (int(interval_us), adv, resp, connectable)
        self._board.emit_advert(_decode(self._board.mac, self._board.now_ms, adv, resp, connectable))

    def gatts_register_services(self, services: Any) -> tuple[tuple[int, ...], ...]:
        out = []
        for _svc_uuid, chars in services:
            handles = []
            for char in chars:
                handle = self._next_handle
                self._next_handle += 2  # value handle, then its CCCD
                self._values[handle] = b""
                self._uuids[handle] = str(char[0])
                handles.append(handle)
            out.append(tuple(handles))
        return tuple(out)

    def gatts_write(self, handle: int, data: bytes, send_update: bool = False) -> None:
        self._values[handle] = bytes(data)

    def gatts_read(self, handle: int) -> bytes:
        return self._values[handle]

    def gatts_notify(self, conn: int, handle: int, data: bytes | None = None) -> None:
        if conn != self.conn:
            raise OSError(128, "ENOTCONN")
        payload = self._values[handle] if data is None else bytes(data)
        mtu = int(self._config.get("_mtu", 23))
        if len(payload) > mtu - 3:
            raise ValueError(f"notification of {len(payload)} bytes exceeds ATT MTU {mtu}")
        self._board.emit_notification(
            Notification(self._board.now_ms, conn, handle, self._uuids.get(handle, ""), payload)
        )

    def gap_disconnect(self, conn: int) -> bool:
        if conn != self.conn:
            return False
        self._board.ble_disconnect()
        return True

    # ---------------------------------------------------------------- central side (tests)

    def _central_connect(self, mtu: int) -> int:
        self.conn = 64
        self.advertising = None  # a peripheral stops advertising on connection
        self._config["_mtu"] = 23
        self._event(IRQ_CENTRAL_CONNECT, (self.conn, 0, bytes(6)))
        if mtu != 23:
            self._config["_mtu"] = min(mtu, int(self._config.get("mtu", 23)))
            self._event(IRQ_MTU_EXCHANGED, (self.conn, self._config["_mtu"]))
        return self.conn

    def _central_disconnect(self) -> None:
        if self.conn is None:
            return
        conn, self.conn = self.conn, None
        self._event(IRQ_CENTRAL_DISCONNECT, (conn, 0, bytes(6)))

    def _event(self, event: int, data: Any) -> None:
        if self._irq is not None:
            self._irq(event, data)


def make_module(board: Board) -> types.ModuleType:
    m = types.ModuleType("bluetooth")
    m.BLE = type("BLE", (BLE,), {"_board": board, "_instance": None})  # type: ignore[attr-defined]
    m.UUID = UUID  # type: ignore[attr-defined]
    for name, value in list(globals().items()):
        if name.startswith("FLAG_"):
            setattr(m, name, value)
    return m
