"""The MQTT uplink: the outbox to the platform, commands back, escalation when unhandled.

See ``docs/uplink.md`` and ``docs/mqtt-contract.yaml``.
"""

from __future__ import annotations

from gateway.uplink.client import Uplink, UplinkStats
from gateway.uplink.contract import SCHEMA, Topics

__all__ = ["SCHEMA", "Topics", "Uplink", "UplinkStats"]
