"""`anxin routine show|reset|eval` end to end, and the eval protocol on known logs."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway import config
from gateway.detect.inactivity import InactivityDetector
from gateway.detect.replay import evaluate, injection_moments, load_home
from gateway.store import Store
from tests.conftest import run_cli

CONFIG = """
[gateway]
id = "gw-1"
home = "home-1"
timezone = "Asia/Shanghai"

[storage]
path = "{db}"

[[rooms]]
id = "hall"
kind = "entrance"

[[rooms]]
id = "kitchen"
kind = "kitchen"

[[sensors]]
id = "front"
kind = "door"
transport = "replay"
address = "front"
room = "hall"

[[sensors]]
id = "pir"
kind = "motion"
transport = "replay"
address = "pir"
room = "kitchen"
"""


def test_routine_show_and_reset(tmp_path: Path) -> None:
    db = tmp_path / "anxin.db"
    cfg_path = tmp_path / "gateway.toml"
    cfg_path.write_text(CONFIG.format(db=db))
    cfg = config.load(cfg_path)
    store = Store(db).open()
    det = InactivityDetector(cfg, store)
    from gateway.model import Reading, ReadingKind

    t0 = datetime(2026, 3, 2, 8, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    for i in range(40):
        ts = t0 + timedelta(minutes=37 * i)
        det.feed(Reading("pir", ReadingKind.MOTION, True, ts, 0.0, "b", True))
    det.persist()
    store.close()

    res = run_cli("routine", "show", "--config", str(cfg_path))
    assert res.returncode == 0, res.stderr
    assert "Hour-of-week chart" in res.stdout
    assert "last activity" in res.stdout
    assert "pir (kitchen)" in res.stdout
    assert "Mon  " in res.stdout
    assert "room:kitchen" in res.stdout
    assert "Now: home/lone" in res.stdout
    assert "Sun  " in res.stdout
    res = run_cli("routine", "show", "--config", str(cfg_path), "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["learned"] is True
    assert data["quiet_periods"]["home"] == 39
    assert data["state"] == "home"
    assert len(data["limits_min"]["home"]) == 168
    assert data["limit_source"]["home"][0] == "learning"
    # 39 quiet periods after the kitchen, each after a lone sensor: both keys learned, and
    # with every quiet period in them their factor is 1
    kitchen = data["context_factors"]["home"]["room:kitchen"]
    assert kitchen["quiet_periods"] == 39
    assert kitchen["factor"] == 1.0
    assert data["context_factors"]["home"]["ctx:lone"]["quiet_periods"] == 39
    assert data["context"] == "lone"

    res = run_cli("routine", "reset", "--config", str(cfg_path), "--yes")
    assert res.returncode == 0, res.stderr
    assert "removed" in res.stdout
    data = json.loads(run_cli("routine", "show", "--config", str(cfg_path), "--json").stdout)
    assert data["learned"] is False
    assert data["quiet_periods"]["home"] == 0


def _write_home(root: Path, days: int, *, out_day: int | None = None) -> Path:
    """A home active every 20 minutes 07:00-22:00, in bed at night; away all of ``out_day``."""
    home = root / "synth"
    home.mkdir()
    start = datetime(2026, 1, 5)
    ev = ["ts,sensor_id,sensor_type,value"]
    acts = ["start,end,label"]
    for d in range(days):
        day = start + timedelta(days=d)
        if d == out_day:
            ev.append(f"{(day + timedelta(hours=7)).isoformat()},front_door,door,1")
            ev.append(f"{(day + timedelta(hours=7, seconds=5)).isoformat()},front_door,door,0")
            acts.append(
                f"{(day + timedelta(hours=7)).isoformat()},"
                f"{(day + timedelta(hours=23)).isoformat()},leave house"
            )
            ev.append(f"{(day + timedelta(hours=23)).isoformat()},front_door,door,1")
            ev.append(f"{(day + timedelta(hours=23, seconds=5)).isoformat()},front_door,door,0")
            ev.append(f"{(day + timedelta(hours=23, minutes=1)).isoformat()},kitchen_pir,motion,1")
            ev.append(f"{(day + timedelta(hours=23, minutes=10)).isoformat()},bed_mat,bed,1")
            continue
        ev.append(f"{(day + timedelta(hours=6, minutes=59)).isoformat()},bed_mat,bed,0")
        t = day + timedelta(hours=7)
        while t < day + timedelta(hours=22):
            ev.append(f"{t.isoformat()},kitchen_pir,motion,1")
            ev.append(f"{(t + timedelta(seconds=30)).isoformat()},kitchen_pir,motion,0")
            t += timedelta(minutes=20)
        ev.append(f"{(day + timedelta(hours=22, minutes=10)).isoformat()},bed_mat,bed,1")
        # the labels end at the last midnight of the log
        woke = day + (timedelta(days=1, hours=6, minutes=59) if d < days - 1 else timedelta(days=1))
        acts.append(
            f"{(day + timedelta(hours=22, minutes=10)).isoformat()},{woke.isoformat()},go to bed"
        )
    (home / "events.csv").write_text("\n".join(ev) + "\n")
    (home / "activities.csv").write_text("\n".join(acts) + "\n")
    return home


def test_eval_protocol_on_a_synthetic_home(tmp_path: Path) -> None:
    path = _write_home(tmp_path, 20, out_day=12)
    home = load_home(path, ZoneInfo("UTC"))
    assert home.entrance == "front_door"
    assert len(home.away) == 1
    # days 8..20 are scored; the away day has no moment at which someone is home
    res = evaluate(home, seeds=3)
    assert res.days == 13
    assert res.injected == 3 * 12
    moments = injection_moments(home, [home.first_day + timedelta(days=12)], seed=0)
    assert moments == {}
    for m in injection_moments(home, [home.first_day + timedelta(days=9)], seed=1).values():
        assert 8 <= m.hour < 20
    # a regular home: no false alarm, every emergency caught within the day limit (180 min)
    assert res.false_alarms == 0
    assert res.detected == res.injected
    assert all(0 < d <= 181 for d in res.delays_min)
    s = res.summary()
    assert s["false_alarms_per_day"] == 0
    assert s["delay_p90_min"] is not None


def test_eval_cli_on_a_shared_home(shared_data: Path) -> None:
    home = shared_data / "ambient" / "kasteren2008"
    res = run_cli("routine", "eval", "--data", str(home), "--seeds", "2", timeout=120)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    for key in (
        "days",
        "false_alarms_per_day",
        "injected",
        "detected",
        "delay_median_min",
        "delay_p90_min",
    ):
        assert key in summary
    assert summary["days"] == 21  # day 8 (2008-03-03) to the end of the labels (2008-03-23)
    assert 0 <= summary["false_alarms_per_day"] < 1.0
    assert 30 <= summary["injected"] <= 42
    assert summary["injected"] * 0.5 <= summary["detected"] <= summary["injected"]
    med = summary["delay_median_min"]
    assert med is not None
    assert 10 < med < 600
    assert not math.isnan(med)


def test_eval_cli_rejects_a_folder_without_logs(tmp_path: Path) -> None:
    res = run_cli("routine", "eval", "--data", str(tmp_path))
    assert res.returncode == 1
    assert "events.csv" in res.stderr


def test_eval_is_reproducible_and_seeds_differ(tmp_path: Path) -> None:
    home = load_home(_write_home(tmp_path, 12), ZoneInfo("UTC"))
    a = evaluate(home, seeds=2)
    b = evaluate(home, seeds=2)
    assert a == b
    days = [home.first_day + timedelta(days=8)]
    assert injection_moments(home, days, 0) != injection_moments(home, days, 1)
