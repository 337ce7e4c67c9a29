"""Supervised tasks: a task that dies is logged and restarted with backoff, never lost.

Restart delays grow exponentially with full jitter (so that a hundred gateways on one
district do not retry in step) and reset after a task has run well for a while.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.backoff import Backoff

log = logging.getLogger(__name__)


@dataclass(slots=True)
class TaskHealth:
    name: str
    restarts: int = 0
    running: bool = False
    finished: bool = False
    last_error: str = ""
    started_mono: float = 0.0


async def supervise(
    name: str,
    factory: Callable[[], Awaitable[None]],
    *,
    health: TaskHealth | None = None,
    restart_on_return: bool = False,
    backoff: Backoff | None = None,
    healthy_after_s: float = 60.0,
) -> None:
    """Run ``factory()`` until it returns (done) or is cancelled; restart it when it fails."""
    health = health or TaskHealth(name)
    backoff = backoff or Backoff(0.5, 30.0)
    while True:
        health.running = True
        health.started_mono = time.monotonic()
        try:
            await factory()
        except asyncio.CancelledError:
            health.running = False
            raise
        except Exception as exc:
            health.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("task %s failed; restarting", name)
        else:
            if not restart_on_return:
                health.running = False
                health.finished = True
                return
            log.warning("task %s returned; restarting", name)
        health.running = False
        if time.monotonic() - health.started_mono > healthy_after_s:
            backoff.reset()
        health.restarts += 1
        delay = backoff.next_delay()
        log.info("task %s restarts in %.1f s (restart %d)", name, delay, health.restarts)
        await asyncio.sleep(delay)
