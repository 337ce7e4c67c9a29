"""Fall model cost: µs per window and the whole pendant pipeline's CPU share at 50 Hz.

    python bench/fall_inference.py [--minutes 10]

Baseline: a bare ``interpreter.invoke()`` on one window (what the network alone costs).
Pipeline: 50 Hz samples fed 10 per reading through :class:`FallDetector.feed` (features,
invoke, candidate and confirmation logic), as fast as possible; its CPU time divided by
the stream time it covered is the share of one core the detector needs on this machine.
Both run in the same process, one after the other. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.config import FallConfig
from gateway.detect.fall import FallDetector, FallModel
from gateway.detect.fall_features import CHANNELS, WINDOW, window_features
from gateway.model import Reading, ReadingKind


def stream(minutes: float, rng: np.random.Generator) -> np.ndarray:
    n = int(minutes * 60 * 50)
    t = np.arange(n) / 50
    x = np.zeros((n, 3))
    x[:, 1] = 1.0 + 0.3 * np.sin(2 * np.pi * 1.8 * t)
    x[:, 0] = 0.2 * np.sin(2 * np.pi * 0.9 * t)
    return x + rng.normal(0, 0.05, (n, 3))


def pct(a: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(a) * 1e6, q))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="stream length to push through")
    ap.add_argument("--baseline-n", type=int, default=3000, help="bare invokes to time")
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    model = FallModel()

    feats = window_features(stream(0.1, rng)[:WINDOW]).reshape(1, WINDOW, CHANNELS)
    interp = model._interp  # the bare interpreter of the same model
    inp = interp.get_input_details()[0]["index"]
    lat: list[float] = []
    for _ in range(200):
        interp.set_tensor(inp, feats)
        interp.invoke()
    for _ in range(args.baseline_n):
        t0 = time.perf_counter()
        interp.set_tensor(inp, feats)
        interp.invoke()
        lat.append(time.perf_counter() - t0)
    base_lat = lat

    x = stream(args.minutes, rng)
    det = FallDetector(FallConfig(), None, {}, model=model)
    t0w = datetime(2026, 1, 1, tzinfo=UTC)
    readings = [
        Reading(
            sensor_id="p",
            kind=ReadingKind.ACCEL,
            value=None,
            ts=t0w + timedelta(seconds=k / 50),
            monotonic_s=k / 50,
            boot_id="b",
            clock_synced=True,
            extra={"samples_g": x[k : k + 10].tolist()},
        )
        for k in range(0, len(x), 10)
    ]
    feed_lat: list[float] = []
    c0 = time.process_time()
    w0 = time.perf_counter()
    for r in readings:
        t = time.perf_counter()
        det.feed(r)
        feed_lat.append(time.perf_counter() - t)
    cpu = time.process_time() - c0
    wall = time.perf_counter() - w0
    stage = det.stream("p").stage
    stream_s = len(x) / 50
    out = {
        "us_per_window": round(cpu / stage.windows * 1e6, 1),
        "baseline_us_per_window": round(float(np.mean(base_lat)) * 1e6, 1),
        "pipeline_cpu_percent": round(cpu / stream_s * 100, 4),
        "invoke_only_cpu_percent": round(
            float(np.sum(base_lat)) / args.baseline_n * stage.windows / stream_s * 100, 4
        ),
        "ratio_pipeline_to_invoke": round(cpu / stage.windows / float(np.mean(base_lat)), 2),
        "baseline_p50_us": round(pct(base_lat, 50), 1),
        "baseline_p99_us": round(pct(base_lat, 99), 1),
        "feed_p50_us": round(pct(feed_lat, 50), 1),
        "feed_p99_us": round(pct(feed_lat, 99), 1),
        "feed_max_us": round(max(feed_lat) * 1e6, 1),
        "windows": stage.windows,
        "stream_s": stream_s,
        "wall_s": round(wall, 3),
        "runtime": model.runtime,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
