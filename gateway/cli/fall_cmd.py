"""`anxin fall eval`: run the shipped fall model over SisFall-format recordings.

Each recording is resampled to the pendant's 50 Hz and fed, 10 samples a reading as the
pendant sends them, through the gateway's own :class:`gateway.detect.fall.FallDetector`.
What is scored is the candidate stage (the model and its windowing): a fall recording is
detected when it raises at least one candidate, a daily-activity recording is correct when
it raises none. The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigError

if TYPE_CHECKING:  # numpy and the detector load only when a fall command runs
    import numpy as np

    from gateway.detect.fall import FallDetector

ORIENTATIONS = ("upright", "upside-down", "turned", "tilted", "random")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("fall", help="pendant fall model tools")
    fsub = p.add_subparsers(dest="fall_command", metavar="ACTION", required=True)
    ev = fsub.add_parser(
        "eval", help="score the fall model on SisFall-format recordings via the streaming path"
    )
    ev.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="directory with sisfall_adxl345_200hz.npz and labels.csv",
    )
    ev.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="GLOB",
        help="evaluate recordings whose file name matches (repeatable), e.g. 'SA01/F*'",
    )
    ev.add_argument(
        "--orientation",
        choices=ORIENTATIONS,
        default="upright",
        help="wear the pendant another way: rotate every recording before streaming",
    )
    ev.add_argument("--model", metavar="FILE", help="a .tflite model instead of the shipped one")
    ev.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="candidate score threshold (default: the config default)",
    )
    ev.add_argument(
        "--runtime",
        choices=("ai_edge_litert", "tflite_runtime"),
        help="force a TFLite runtime (default: whichever is installed)",
    )
    ev.add_argument("--quiet", action="store_true", help="print only the JSON summary")
    ev.set_defaults(func=_eval)


def orientation_matrix(name: str, rng: np.random.Generator) -> np.ndarray:
    """The rotation applied to the sensor axes for ``--orientation``."""
    import numpy as np

    from gateway.detect.fall_features import random_rotation

    if name == "upright":
        return np.eye(3)
    if name == "upside-down":  # 180 degrees about the z axis: SisFall's vertical y flips
        return np.diag([-1.0, -1.0, 1.0])
    if name == "turned":  # 90 degrees about the vertical (SisFall's y axis)
        return np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    if name == "tilted":  # 45 degrees forward
        c = s = np.sqrt(0.5)
        return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    return random_rotation(rng)


def stream_recording(det: FallDetector, rec: np.ndarray, per_reading: int = 10) -> None:
    """Feed a 50 Hz recording to the detector as the pendant driver would: 10 samples a reading."""
    from gateway.model import Reading, ReadingKind

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for k in range(0, len(rec), per_reading):
        chunk = rec[k : k + per_reading]
        det.feed(
            Reading(
                sensor_id="pendant",
                kind=ReadingKind.ACCEL,
                value=None,
                ts=t0 + timedelta(seconds=k / 50),
                monotonic_s=k / 50,
                boot_id="eval",
                clock_synced=True,
                extra={"samples_g": chunk.tolist()},
            )
        )


def _eval(args: argparse.Namespace) -> int:
    import numpy as np

    from gateway.config import FallConfig
    from gateway.detect.fall import FallDetector, FallModel
    from gateway.detect.fall_features import resample_200_to_50

    data = Path(args.data)
    npz_path, labels_path = data / "sisfall_adxl345_200hz.npz", data / "labels.csv"
    if not npz_path.is_file() or not labels_path.is_file():
        raise ConfigError(f"{data}: not a SisFall-format directory (npz + labels.csv)")
    npz = np.load(npz_path)
    acc, offsets, g = npz["acc"], npz["offsets"], float(npz["g_per_count"])
    fs = int(npz["fs_hz"])
    if fs != 200:
        raise ConfigError(f"{npz_path}: expected 200 Hz, found {fs}")
    with open(labels_path, newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.DictReader(f))
    cfg = FallConfig()
    if args.threshold is not None:
        cfg = FallConfig(threshold=args.threshold)
    model = FallModel(args.model, runtime=args.runtime)
    rng = np.random.default_rng(7)
    tp = fn = tn = fp = alarms = windows = 0
    adl_s = infer_s = 0.0
    results: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        if args.only and not any(fnmatch.fnmatch(row["file"], pat) for pat in args.only):
            continue
        rec = resample_200_to_50(acc[offsets[i] : offsets[i + 1]] * g)
        rec = rec @ orientation_matrix(args.orientation, rng).T
        det = FallDetector(cfg, None, {}, model=model)
        stream_recording(det, rec)
        stage = det.stream("pendant").stage
        n = len(det.candidates)
        windows += stage.windows
        infer_s += stage.infer_s
        is_fall = row["is_fall"] == "1"
        if is_fall:
            tp, fn = tp + (n > 0), fn + (n == 0)
            verdict = "detected" if n else "MISSED"
        else:
            tn, fp = tn + (n == 0), fp + (n > 0)
            alarms += n
            adl_s += len(rec) / 50
            verdict = "FALSE_ALARM" if n else "ok"
        res = {
            "file": row["file"],
            "is_fall": is_fall,
            "candidates": n,
            "max_score": round(stage.max_score, 4),
            "verdict": verdict,
        }
        results.append(res)
        if not args.quiet:
            print(
                f"{row['file']:24s} {'fall' if is_fall else 'adl ':4s} candidates={n} "
                f"max_score={stage.max_score:.3f} {verdict}",
                flush=True,
            )
    if not results:
        raise ConfigError("no recordings matched")
    summary = {
        "sensitivity": round(tp / (tp + fn), 4) if tp + fn else None,
        "specificity": round(tn / (tn + fp), 4) if tn + fp else None,
        "false_alarms_per_hour": round(alarms / (adl_s / 3600), 3) if adl_s else None,
        "inference_us_per_window": round(infer_s / max(1, windows) * 1e6, 1),
        "recordings": len(results),
        "falls": tp + fn,
        "missed": fn,
        "adl": tn + fp,
        "adl_with_alarm": fp,
        "adl_hours": round(adl_s / 3600, 3),
        "windows": windows,
        "orientation": args.orientation,
        "threshold": cfg.threshold,
        "runtime": model.runtime,
        "model": str(model.path),
    }
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0
