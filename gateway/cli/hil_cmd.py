"""`anxin hil run`: hardware-in-the-loop scenarios against the real gateway process."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from gateway import hil
from gateway.errors import ConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("hil", help="hardware-in-the-loop scenarios (emulated or real sensors)")
    hsub = p.add_subparsers(dest="hil_command", metavar="ACTION", required=True)
    run = hsub.add_parser("run", help="run scenarios; exit 0 only if every expectation held")
    run.add_argument("scenarios", nargs="+", type=Path, metavar="SCENARIO.yaml", help="scenario files")
    run.add_argument("--broker", metavar="URL", help="use this broker instead of starting one")
    run.add_argument("--config", type=Path, metavar="FILE",
                     help="a real gateway config (real ports and adapter): sensor steps are performed by the rig")
    run.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML here")
    run.add_argument("--json", type=Path, metavar="FILE", help="write the JSON results here")
    run.add_argument("--skip-missing-data", action="store_true",
                     help="skip (not fail) a scenario whose data set (SisFall) is not beside the checkout")
    run.add_argument("--keep", type=Path, metavar="DIR",
                     help="keep each scenario's gateway log, config and database in DIR/<scenario file stem>")
    run.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="run up to N scenarios at once, each with its own broker and gateway (default 1)")
    run.set_defaults(func=_run)


async def _run_all(scenarios: list[hil.Scenario], args: argparse.Namespace) -> list[hil.Result]:
    """Every scenario, up to --jobs at a time; results in the order given."""
    if args.jobs > 1 and (args.broker or args.config):
        raise ConfigError("--jobs needs the rig's own broker and emulated sensors (no --broker or --config)")
    gate = asyncio.Semaphore(max(1, args.jobs))

    async def one(sc: hil.Scenario) -> hil.Result:
        async with gate:
            took = f"{sc.duration_s:g} s" if sc.speed == 1 else \
                f"{sc.duration_s:g} s scenario time at {sc.speed:g}x, {sc.real_s(sc.duration_s):.1f} s real"
            print(f"running {sc.name} ({took})...", flush=True)
            workdir = None
            if args.keep:
                workdir = args.keep / sc.path.stem
                workdir.mkdir(parents=True, exist_ok=True)
            return await hil.run_scenario(sc, broker_url=args.broker, real_config=args.config, workdir=workdir,
                                          skip_missing_data=args.skip_missing_data)

    return list(await asyncio.gather(*(one(sc) for sc in scenarios)))


def _run(args: argparse.Namespace) -> int:
    scenarios = [hil.load_scenario(p) for p in args.scenarios]
    results = asyncio.run(_run_all(scenarios, args))
    print(hil.report_text(results))
    if args.junit:
        args.junit.write_text(hil.report_junit(results), encoding="utf-8")
    summary = hil.report_json(results)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(json.dumps({"passed": summary["passed"], "failed": summary["failed"], "skipped": summary["skipped"]}))
    return 0 if all(r.ok for r in results) else 1
