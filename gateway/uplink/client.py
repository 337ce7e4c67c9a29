"""The uplink: drains the store's outbox to the platform over MQTT, answers commands,
escalates critical alerts nobody handled.

Store access. The store is synchronous and every write is a ``synchronous=FULL`` commit
(an fsync: about a millisecond here, tens on an SD card), and its lock may be held by a
commit from another thread. So the uplink never calls it on the loop: every store call
goes to one dedicated worker thread. One thread keeps the calls in order, which the drain
relies on (a ``pending()`` read submitted after a ``mark_delivered()`` sees it).

Delivery. Rows go out in the outbox's order (priority, then seq) at QoS 1, at most
``window`` unacknowledged at a time (the configured ``max_inflight``, lowered to the
broker's Receive Maximum). A row is marked delivered only when its PUBACK arrives; marks
are batched into one commit. After a reconnect, or a restart, everything not marked is
sent again with the same ``id``: at least once, duplicates recognisable.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

from gateway import __version__
from gateway.backoff import Backoff
from gateway.clock import Clock, utc_now
from gateway.config import Config
from gateway.errors import AnxinError, UplinkError
from gateway.model import AlertState, new_id
from gateway.notify.base import LoggingNotifier, Notifier
from gateway.store import OutboxRow, Store
from gateway.uplink import contract
from gateway.uplink.commands import CommandHandler
from gateway.uplink.escalate import Escalator
from gateway.uplink.mqtt import (
    MQTT5,
    MQTT311,
    Connack,
    Connection,
    ConnectRefused,
    Endpoint,
    Incoming,
    ProtocolUnanswered,
    tls_context,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

_STABLE_S = 30.0  # a connection that lived this long resets the backoff
_FLUSH_DELAY_S = 0.05  # longest a PUBACK waits to be committed while others are in flight


@dataclass(slots=True)
class UplinkStats:
    connects: int = 0
    connect_failures: int = 0
    published: int = 0
    delivered: int = 0
    rejected: int = 0
    commands: int = 0
    max_inflight_seen: int = 0


def endpoint_from_config(cfg: Config) -> Endpoint:
    """Host, port, TLS context and credentials from ``[uplink]`` and the secrets file."""
    u = cfg.uplink
    parts = urlsplit(u.broker_url)
    secure = parts.scheme in ("mqtts", "ssl")
    tls = None
    if secure:
        tls = tls_context(u.tls_ca)
        if u.tls_cert and u.tls_key:
            tls.load_cert_chain(u.tls_cert, u.tls_key)
        if u.tls_insecure:
            tls.check_hostname = False
    return Endpoint(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or (8883 if secure else 1883),
        tls=tls,
        username=cfg.secrets.mqtt_username,
        password=cfg.secrets.mqtt_password,
    )


class Uplink:
    """The alarm path from the outbox to the broker. One per gateway process.

    ``run()`` runs until cancelled and never raises on broker trouble; ``wake()`` after a
    new outbox row commits; ``close()`` says ``offline`` and disconnects.
    """

    def __init__(
        self,
        cfg: Config,
        store: Store,
        notifiers: Iterable[Notifier] | None = None,
        *,
        clock: Clock | None = None,
        announce: bool = True,
        escalate: bool = True,
        client_id: str | None = None,
    ) -> None:
        """``announce=False`` (no status, no will), ``escalate=False`` and another
        ``client_id`` are for tools that borrow the uplink beside a running gateway."""
        self.cfg = cfg
        self.store = store
        self.topics = contract.Topics(cfg.uplink.topic_root, cfg.gateway.id)
        self.notifiers: list[Notifier] = (
            list(notifiers) if notifiers is not None else [LoggingNotifier()]
        )
        self.clock = clock or Clock()
        self.stats = UplinkStats()
        self.endpoint = endpoint_from_config(cfg)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="anxin-uplink-store")
        self._started = time.monotonic()
        self._no_stamp = self.clock.now()  # stands in where a row carries its own clock
        self._beat = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake: asyncio.Event | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._conn: Connection | None = None
        self._window = cfg.uplink.max_inflight
        self._protocol = MQTT311 if cfg.uplink.protocol == MQTT311 else MQTT5
        self._backoff = Backoff(cfg.uplink.reconnect_min_s, cfg.uplink.reconnect_max_s)
        self._will: bytes | None = None
        self._fresh = True
        self._last_seq = 1
        self._ahead: deque[tuple[OutboxRow, bytes | None]] = deque()
        self._announce = announce
        self._escalate = escalate
        self._client_id = client_id or cfg.client_id
        # Delivery bookkeeping, all touched on the loop only.
        self._inflight: dict[int, OutboxRow] = {}
        self._acked: list[OutboxRow] = []
        self._flushing: set[int] = set()
        self._acked_since = 0.0
        self._flush_timer: asyncio.TimerHandle | None = None
        self._refused: set[int] = set()
        self._poison: set[int] = set()
        self._waiters: dict[int, asyncio.Future[None]] = {}
        # Seqs acknowledged lately: a wait_delivered that starts after the PUBACK came in
        # (the loop ran the drain before the waiter) is answered from here.
        self._recent_acked: deque[int] = deque(maxlen=4096)
        self._mid_waiters: dict[int, asyncio.Future[bool]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.commands = CommandHandler(self)
        self.escalator = Escalator(self)
        # The gateway's power, disk, clock and temperature for telemetry (gateway.health).
        self.gateway_health: Callable[[], dict[str, Any]] | None = None

    # ------------------------------------------------------------------ public API

    async def run(self) -> None:
        """Keep the uplink going until cancelled; broker trouble is retried, never raised."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._run_task = asyncio.current_task()
        loops = [
            self._guarded("connection", self._connection_loop),
            self._guarded("events", self._event_loop),
        ]
        if self._escalate:
            loops.append(self._guarded("escalation", self.escalator.run))
        tasks = [asyncio.create_task(c) for c in loops]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._shutdown_connection()
            await self._final_flush()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def wake(self) -> None:
        """A new outbox row was committed: send it now. Safe from any thread."""
        if self._loop is None or self._wake is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._set_fresh()
        else:
            self._loop.call_soon_threadsafe(self._set_fresh)

    def _set_fresh(self) -> None:
        self._fresh = True
        if self._wake is not None:
            self._wake.set()

    def healthy(self) -> bool:
        """For the watchdog: the uplink's loops are alive (a broker outage is not a fault
        of this process, so it does not make the uplink unhealthy)."""
        if self._run_task is None or self._run_task.done():
            return False
        return time.monotonic() - self._beat < max(30.0, 3.0 * self.cfg.uplink.keepalive_s)

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.connected

    async def close(self) -> None:
        """Publish ``offline`` (retained), disconnect, stop ``run()`` and the store worker."""
        task = self._run_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        else:
            await self._shutdown_connection()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)

    async def wait_delivered(self, seq: int, timeout_s: float) -> bool:
        """Wait for the PUBACK of outbox row ``seq`` (True) or the timeout (False)."""
        if seq in self._recent_acked:
            return True
        fut = self._waiters.get(seq)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._waiters[seq] = fut
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(fut)
        except TimeoutError:
            return False
        return True

    # ------------------------------------------------------------------ helpers

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store call on the uplink's store thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))

    def spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def beat(self) -> None:
        self._beat = time.monotonic()

    def uptime_s(self) -> float:
        return time.monotonic() - self._started

    async def _guarded(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """Run one of the uplink's loops forever; a bug in it is logged and it restarts."""
        backoff = Backoff(1.0, 60.0)
        while True:
            try:
                await body()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("uplink %s loop failed; restarting it", name)
                await asyncio.sleep(backoff.next_delay())

    async def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.beat()
            await asyncio.sleep(min(left, 5.0))

    # ------------------------------------------------------------------ connection

    async def _connection_loop(self) -> None:
        while True:
            self.beat()
            try:
                conn, connack = await self._open()
            except UplinkError as exc:
                self.stats.connect_failures += 1
                delay = self._backoff.next_delay()
                log.warning("uplink: %s; retrying in %.1f s", exc, delay)
                await self._sleep(delay)
                continue
            since = time.monotonic()
            try:
                await self._serve(conn, connack)
            except asyncio.CancelledError:
                raise  # run() says offline and disconnects on its way out
            except BaseException:
                await self._drop(conn)
                raise
            await self._drop(conn)
            if time.monotonic() - since > _STABLE_S:
                self._backoff.reset()
            delay = self._backoff.next_delay()
            log.warning("uplink: connection lost; reconnecting in %.1f s", delay)
            await self._sleep(delay)

    async def _open(self) -> tuple[Connection, Connack]:
        if self._will is None and self._announce:
            self._will = await self._status_payload("offline")
        conn = Connection(
            self.endpoint,
            client_id=self._client_id,
            protocol=self._protocol,
            keepalive_s=self.cfg.uplink.keepalive_s,
            max_inflight=self.cfg.uplink.max_inflight,
            will=(self.topics.status, self._will) if self._will is not None else None,
            on_publish=self._on_publish,
            on_message=self._on_message,
            on_lost=self.wake,
            after_read=self._pump,
        )
        try:
            connack = await conn.open(timeout_s=max(10.0, float(self.cfg.uplink.keepalive_s)))
        except (ConnectRefused, ProtocolUnanswered) as exc:
            await conn.aclose()
            self._maybe_fall_back(exc)
            raise
        except UplinkError:
            await conn.aclose()
            raise
        self._conn = conn
        self.stats.connects += 1
        self._window = max(1, min(self.cfg.uplink.max_inflight, connack.receive_max))
        log.info(
            "uplink: connected to %s:%d with MQTT %s, window %d",
            self.endpoint.host,
            self.endpoint.port,
            connack.protocol,
            self._window,
        )
        return conn, connack

    def _maybe_fall_back(self, exc: UplinkError) -> None:
        if self.cfg.uplink.protocol != "auto":
            return
        rejected = isinstance(exc, ProtocolUnanswered) or (
            isinstance(exc, ConnectRefused) and exc.protocol_rejected
        )
        if rejected:
            self._protocol = MQTT311 if self._protocol == MQTT5 else MQTT5
            log.warning(
                "uplink: broker did not take the protocol; trying MQTT %s next", self._protocol
            )

    async def _serve(self, conn: Connection, connack: Connack) -> None:
        if self._announce:
            conn.subscribe(self.topics.cmd_filter, qos=1)
            await self._publish_status(conn, "online")
            self.spawn(self._telemetry_loop(conn), "uplink-telemetry")
        await self._drain(conn)

    async def _drop(self, conn: Connection) -> None:
        await conn.aclose()
        if self._conn is conn:
            self._conn = None
        # Everything unacknowledged goes again on the next connection, same id.
        self._inflight.clear()
        self._refused.clear()
        self._flush_acked()
        for fut in self._mid_waiters.values():
            if not fut.done():
                fut.set_result(False)
        self._mid_waiters.clear()

    async def _shutdown_connection(self) -> None:
        conn = self._conn
        if conn is None:
            return
        if conn.connected and not self._announce:
            await conn.disconnect(2.0)
        elif conn.connected:
            try:
                payload = await self._status_payload("offline")
                mid = conn.publish(self.topics.status, payload, qos=1, retain=True)
                if mid is not None:
                    await self._wait_mid(mid, 2.0)
                await conn.disconnect(2.0)
            except (AnxinError, OSError) as exc:
                log.warning("uplink: clean offline failed (%s); the will says it instead", exc)
        await self._drop(conn)

    async def _wait_mid(self, mid: int, timeout_s: float) -> bool:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._mid_waiters[mid] = fut
        try:
            async with asyncio.timeout(timeout_s):
                return await fut
        except TimeoutError:
            return False
        finally:
            self._mid_waiters.pop(mid, None)

    # ------------------------------------------------------------------ status, telemetry

    async def _status_payload(self, state: str) -> bytes:
        depth = await self.db(self.store.pending_count)
        body = contract.status_body(
            state,
            version=__version__,
            uptime_s=self.uptime_s(),
            queue_depth=depth,
            protocol=self._protocol,
        )
        return await self._sent_payload("status", body)

    async def _sent_payload(self, kind: str, body: dict[str, Any]) -> bytes:
        stamp = self.clock.now()
        body = {
            **body,
            "clock": contract.clock_block(stamp.synced, stamp.monotonic_s, stamp.boot_id),
        }
        try:
            row = await self.db(self.store.record_sent, kind, body)
        except (sqlite3.Error, AnxinError) as exc:
            # A full or failing disk must not keep the alerts from going out: this message
            # goes without a stored seq (it repeats the last one known) and the log says so.
            log.error("uplink: could not take a seq for %s: %s", kind, exc)  # noqa: TRY400 - expected disk trouble
            row = OutboxRow(self._last_seq, new_id(), kind, 9, None, body, utc_now(), 0)
        self._last_seq = max(self._last_seq, row.seq)
        return contract.dumps(self._payload(row))

    async def _publish_status(self, conn: Connection, state: str) -> None:
        payload = await self._status_payload(state)
        if conn.connected:
            conn.publish(self.topics.status, payload, qos=1, retain=True)

    async def _telemetry_loop(self, conn: Connection) -> None:
        while conn.connected:
            try:
                body = await self.db(self._telemetry_body)
                payload = await self._sent_payload("telemetry", body)
            except AnxinError as exc:
                log.warning("uplink: telemetry skipped: %s", exc)
            else:
                if conn.connected:
                    conn.publish(self.topics.telemetry, payload, qos=0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.cfg.uplink.telemetry_interval_s):
                    await conn.wait_closed()

    def _telemetry_body(self) -> dict[str, Any]:
        sensors = []
        for h in self.store.sensors():
            sensors.append(
                {
                    "id": h.sensor.id,
                    "kind": h.sensor.kind.value,
                    "room": h.sensor.room,
                    "last_seen_ts": h.last_seen_ts.isoformat() if h.last_seen_ts else None,
                    "battery_pct": h.battery_pct,
                    "rssi_dbm": h.rssi_dbm,
                }
            )
        return {
            "uptime_s": round(self.uptime_s(), 1),
            "queue_depth": self.store.pending_count(),
            "store_bytes": self.store.size_bytes(),
            "uplink": {
                "connects": self.stats.connects,
                "connect_failures": self.stats.connect_failures,
                "published": self.stats.published,
                "delivered": self.stats.delivered,
            },
            "sensors": sensors,
            **({"gateway": self.gateway_health()} if self.gateway_health is not None else {}),
        }

    # ------------------------------------------------------------------ the drain

    def _payload(self, row: OutboxRow) -> dict[str, Any]:
        stamp = self._no_stamp if row.kind == "alert" or "clock" in row.body else self.clock.now()
        return contract.outbox_payload(
            kind=row.kind,
            msg_id=row.msg_id,
            seq=row.seq,
            created_ts=row.created_ts,
            body=row.body,
            gw=self.cfg.gateway.id,
            home=self.cfg.gateway.home,
            now=stamp,
        )

    async def _drain(self, conn: Connection) -> None:
        """Keep the window full, in outbox order.

        Rows are read ahead of the window (the next chunk in the background while the
        current one is sent) so neither a run of PUBACKs nor a commit holding the store
        stalls the window, and a PUBACK sends the next row at once (:meth:`_pump`). The
        read-ahead is thrown away and read again whenever something new was committed
        (``wake()``): a new critical alert overtakes what was read before it.
        """
        assert self._wake is not None
        ra = _ReadAhead(chunk=max(100, 4 * self._window))
        self._ahead = ra.rows
        self._fresh = True
        try:
            while conn.connected:
                self.beat()
                self._wake.clear()
                if self._fresh or ra.starved():
                    self._fresh = False
                    ra.cancel()
                    busy = self._busy()
                    limit = ra.chunk + len(busy)
                    rows = await self.db(self._read_ahead, limit, None)
                    if not conn.is_open():
                        break
                    ra.replace(rows, self._busy(), exhausted=len(rows) < limit)
                elif ra.more is not None and ra.more.done():
                    ra.take_more(self._busy())
                self._pump()
                conn.flush_writes()
                if ra.wants_more():
                    ra.more = asyncio.ensure_future(self.db(self._read_ahead, ra.chunk, ra.last))
                    ra.more.add_done_callback(lambda _f: self._wake.set() if self._wake else None)
                self._flush_acked()
                try:
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
                except TimeoutError:
                    # Another process may have committed (anxin send-test-alert): look again.
                    self._fresh = True
        finally:
            ra.cancel()
            ra.rows.clear()

    def _pump(self) -> None:
        """Fill the window from the read-ahead; called by the drain and on every PUBACK."""
        conn = self._conn
        room = self._window - len(self._inflight)
        if conn is None or not conn.connected or room <= 0 or not self._ahead:
            return
        self._send(conn, self._ahead, room)

    def _busy(self) -> set[int]:
        busy = {r.seq for r in self._inflight.values()} | {r.seq for r in self._acked}
        return busy | self._flushing | self._refused | self._poison

    def _send(
        self, conn: Connection, rows: deque[tuple[OutboxRow, bytes | None]], room: int
    ) -> None:
        """Publish from the head of ``rows`` (taking them off) while there is room."""
        while rows and room > 0:
            row, payload = rows[0]
            if payload is None:
                rows.popleft()
                self._poison.add(row.seq)
                continue
            mid = conn.publish(self.topics.for_kind(row.kind), payload, qos=1)
            if mid is None:
                return
            rows.popleft()
            self._inflight[mid] = row
            self._last_seq = max(self._last_seq, row.seq)
            self.stats.published += 1
            self.stats.max_inflight_seen = max(self.stats.max_inflight_seen, len(self._inflight))
            room -= 1

    def _read_ahead(
        self, limit: int, after: tuple[int, int] | None
    ) -> list[tuple[OutboxRow, bytes | None]]:
        """On the store thread: the next rows and their payloads, built while the loop
        waits for PUBACKs. A row whose payload cannot be built comes with None."""
        out: list[tuple[OutboxRow, bytes | None]] = []
        for row, raw in self.store.pending_raw(limit, after=after):
            try:
                payload: bytes | None = self._row_payload(row, raw)
            except (KeyError, TypeError, ValueError):
                # A row that cannot be built must not block every alert behind it.
                log.exception("uplink: outbox row %d (%s) is unusable, skipped", row.seq, row.kind)
                payload = None
            out.append((row, payload))
        return out

    def _row_payload(self, row: OutboxRow, raw: str) -> bytes:
        gw, home = self.cfg.gateway.id, self.cfg.gateway.home
        if row.kind == "event":
            return contract.spliced_event(
                msg_id=row.msg_id,
                seq=row.seq,
                created_ts=row.created_ts,
                raw_body=raw,
                gw=gw,
                home=home,
            )
        if row.kind != "alert":
            row = dataclasses.replace(row, body=json.loads(raw))
        return contract.dumps(self._payload(row))

    def _on_publish(self, mid: int, ok: bool, reason: str) -> None:
        waiter = self._mid_waiters.get(mid)
        if waiter is not None and not waiter.done():
            waiter.set_result(ok)
        row = self._inflight.pop(mid, None)
        if row is None:
            return
        if ok:
            if not self._acked:
                self._acked_since = time.monotonic()
            self._acked.append(row)
            self.stats.delivered += 1
            self._recent_acked.append(row.seq)
            fut = self._waiters.pop(row.seq, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
        else:
            # Kept for the next connection rather than resent into the same refusal.
            self.stats.rejected += 1
            self._refused.add(row.seq)
            log.error("uplink: broker refused message seq %d: %s", row.seq, reason)
        # The next rows go out from _pump after this read; the drain task is only needed
        # to read more, to commit a window of PUBACKs, or to notice the queue ran dry.
        if self._wake is not None and (
            not ok
            or len(self._ahead) < self._window
            or len(self._acked) >= 4 * self._window
            or not self._inflight
        ):
            self._wake.set()

    def _flush_acked(self) -> None:
        """Commit the PUBACKs received so far, one commit for a run of them.

        While messages are still in flight the commit waits until four windows' worth of
        PUBACKs or ``_FLUSH_DELAY_S`` have gathered: during a backlog drain that is one fsync
        per 80 messages instead of one per message. Losing the marks in a crash only means
        sending those messages again (same ids), which the contract allows.
        """
        if not self._acked or self._flushing:
            return
        waited = time.monotonic() - self._acked_since
        if self._inflight and len(self._acked) < 4 * self._window and waited < _FLUSH_DELAY_S:
            if self._flush_timer is None and self._loop is not None:
                self._flush_timer = self._loop.call_later(_FLUSH_DELAY_S - waited, self._flush_due)
            return
        batch = self._acked
        self._acked = []
        self._flushing = {r.seq for r in batch}
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._executor, self._mark_delivered, batch)

        def done(f: asyncio.Future[None]) -> None:
            self._flushing = set()
            if f.cancelled() or f.exception() is not None:
                log.error("uplink: marking %d rows delivered failed: %s", len(batch), f.exception())
                self._acked.extend(batch)
            if self._wake is not None:
                self._wake.set()

        fut.add_done_callback(done)

    def _flush_due(self) -> None:
        self._flush_timer = None
        if self._wake is not None:
            self._wake.set()

    async def _final_flush(self) -> None:
        """Record the PUBACKs already received, so a restart does not send them again."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        batch, self._acked = self._acked, []
        if batch:
            try:
                await self.db(self._mark_delivered, batch)
            except AnxinError as exc:
                log.warning(
                    "uplink: %d delivered rows not marked on the way out: %s", len(batch), exc
                )

    def _mark_delivered(self, batch: list[OutboxRow]) -> None:
        raised = [
            r.ref
            for r in batch
            if r.kind == "alert" and r.body.get("state") == AlertState.RAISED.value and r.ref
        ]
        self.store.mark_delivered_recording(
            (r.seq for r in batch if r.kind != "event"),
            raised,
            drop=[r.seq for r in batch if r.kind == "event"],
        )

    # ------------------------------------------------------------------ events

    async def _event_loop(self) -> None:
        cursor = await self.db(self.store.counter, contract.EVENT_CURSOR, 0)
        while True:
            self.beat()
            cursor, count = await self.db(self._make_event_batch, cursor)
            if count:
                self.wake()
            if count < self.cfg.uplink.event_batch_max:
                await asyncio.sleep(self.cfg.uplink.event_interval_s)

    def _make_event_batch(self, cursor: int) -> tuple[int, int]:
        rows = self.store.readings_after(cursor, self.cfg.uplink.event_batch_max)
        if not rows:
            return cursor, 0
        body = contract.event_body(rows, self.clock.now())
        last = rows[-1][0]
        self.store.enqueue_with_counter(
            "event",
            body,
            priority=contract.EVENT_PRIORITY,
            counter=contract.EVENT_CURSOR,
            value=last,
        )
        return last, len(rows)

    # ------------------------------------------------------------------ commands

    def _on_message(self, msg: Incoming) -> None:
        self.stats.commands += 1
        self.spawn(self.commands.handle(msg), "uplink-command")

    def reply(self, topic: str, payload: bytes, correlation: bytes | None) -> None:
        conn = self._conn
        if conn is not None and conn.connected:
            conn.publish(topic, payload, qos=1, correlation=correlation)


class _ReadAhead:
    """Outbox rows read ahead of the window, in outbox order, and the next read."""

    def __init__(self, chunk: int) -> None:
        self.chunk = chunk
        self.rows: deque[tuple[OutboxRow, bytes | None]] = deque()
        self.last: tuple[int, int] | None = None  # (priority, seq) of the last row read
        self.exhausted = False
        self.more: asyncio.Future[list[tuple[OutboxRow, bytes | None]]] | None = None

    def starved(self) -> bool:
        return not self.rows and not self.exhausted and self.more is None

    def wants_more(self) -> bool:
        return (
            self.more is None
            and not self.exhausted
            and self.last is not None
            and len(self.rows) < self.chunk
        )

    def replace(
        self, rows: list[tuple[OutboxRow, bytes | None]], busy: set[int], *, exhausted: bool
    ) -> None:
        self.rows.clear()
        self.rows.extend(r for r in rows if r[0].seq not in busy)
        self.last = (rows[-1][0].priority, rows[-1][0].seq) if rows else None
        self.exhausted = exhausted

    def take_more(self, busy: set[int]) -> None:
        more, self.more = self.more, None
        if more is None:
            return
        rows = [] if more.cancelled() or more.exception() is not None else more.result()
        self.rows.extend(r for r in rows if r[0].seq not in busy)
        if rows:
            self.last = (rows[-1][0].priority, rows[-1][0].seq)
        self.exhausted = len(rows) < self.chunk

    def cancel(self) -> None:
        if self.more is not None:
            self.more.cancel()
            self.more = None
