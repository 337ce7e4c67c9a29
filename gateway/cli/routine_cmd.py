"""`anxin routine show|reset|eval`: the learned routine of this home, and its scoring."""

from __future__ import annotations

import argparse
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway import config
from gateway.cli.config_cmd import add_config_arg
from gateway.detect.inactivity import InactivityDetector
from gateway.detect.profile import ASLEEP, HOME, STATES
from gateway.detect.replay import evaluate, load_home
from gateway.detect.rules import RoutineRules
from gateway.errors import ConfigError
from gateway.store import Store
from gateway.store.db import MB

SHADES = " ▁▂▃▄▅▆▇█"
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("routine", help="the learned routine: show it, reset it, score it on a log")
    rsub = p.add_subparsers(dest="routine_command", metavar="ACTION", required=True)

    show = rsub.add_parser(
        "show", help="print the learned profile, an hour-of-week chart and the state now"
    )
    add_config_arg(show)
    show.add_argument("--json", action="store_true", help="print JSON instead of tables")
    show.set_defaults(func=_show)

    reset = rsub.add_parser("reset", help="forget everything learned about the routine")
    add_config_arg(reset)
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    reset.set_defaults(func=_reset)

    ev = rsub.add_parser(
        "eval", help="replay ambient event logs through the detectors; last line a JSON summary"
    )
    ev.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="a home folder with events.csv (and activities.csv), or a folder of them",
    )
    ev.add_argument("--seeds", type=int, default=20, help="injected-emergency seeds (default 20)")
    ev.add_argument(
        "--tz", default="UTC", help="time zone the log's wall-clock times are in (default UTC)"
    )
    add_config_arg(ev)
    ev.set_defaults(func=_eval)


def _open_store(cfg: config.Config) -> Store:
    st = cfg.storage
    return Store(
        st.path, budget_bytes=int(st.budget_mb * MB), reserve_bytes=int(st.reserve_mb * MB)
    ).open()


def _load_cfg(path: str | None) -> config.Config:
    return config.load(path)


# --------------------------------------------------------------------------- show


def _show(args: argparse.Namespace) -> int:
    cfg = _load_cfg(args.config)
    if not Path(cfg.storage.path).exists():
        raise ConfigError(
            f"no database at {cfg.storage.path}: nothing learned yet", path=cfg.storage.path
        )
    store = _open_store(cfg)
    try:
        inact = InactivityDetector(cfg, store)
        has = inact.load()
        rules = RoutineRules(cfg, store)
        rules.restore()
        data = show_data(inact, rules, has)
    finally:
        store.close()
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(render(data))
    return 0


def show_data(inact: InactivityDetector, rules: RoutineRules, has: bool) -> dict[str, Any]:
    prof = inact.profile
    tz = inact.tz
    limits = {s: [prof.limit(s, h) for h in range(168)] for s in STATES}
    last = inact.tracker.last
    lim = inact.current_limit()
    now = datetime.now(UTC)
    due_m, source = rules.not_up_time_min()
    return {
        "learned": has,
        "timezone": str(tz.key),
        "history_days": round(prof.history_days, 2),
        "learning_days": inact.cfg.learning_days,
        "quiet_periods": {s: prof.total(s) for s in STATES},
        "state": last.state if last else None,
        "last_activity": (
            {
                "ts": last.ts.astimezone(tz).isoformat(),
                "sensor": last.sensor_id,
                "room": last.room,
                "quiet_min": round((now - last.ts).total_seconds() / 60, 1),
            }
            if last
            else None
        ),
        "limit_now_min": round(lim.minutes, 1) if lim else None,
        "limit_now_source": lim.source if lim else None,
        "not_up_by": f"{int(due_m) // 60:02d}:{int(due_m) % 60:02d}",
        "not_up_source": source,
        "wake_history": [[d, round(m, 1)] for d, m in rules.wake],
        "limits_min": {s: [round(x.minutes, 1) for x in limits[s]] for s in STATES},
        "limit_source": {s: [x.source for x in limits[s]] for s in STATES},
        "samples": {s: [x.samples for x in limits[s]] for s in STATES},
        "context": last.context if last else None,
        "context_factors": {
            s: {
                key: {
                    "factor": _rounded(prof.factor(s, (key,))[0]),
                    "quiet_periods": int(arr.sum()),
                }
                for key, arr in sorted(prof.contexts[s].items())
            }
            for s in STATES
        },
        "quiet_periods_by_hour_of_week": {
            s: prof.counts[s].sum(axis=1).astype(int).tolist() for s in STATES
        },
    }


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def render(data: dict[str, Any]) -> str:
    out: list[str] = []
    learned = "learned" if data["history_days"] >= data["learning_days"] else "learning"
    out.append(
        f"Routine ({data['timezone']}): {data['history_days']:.1f} days of history "
        f"({learned}; learned limits after {data['learning_days']} days), quiet periods learned: "
        + ", ".join(f"{k} {v}" for k, v in data["quiet_periods"].items())
    )
    last = data["last_activity"]
    if last:
        out.append(
            f"Now: {data['state']}{'/' + data['context'] if data['context'] else ''}; "
            f"last activity {last['ts']} {last['sensor']} "
            f"({last['room'] or '-'}), quiet {last['quiet_min']:.0f} min; "
            f"limit {_fmt(data['limit_now_min'])} ({data['limit_now_source']})"
        )
    else:
        out.append("Now: no activity seen yet")
    factors = data["context_factors"]
    if any(factors.values()):
        out.append(
            "Context factors on the hour's limit (learned: quiet after this room / in this "
            "context vs after anything, 90th percentiles; '-' = too little history)"
        )
        for state, per in factors.items():
            for key, v in per.items():
                f = "-" if v["factor"] is None else f"x{v['factor']:.2f}"
                out.append(f"  {state:7s} {key:24s} {f:>6s}  ({v['quiet_periods']} quiet periods)")
    out.append(
        f"Not up by: {data['not_up_by']} ({data['not_up_source']}, "
        f"{len(data['wake_history'])} days seen)"
    )
    out.append("")
    out.append(
        "Limit by hour of day (minutes; Monday's row of the hour-of-week profile; "
        "n = quiet periods behind it)"
    )
    out.append(f"{'hour':>5} {'home':>7} {'n':>5} {'asleep':>7} {'n':>5}")
    home, asleep = data["limits_min"][HOME], data["limits_min"][ASLEEP]
    nh, na = data["samples"][HOME], data["samples"][ASLEEP]
    for h in range(24):
        out.append(f"{h:02d}:00 {home[h]:7.0f} {nh[h]:5d} {asleep[h]:7.0f} {na[h]:5d}")
    out.append("")
    out.append(
        f"Hour-of-week chart, quiet limit at home (darker = longer; scale 0 to {max(home):.0f} min)"
    )
    hours = "     " + "".join(f"{h:<3d}" for h in range(0, 24, 3))
    out.append(hours)
    top = max(*home, 1.0)
    for d, name in enumerate(DAYS):
        row = home[d * 24 : d * 24 + 24]
        out.append(f"{name}  " + "".join(SHADES[min(8, math.ceil(8 * v / top))] for v in row))
    seen = data["quiet_periods_by_hour_of_week"][HOME]
    most = max(*seen, 1)
    out.append("")
    out.append(f"Hour-of-week chart, quiet periods learned at home (darker = more; up to {most})")
    out.append(hours)
    for d, name in enumerate(DAYS):
        row = seen[d * 24 : d * 24 + 24]
        out.append(f"{name}  " + "".join(SHADES[min(8, math.ceil(8 * v / most))] for v in row))
    return "\n".join(out)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f} min"


# --------------------------------------------------------------------------- reset


def _reset(args: argparse.Namespace) -> int:
    cfg = _load_cfg(args.config)
    if not args.yes:
        answer = input(f"Forget the learned routine in {cfg.storage.path}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing changed")
            return 1
    store = _open_store(cfg)
    try:
        n = store.delete_learned("routine.")
    finally:
        store.close()
    print(f"routine reset: {n} learned entries removed")
    return 0


# --------------------------------------------------------------------------- eval


def _eval(args: argparse.Namespace) -> int:
    base = _load_cfg(args.config) if args.config else None
    data = Path(args.data)
    homes = (
        [data]
        if (data / "events.csv").is_file()
        else sorted(p for p in data.iterdir() if (p / "events.csv").is_file())
        if data.is_dir()
        else []
    )
    if not homes:
        raise ConfigError("no events.csv in the folder or its sub-folders", path=str(data))
    try:
        tz = ZoneInfo(args.tz)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"unknown time zone {args.tz!r}", key="--tz") from exc
    if args.seeds < 1:
        raise ConfigError("--seeds must be at least 1", key="--seeds")
    results = []
    for path in homes:
        res = evaluate(load_home(path, tz, base), seeds=args.seeds)
        results.append(res)
        if len(homes) > 1:
            print(json.dumps(res.summary()))
    if len(results) == 1:
        print(json.dumps(results[0].summary()))
        return 0
    days = sum(r.days for r in results)
    fas = sum(r.false_alarms for r in results)
    delays = sorted(d for r in results for d in r.delays_min)
    from gateway.detect.replay import EvalResult

    pooled = EvalResult(
        "+".join(r.home for r in results),
        days,
        fas,
        {
            k: sum(r.false_alarms_by_type.get(k, 0) for r in results)
            for k in sorted({k for r in results for k in r.false_alarms_by_type})
        },
        sum(r.injected for r in results),
        sum(r.detected for r in results),
        delays,
    ).summary()
    pooled["homes"] = [r.home for r in results]
    print(json.dumps(pooled))
    return 0
