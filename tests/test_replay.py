from __future__ import annotations

import json
from pathlib import Path

import pytest

from drivers.replay import ReplayDriver, parse_line
from gateway.errors import DeviceUnavailableError, FrameError
from gateway.model import ReadingKind


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"offset_s": 1, "kind": "motion"}', "missing 'sensor'"),
        (b'{"offset_s": 1, "sensor": "m", "kind": "teleport"}', "unknown kind"),
        (b'{"offset_s": -1, "sensor": "m", "kind": "motion"}', "offset_s"),
        (b'{"sensor": "m", "kind": "motion"}', "needs 'offset_s' or 'ts'"),
        (b'{"ts": "yesterday", "sensor": "m", "kind": "motion"}', "bad 'ts'"),
        (b'{"offset_s": 0, "sensor": "m", "kind": "motion", "extra": 3}', "'extra'"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_bad_lines_raise_frame_error_with_raw_bytes(raw: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as exc:
        parse_line(raw)
    assert reason in exc.value.reason
    assert exc.value.raw == raw


async def test_replay_plays_in_order_skips_bad_and_unpaired(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(
        "# a comment\n\n"
        + json.dumps({"ts": "2026-01-01T08:00:00Z", "sensor": "bed", "kind": "in_bed", "value": False}) + "\n"
        + "garbage\n"
        + json.dumps({"ts": "2026-01-01T08:00:00.05Z", "sensor": "x", "kind": "motion", "value": True}) + "\n"
        + json.dumps({"ts": "2026-01-01T08:00:00.1Z", "sensor": "m1", "kind": "motion", "value": True,
                      "extra": {"rssi_dbm": -60}}) + "\n"
    )
    drv = ReplayDriver(path, speed=0, keep_time=True, sensors=frozenset({"bed", "m1"}))
    async with drv:
        got = [r async for r in drv.readings()]
    assert [(r.sensor_id, r.kind, r.value) for r in got] == [
        ("bed", ReadingKind.IN_BED, False), ("m1", ReadingKind.MOTION, True)]
    assert got[1].extra == {"rssi_dbm": -60}
    assert got[0].ts.isoformat() == "2026-01-01T08:00:00+00:00"
    assert drv.stats.frames_rejected == 1
    assert drv.finished


async def test_missing_file_is_a_device_error(tmp_path: Path) -> None:
    with pytest.raises(DeviceUnavailableError):
        async with ReplayDriver(tmp_path / "nope.jsonl"):
            pass
