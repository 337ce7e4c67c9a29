"""A gateway in a child process for the uplink tests: Store + Uplink, committing alerts.

    python tests/uplink_child.py --port P --db FILE [--count N] [--interval S]

Prints ``committed SEQ`` for each alert (after its commit returned), then ``drained`` once
the outbox is empty, and keeps running until killed or stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from uplink_helpers import alert, make_config

from gateway.model import Severity
from gateway.store import Store
from gateway.uplink import Uplink


class _Broker:
    def __init__(self, port: int) -> None:
        self.url = f"mqtt://127.0.0.1:{port}"


async def main(args: argparse.Namespace) -> None:
    store = Store(args.db, budget_bytes=64 * 1024 * 1024, reserve_bytes=1024 * 1024).open()
    uplink = Uplink(
        make_config(_Broker(args.port), reconnect_min_s=0.05, reconnect_max_s=0.3), store
    )
    task = asyncio.create_task(uplink.run())
    sevs = [Severity.CRITICAL, Severity.WARNING, Severity.INFO]
    loop = asyncio.get_running_loop()
    for i in range(args.count):
        row = await loop.run_in_executor(None, store.commit_alert, alert(sevs[i % 3], i))
        uplink.wake()
        print(f"committed {row.seq}", flush=True)
        await asyncio.sleep(args.interval)
    while store.pending_count():
        await asyncio.sleep(0.05)
    print("drained", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    await uplink.close()
    await task if not task.done() else None
    store.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--interval", type=float, default=0.0)
    asyncio.run(main(p.parse_args()))
