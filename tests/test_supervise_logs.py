from __future__ import annotations

import asyncio
import io
import json
import logging

from gateway import logs
from gateway.backoff import Backoff
from gateway.supervise import TaskHealth, supervise


async def test_supervise_restarts_until_success() -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RuntimeError(f"boom {calls}")

    health = TaskHealth("flaky")
    await asyncio.wait_for(supervise("flaky", flaky, health=health, backoff=Backoff(min_s=0.01, max_s=0.02)), 5)
    assert calls == 3
    assert health.restarts == 2
    assert health.finished
    assert health.last_error == "RuntimeError: boom 2"


def test_json_and_text_log_formats_keep_extra_fields() -> None:
    stream = io.StringIO()
    logs.setup("INFO", "json", stream)
    logging.getLogger("anxin.test").warning("alert %s", "fall", extra={"alert_id": "a1"})
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["msg"] == "alert fall"
    assert line["alert_id"] == "a1"
    assert line["level"] == "WARNING"
    stream2 = io.StringIO()
    logs.setup("INFO", "text", stream2)
    logging.getLogger("anxin.test").warning("alert %s", "fall", extra={"alert_id": "a1"})
    assert "alert fall alert_id=a1" in stream2.getvalue()
    for h in list(logging.getLogger().handlers):
        if getattr(h, "_anxin", False):
            logging.getLogger().removeHandler(h)
