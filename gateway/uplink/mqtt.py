"""One MQTT connection: a paho-mqtt 2.x client driven by the asyncio loop.

paho joins the loop through its socket callbacks (``on_socket_open``,
``on_socket_register_write`` ...): the loop's selector watches the socket and calls
``loop_read`` / ``loop_write``; a small task calls ``loop_misc`` for keepalive. There is no
paho thread, so every paho callback (CONNACK, PUBACK, messages) runs on the loop.

The one exception is the TCP connect and TLS handshake, which paho does blocking inside
``connect()``: that call runs in a worker thread so a black-holed broker cannot stall the
loop for ``connect_timeout``. While it runs nothing else touches the client, and the socket
callbacks it fires are handed to the loop with ``call_soon_threadsafe``.

A :class:`Connection` is used once: the uplink makes a fresh one for every attempt, so no
paho state (its own queue, its own retries) survives a disconnect; the store's outbox is
the only queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.errors import UplinkError

log = logging.getLogger(__name__)

MQTT5 = "5"
MQTT311 = "3.1.1"
_NO_RECEIVE_MAX = 65535  # MQTT 5 default when the CONNACK carries no Receive Maximum


class ConnectRefused(UplinkError):
    """The broker answered CONNACK with a failure (bad credentials, banned, ...)."""

    def __init__(self, reason: str, code: int, *, protocol_rejected: bool) -> None:
        self.code = code
        self.protocol_rejected = protocol_rejected
        super().__init__(f"broker refused the connection: {reason} ({code})")


class ProtocolUnanswered(UplinkError):
    """The TCP connection opened but no CONNACK came: maybe an MQTT 3.1.1-only broker."""


class TLSContext(ssl.SSLContext):
    """An SSLContext that remembers the sockets it wrapped: when the handshake fails
    (an untrusted certificate), paho leaves the wrapped socket open, and we close it."""

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        wrapped = super().wrap_socket(sock, *args, **kwargs)
        self.__dict__.setdefault("wrapped", weakref.WeakSet()).add(wrapped)
        return wrapped

    def close_stray(self, keep: object) -> None:
        for s in list(self.__dict__.get("wrapped", ())):
            if s is not keep:
                with contextlib.suppress(OSError):
                    s.close()
                self.__dict__["wrapped"].discard(s)


def tls_context(cafile: str | None) -> TLSContext:
    """Verify the broker's certificate and host name against ``cafile`` or the system CAs."""
    ctx = TLSContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        ctx.load_verify_locations(cafile)
    else:
        ctx.load_default_certs()
    return ctx


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    tls: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class Connack:
    protocol: str
    receive_max: int
    session_present: bool


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    response_topic: str | None
    correlation: bytes | None


OnPublish = Callable[[int, bool, str], None]
OnMessage = Callable[[Incoming], None]


class Connection:
    """One broker connection on the running loop. Create, ``await open()``, use, drop."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        client_id: str,
        protocol: str,
        keepalive_s: int,
        max_inflight: int,
        will: tuple[str, bytes] | None,
        on_publish: OnPublish,
        on_message: OnMessage,
        on_lost: Callable[[], None],
        after_read: Callable[[], None] | None = None,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.endpoint = endpoint
        self.protocol = protocol
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._on_publish_cb = on_publish
        self._on_message_cb = on_message
        self._on_lost_cb = on_lost
        self._after_read = after_read
        self._keepalive_s = keepalive_s
        self._fds: set[int] = set()
        self._writers: set[int] = set()
        self._connack: asyncio.Future[Connack] = self._loop.create_future()
        self._closed = asyncio.Event()
        self._misc_task: asyncio.Task[None] | None = None
        self.connected = False
        v5 = protocol == MQTT5
        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            clean_session=None if v5 else True,
        )
        c.connect_timeout = connect_timeout_s
        # paho's own cap on unacknowledged messages (it can only be set before connecting);
        # the uplink keeps its outbox window within the broker's Receive Maximum itself.
        c.max_inflight_messages_set(max(1, max_inflight))
        if endpoint.username is not None:
            c.username_pw_set(endpoint.username, endpoint.password)
        if endpoint.tls is not None:
            c.tls_set_context(endpoint.tls)
        if will is not None:
            c.will_set(will[0], will[1], qos=1, retain=True)
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        self.client = c

    # ------------------------------------------------------------------ opening

    async def open(self, timeout_s: float) -> Connack:
        """Connect and wait for a successful CONNACK; raise :class:`UplinkError` otherwise."""
        try:
            await self._loop.run_in_executor(None, self._blocking_connect)
        except (OSError, ssl.SSLError, ValueError) as exc:
            if isinstance(self.endpoint.tls, TLSContext):
                self.endpoint.tls.close_stray(keep=self.client.socket())
            self._mark_closed()
            raise UplinkError(
                f"cannot reach {self.endpoint.host}:{self.endpoint.port}: {exc}"
            ) from exc
        self._misc_task = asyncio.create_task(self._misc(), name="mqtt-misc")
        try:
            async with asyncio.timeout(timeout_s):
                return await self._connack
        except TimeoutError:
            self.abort()
            raise ProtocolUnanswered(f"no CONNACK within {timeout_s:g} s") from None
        except UplinkError:
            self.abort()
            raise

    def _blocking_connect(self) -> None:
        props = None
        if self.protocol == MQTT5:
            props = _properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0
            self.client.connect(
                self.endpoint.host,
                self.endpoint.port,
                self._keepalive_s,
                clean_start=True,
                properties=props,
            )
        else:
            self.client.connect(self.endpoint.host, self.endpoint.port, self._keepalive_s)

    # ------------------------------------------------------------------ socket callbacks

    def _call(self, fn: Callable[[], None]) -> None:
        if self._loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            fn()
        else:
            self._loop.call_soon_threadsafe(fn)

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        fd = sock.fileno()

        def add() -> None:
            self._fds.add(fd)
            self._loop.add_reader(fd, self._do_read)

        self._call(add)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        fd = sock.fileno()
        self._call(lambda: self._forget_fd(fd))

    def _on_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        fd = sock.fileno()

        def add() -> None:
            if fd in self._fds:
                self._writers.add(fd)
                self._loop.add_writer(fd, self._do_write)

        self._call(add)

    def _on_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        fd = sock.fileno()

        def remove() -> None:
            self._writers.discard(fd)
            self._loop.remove_writer(fd)

        self._call(remove)

    def _forget_fd(self, fd: int) -> None:
        if fd in self._fds:
            self._loop.remove_reader(fd)
            self._fds.discard(fd)
        if fd in self._writers:
            self._loop.remove_writer(fd)
            self._writers.discard(fd)

    def _do_read(self) -> None:
        self.client.loop_read()
        # TLS: a read may leave decrypted bytes in the SSL object that select() cannot see.
        sock = self.client.socket()
        while isinstance(sock, ssl.SSLSocket) and sock.pending() > 0:
            if self.client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
            sock = self.client.socket()
        # Outside paho's callbacks now: let the owner publish what the PUBACKs just made
        # room for, and write it at once rather than one loop turn later.
        if self._after_read is not None and self.connected:
            self._after_read()
        self.flush_writes()

    def flush_writes(self) -> None:
        """Write what paho has queued now; the selector takes over if the socket is full."""
        if self.client.want_write() and self.client.socket() is not None:
            self.client.loop_write()

    def _do_write(self) -> None:
        self.client.loop_write()

    async def _misc(self) -> None:
        while not self._closed.is_set():
            if self.client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._closed.wait()

    # ------------------------------------------------------------------ paho callbacks

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: Any,
        rc: ReasonCode,
        props: Properties | None,
    ) -> None:
        if self._connack.done():
            return
        if rc.is_failure:
            # 0x84 (MQTT 5) and 1 (3.1.1) both say "unsupported protocol version".
            rejected = rc.value in (0x84, 1)
            self._connack.set_exception(
                ConnectRefused(str(rc), rc.value, protocol_rejected=rejected)
            )
            return
        receive_max = _NO_RECEIVE_MAX
        if self.protocol == MQTT5 and props is not None:
            receive_max = int(getattr(props, "ReceiveMaximum", _NO_RECEIVE_MAX))
        self.connected = True
        self._connack.set_result(
            Connack(self.protocol, receive_max, bool(getattr(flags, "session_present", False)))
        )

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: Any,
        rc: ReasonCode,
        props: Properties | None,
    ) -> None:
        was = self.connected
        self._mark_closed()
        if not self._connack.done():
            self._connack.set_exception(ProtocolUnanswered(f"closed before CONNACK: {rc}"))
        if was:
            self._on_lost_cb()

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, rc: ReasonCode, props: Properties | None
    ) -> None:
        # MQTT 5 reason codes below 0x80 are successes: mosquitto answers 0x10 "no matching
        # subscribers" when nobody listens, and the broker still took the message.
        self._on_publish_cb(mid, rc.value < 0x80, str(rc))

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        response = getattr(props, "ResponseTopic", None) if props is not None else None
        corr = getattr(props, "CorrelationData", None) if props is not None else None
        self._on_message_cb(
            Incoming(msg.topic, bytes(msg.payload), response or None, bytes(corr) if corr else None)
        )

    # ------------------------------------------------------------------ use

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool = False,
        correlation: bytes | None = None,
    ) -> int | None:
        """Queue a PUBLISH; returns its mid, or None when the client will not send it."""
        props = None
        if correlation is not None and self.protocol == MQTT5:
            props = _properties(PacketTypes.PUBLISH)
            props.CorrelationData = correlation
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.debug("publish to %s not queued: %s", topic, paho.error_string(info.rc))
            return None
        return int(info.mid)

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        self.client.subscribe(topic_filter, qos=qos)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def disconnect(self, timeout_s: float = 2.0) -> None:
        """Send DISCONNECT (the broker drops the will) and wait for the socket to close."""
        if not self._closed.is_set():
            self.client.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._closed.wait()
        self.abort()

    def abort(self) -> None:
        """Drop the socket without DISCONNECT: the broker publishes the will."""
        for fd in list(self._fds | self._writers):
            self._forget_fd(fd)
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.close()
        self._mark_closed()
        if self._misc_task is not None and not self._misc_task.done():
            self._misc_task.cancel()
        # paho's __del__ closes its sockets and would call back into a loop long gone.
        c = self.client
        c.on_socket_open = c.on_socket_close = None
        c.on_socket_register_write = c.on_socket_unregister_write = None
        c.on_connect = c.on_disconnect = c.on_publish = c.on_message = None

    async def aclose(self) -> None:
        self.abort()
        if self._misc_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._misc_task

    def is_open(self) -> bool:
        """Connected now (a method, so a check after an ``await`` is not narrowed away)."""
        return self.connected

    def _mark_closed(self) -> None:
        self.connected = False
        self._closed.set()


def _properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]  # paho leaves __init__ unannotated
