"""Commands from the platform on ``{root}/{gw}/cmd/{name}``.

Each command is a JSON object; ``id`` (optional) comes back as ``request_id``. A command
that is not JSON, not an object, unknown, or missing what it needs gets an error reply and
changes nothing. Answers go to the MQTT 5 response topic with the correlation data, else to
``{root}/{gw}/reply/{name}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from gateway import config as config_mod
from gateway.clock import rfc3339, utc_now
from gateway.errors import AnxinError, CommandError
from gateway.model import AlertState, new_id
from gateway.uplink import contract
from gateway.uplink.mqtt import Incoming

if TYPE_CHECKING:
    from gateway.uplink.client import Uplink

log = logging.getLogger(__name__)

Result = Mapping[str, Any]


class CommandHandler:
    """Parses, runs and answers one command at a time per message."""

    def __init__(self, uplink: Uplink) -> None:
        self.up = uplink
        self._handlers: dict[str, Callable[[Mapping[str, Any]], Awaitable[Result]]] = {
            "ack": self._ack,
            "ping": self._ping,
            "sensors": self._sensors,
            "config": self._config,
        }

    async def handle(self, msg: Incoming) -> None:
        name = self.up.topics.command_name(msg.topic) or "?"
        request_id: str | None = None
        result: Result | None = None
        error: tuple[str, str] | None = None
        try:
            body = _parse(msg.payload)
            rid = body.get("id")
            request_id = rid if isinstance(rid, str) else None
            handler = self._handlers.get(name)
            known = ", ".join(contract.COMMANDS)
            if handler is None:
                raise _err("unknown_command", f"unknown command {name!r}; known: {known}")
            result = await handler(body)
        except CommandError as exc:
            error = (getattr(exc, "code", "bad_command"), str(exc))
        except AnxinError as exc:
            error = ("failed", str(exc))
        if error is not None:
            log.warning("uplink: command %s refused: %s", name, error[1])
        payload = contract.reply_payload(
            msg_id=new_id(),
            ts=utc_now(),
            gw=self.up.cfg.gateway.id,
            home=self.up.cfg.gateway.home,
            cmd=name,
            request_id=request_id,
            result=result,
            error=error,
        )
        topic = msg.response_topic or self.up.topics.reply(name)
        self.up.reply(topic, contract.dumps(payload), msg.correlation)

    async def _ack(self, body: Mapping[str, Any]) -> Result:
        alert_id = body.get("alert_id")
        if not isinstance(alert_id, str) or not alert_id:
            raise _err("malformed", 'ack needs "alert_id" (a string)')
        by = body.get("by")
        note = (
            f"acknowledged by {by}"
            if isinstance(by, str) and by
            else "acknowledged by the platform"
        )
        alert = await self.up.db(self.up.store.alert, alert_id)
        if alert is None:
            raise _err("not_found", f"no alert {alert_id!r}")
        if alert.state.closed:
            return {"alert_id": alert_id, "state": alert.state.value, "changed": False}
        updated = await self.up.db(
            self.up.store.set_alert_state, alert_id, AlertState.ACKNOWLEDGED, note=note
        )
        self.up.wake()
        state = updated.state.value if updated is not None else alert.state.value
        return {"alert_id": alert_id, "state": state, "changed": True}

    async def _ping(self, body: Mapping[str, Any]) -> Result:
        depth = await self.up.db(self.up.store.pending_count)
        return {
            "pong": rfc3339(utc_now()),
            "uptime_s": round(self.up.uptime_s(), 1),
            "queue_depth": depth,
        }

    async def _sensors(self, body: Mapping[str, Any]) -> Result:
        health = await self.up.db(self.up.store.sensors)
        return {
            "sensors": [
                {
                    "id": h.sensor.id,
                    "kind": h.sensor.kind.value,
                    "transport": h.sensor.transport.value,
                    "room": h.sensor.room,
                    "label": h.sensor.label,
                    "last_seen_ts": rfc3339(h.last_seen_ts) if h.last_seen_ts else None,
                    "battery_pct": h.battery_pct,
                    "rssi_dbm": h.rssi_dbm,
                }
                for h in health
            ]
        }

    async def _config(self, body: Mapping[str, Any]) -> Result:
        return {"config": config_mod.to_dict(self.up.cfg, mask_secrets=True)}


def _parse(payload: bytes) -> Mapping[str, Any]:
    if not payload.strip():
        return {}
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _err("malformed", f"payload is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _err("malformed", "payload must be a JSON object")
    return body


def _err(code: str, message: str) -> CommandError:
    exc = CommandError(message)
    exc.code = code  # type: ignore[attr-defined]
    return exc
