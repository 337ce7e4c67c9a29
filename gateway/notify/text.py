"""What a notifier says: one short message a family member can act on, in their language.

It has to fit one SMS (70 characters in UCS2) and answer what, where, since when, and
that nobody on the platform has handled it yet.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from gateway.model import Alert, AlertType

_ZH = {
    AlertType.EMERGENCY_BUTTON: "紧急呼叫",
    AlertType.FALL: "疑似跌倒",
    AlertType.FALL_RADAR: "雷达检测到跌倒",
    AlertType.INACTIVITY: "长时间无活动",
    AlertType.BED_EXIT_NO_RETURN: "夜间离床未归",
    AlertType.NOT_UP: "未按时起床",
    AlertType.NIGHT_DOOR: "夜间出门",
    AlertType.SENSOR_OFFLINE: "传感器离线",
    AlertType.LOW_BATTERY: "电量低",
    AlertType.TAMPER: "设备被拆动",
    AlertType.SMOKE: "烟雾报警",
    AlertType.GAS: "燃气泄漏",
    AlertType.WATER_LEAK: "漏水报警",
    AlertType.GATEWAY_POWER: "网关断电",
    AlertType.GATEWAY_HEALTH: "网关故障",
    AlertType.TEST: "测试消息",
}

_EN = {
    AlertType.EMERGENCY_BUTTON: "EMERGENCY CALL",
    AlertType.FALL: "FALL",
    AlertType.FALL_RADAR: "FALL (radar)",
    AlertType.INACTIVITY: "NO ACTIVITY",
    AlertType.BED_EXIT_NO_RETURN: "NOT BACK IN BED",
    AlertType.NOT_UP: "NOT UP",
    AlertType.NIGHT_DOOR: "DOOR AT NIGHT",
    AlertType.SENSOR_OFFLINE: "sensor offline",
    AlertType.LOW_BATTERY: "low battery",
    AlertType.TAMPER: "tamper",
    AlertType.SMOKE: "SMOKE",
    AlertType.GAS: "GAS",
    AlertType.WATER_LEAK: "WATER LEAK",
    AlertType.GATEWAY_POWER: "gateway power",
    AlertType.GATEWAY_HEALTH: "gateway fault",
    AlertType.TEST: "test message",
}


def type_name(type_: AlertType, language: str) -> str:
    """The alert type as a family member would say it."""
    names = _EN if language == "en" else _ZH
    return names.get(type_, type_.value)


def compose(alert: Alert, *, attempt: int, home: str, tz: ZoneInfo, language: str = "zh",
            room_name: str | None = None) -> str:
    """The escalation message for ``alert``; ``room_name`` is the installer's name of the room."""
    at = alert.ts.astimezone(tz).strftime("%H:%M")
    where = room_name or alert.room or ""
    if language == "en":
        what = _EN.get(alert.type, alert.type.value)
        place = f" in {where}" if where else ""
        return f"Anxin {home}: {what}{place} at {at}, not handled ({attempt}). Check now."
    what = _ZH.get(alert.type, alert.type.value)
    place = f"{where} " if where else ""
    return f"【安心】{home} {place}{at} {what}，平台未处理(第{attempt}次)，请立即联系或上门查看。"
