"""The store on the asyncio loop: one dedicated thread, and group commit for readings.

SQLite calls that fsync take milliseconds; on the loop they would stall every driver. All
store calls therefore run on one worker thread, in the order they were made. Readings are
buffered and committed together (one transaction, one fsync) at most ``group_commit_ms``
after the first of them arrived, or sooner when the buffer is full.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from gateway.model import Reading
from gateway.store.db import Store

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


class AsyncStore:
    """Runs a :class:`Store`'s calls on one thread so the loop never waits on fsync."""

    def __init__(self, store: Store, *, group_commit_ms: float = 200.0, batch_max: int = 2000) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anxin-store")
        self._pending: list[Reading] = []
        self._delay_s = group_commit_ms / 1000.0
        self._batch_max = batch_max
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[int]] = set()
        self.last_reading_id = 0

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def add_reading(self, reading: Reading) -> None:
        """Buffer a reading; it is committed within the group-commit delay."""
        self._pending.append(reading)
        if len(self._pending) >= self._batch_max:
            self._start_flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(self._delay_s, self._start_flush)

    def _start_flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._commit(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _commit(self, batch: list[Reading]) -> int:
        try:
            last = await self.call(self.store.add_readings, batch)
        except Exception:
            log.exception("committing %d readings failed", len(batch))
            return 0
        self.last_reading_id = max(self.last_reading_id, last)
        return last

    async def flush(self) -> None:
        """Commit everything buffered now and wait for every commit in flight."""
        self._start_flush()
        if self._flushing:
            await asyncio.gather(*self._flushing)

    async def close(self) -> None:
        await self.flush()
        await self.call(self.store.close)
        self._executor.shutdown(wait=True)

    def pending_readings(self) -> int:
        return len(self._pending)
