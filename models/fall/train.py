"""Train, cross-validate and export the pendant fall model (SisFall, 50 Hz, 4 s windows).

    /work/venv/bin/pip install -e '.[train]'
    python models/fall/train.py --data ../shared/data/sisfall            # CV + export
    python models/fall/train.py --data ../shared/data/sisfall --folds 0  # export only

Leave-subjects-out cross-validation: subjects (not windows, not trials) are split into
folds; each fold's model is scored on the recordings of subjects it never saw, with the
same windowing and candidate rule as the gateway (gateway.detect.fall_features), upright
and with every recording randomly rotated. Results go to models/fall/cv_report.json.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from gateway.detect.fall_features import (  # noqa: E402 - after the sys.path line above
    CHANNELS,
    HOP,
    WINDOW,
    batch_features,
    count_candidates,
    random_rotation,
    resample_200_to_50,
)

VERSION = "1.0.0"
SEED = 7


def load(data_dir: Path) -> tuple[list[np.ndarray], list[dict[str, str]]]:
    """Every recording as (n, 3) float g at 50 Hz, and its labels.csv row."""
    npz = np.load(data_dir / "sisfall_adxl345_200hz.npz")
    acc, offsets, g = npz["acc"], npz["offsets"], float(npz["g_per_count"])
    with open(data_dir / "labels.csv", newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.DictReader(f))
    recs = [resample_200_to_50(acc[offsets[i] : offsets[i + 1]] * g) for i in range(len(rows))]
    return recs, rows


def training_windows(rec: np.ndarray, is_fall: bool) -> tuple[list[np.ndarray], list[int]]:
    """Windows and labels. Falls: windows holding the impact (the peak |a|) 1 to 3.4 s in are
    positive; windows ending 2 s before the impact are ordinary activity; the rest (the fall
    itself at the edges, lying afterwards) are left out as ambiguous."""
    n = len(rec)
    wins: list[np.ndarray] = []
    labels: list[int] = []
    if not is_fall:
        for s in range(0, n - WINDOW + 1, HOP):
            wins.append(rec[s : s + WINDOW])
            labels.append(0)
        return wins, labels
    peak = int(np.argmax(np.linalg.norm(rec, axis=1)))
    for s in range(max(0, peak - 170), min(n - WINDOW, peak - 50) + 1, 5):
        wins.append(rec[s : s + WINDOW])
        labels.append(1)
    for s in range(0, peak - 100 - WINDOW + 1, HOP):
        wins.append(rec[s : s + WINDOW])
        labels.append(0)
    return wins, labels


def stream_windows(rec: np.ndarray) -> np.ndarray:
    """The windows the gateway scores on a live stream: every HOP samples once WINDOW are in."""
    starts = range(0, len(rec) - WINDOW + 1, HOP)
    return np.stack([rec[s : s + WINDOW] for s in starts])


def build_model(dropout: float = 0.0):  # type: ignore[no-untyped-def]
    import tensorflow as tf

    inp = tf.keras.Input((WINDOW, CHANNELS), name="features")
    x = tf.keras.layers.Conv1D(16, 7, strides=2, activation="relu")(inp)
    x = tf.keras.layers.MaxPooling1D(2)(x)
    x = tf.keras.layers.Conv1D(24, 5, activation="relu")(x)
    x = tf.keras.layers.MaxPooling1D(2)(x)
    x = tf.keras.layers.Conv1D(32, 5, activation="relu")(x)
    x = tf.keras.layers.GlobalMaxPooling1D()(x)
    if dropout:
        x = tf.keras.layers.Dropout(dropout)(x)
    x = tf.keras.layers.Dense(16, activation="relu")(x)
    out = tf.keras.layers.Dense(1, activation="sigmoid", name="fall")(x)
    model = tf.keras.Model(inp, out)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(2e-3),
        loss="binary_crossentropy",
        metrics=[tf.keras.metrics.AUC(name="auc")],
    )
    return model


def fit(x: np.ndarray, y: np.ndarray, args: argparse.Namespace, seed: int):  # type: ignore[no-untyped-def]
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    model = build_model(args.dropout)
    pos = max(1, int(y.sum()))
    neg = max(1, len(y) - pos)
    # Daily activity weighs more than its share (--neg-weight): false alarms make people
    # take the pendant off, and the confirmation stage cannot rescue a missed impact.
    weights = {0: args.neg_weight * len(y) / (2 * neg), 1: len(y) / (2 * pos)}
    model.fit(
        x, y, epochs=args.epochs, batch_size=256, class_weight=weights, verbose=2, shuffle=True
    )
    return model


def subject_folds(subjects: list[str], k: int) -> list[list[str]]:
    """Round-robin over young (SA) and older (SE) subjects so every fold holds both."""
    rng = np.random.default_rng(SEED)
    folds: list[list[str]] = [[] for _ in range(k)]
    i = 0
    for group in ("SA", "SE"):
        members = sorted(s for s in subjects if s.startswith(group))
        rng.shuffle(members)
        for s in members:
            folds[i % k].append(s)
            i += 1
    return folds


def score_recordings(model, recs: list[np.ndarray], rotate: bool, rng: np.random.Generator):  # type: ignore[no-untyped-def]
    scores = []
    for rec in recs:
        r = rec @ random_rotation(rng).T if rotate else rec
        feats = batch_features(stream_windows(r))
        scores.append(model.predict(feats, batch_size=1024, verbose=0)[:, 0])
    return scores


def metrics(scores, rows, threshold: float) -> dict[str, float | int]:  # type: ignore[no-untyped-def]
    tp = fn = tn = fp = alarms = 0
    adl_s = 0.0
    for sc, row in zip(scores, rows, strict=True):
        n = count_candidates(sc, threshold)
        if row["is_fall"] == "1":
            tp += n > 0
            fn += n == 0
        else:
            tn += n == 0
            fp += n > 0
            alarms += n
            adl_s += float(row["duration_s"])
    return {
        "sensitivity": round(tp / max(1, tp + fn), 4),
        "specificity": round(tn / max(1, tn + fp), 4),
        "false_alarms_per_hour": round(alarms / max(adl_s / 3600, 1e-9), 3),
        "falls": tp + fn,
        "missed_falls": fn,
        "adl_recordings": tn + fp,
        "adl_recordings_with_alarm": fp,
        "adl_hours": round(adl_s / 3600, 3),
    }


def dataset(recs, rows, keep):  # type: ignore[no-untyped-def]
    wins: list[np.ndarray] = []
    labels: list[int] = []
    for rec, row in zip(recs, rows, strict=True):
        if keep(row):
            w, lab = training_windows(rec, row["is_fall"] == "1")
            wins += w
            labels += lab
    return batch_features(np.stack(wins)), np.asarray(labels, np.float32)


def shift_operating_point(model, threshold: float) -> None:  # type: ignore[no-untyped-def]
    """Move the output bias so that the exported score crosses 0.5 where the trained one
    crosses ``threshold``: the gateway's default threshold (0.5) is then the operating point
    chosen in cross-validation, and the config need not know about model versions."""
    dense = model.get_layer("fall")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel, bias - np.log(threshold / (1 - threshold))])


def export(model, out: Path) -> str:  # type: ignore[no-untyped-def]
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    # Float32 on purpose: ~30 kB and tens of microseconds a window on a Pi either way;
    # int8 would move scores near the threshold for no gain worth having.
    blob = conv.convert()
    out.write_bytes(blob)
    return hashlib.sha256(blob).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "sisfall")
    ap.add_argument("--folds", type=int, default=5, help="subject folds for CV; 0 skips CV")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument(
        "--neg-weight",
        type=float,
        default=6.0,
        help="weight of daily-activity windows relative to a balanced split",
    )
    ap.add_argument("--dropout", type=float, default=0.2, help="dropout before the dense layer")
    ap.add_argument(
        "--operating-point",
        type=float,
        default=0.9,
        help="raw score that becomes 0.5 in the exported model (see card)",
    )
    ap.add_argument("--threads", type=int, default=1, help="TensorFlow threads (shared machine)")
    ap.add_argument("--out", type=Path, default=HERE / "fall_detector.tflite")
    ap.add_argument("--report", type=Path, default=HERE / "cv_report.json")
    args = ap.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    t0 = time.time()
    recs, rows = load(args.data)
    print(f"loaded {len(recs)} recordings in {time.time() - t0:.0f}s", flush=True)
    subjects = sorted({r["subject"] for r in rows})
    report: dict[str, object] = {
        "version": VERSION,
        "seed": SEED,
        "epochs": args.epochs,
        "neg_weight": args.neg_weight,
        "dropout": args.dropout,
        "operating_point": args.operating_point,
        "command": " ".join(sys.argv),
    }
    thresholds = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
    if args.folds:
        folds = subject_folds(subjects, args.folds)
        report["folds"] = folds
        all_scores: dict[str, list] = {"upright": [None] * len(rows), "rotated": [None] * len(rows)}
        rng = np.random.default_rng(SEED)
        for k, held in enumerate(folds):
            x, y = dataset(recs, rows, lambda r, h=held: r["subject"] not in h)
            print(f"fold {k}: held out {held}; {len(y)} windows, {int(y.sum())} fall", flush=True)
            model = fit(x, y, args, SEED + k)
            idx = [i for i, r in enumerate(rows) if r["subject"] in held]
            for name, rot in (("upright", False), ("rotated", True)):
                sc = score_recordings(model, [recs[i] for i in idx], rot, rng)
                for i, s in zip(idx, sc, strict=True):
                    all_scores[name][i] = s
            m = metrics(
                [all_scores["upright"][i] for i in idx],
                [rows[i] for i in idx],
                args.operating_point,
            )
            print(f"fold {k}: {m} ({time.time() - t0:.0f}s)", flush=True)
        cv: dict[str, object] = {}
        for name, sc in all_scores.items():
            cv[name] = {str(t): metrics(sc, rows, t) for t in thresholds}
        misses = [
            rows[i]["file"]
            for i in range(len(rows))
            if rows[i]["is_fall"] == "1"
            and count_candidates(all_scores["upright"][i], args.operating_point) == 0
        ]
        alarms = [
            rows[i]["file"]
            for i in range(len(rows))
            if rows[i]["is_fall"] == "0"
            and count_candidates(all_scores["upright"][i], args.operating_point) > 0
        ]
        cv["missed_falls_at_operating_point"] = misses
        cv["adl_with_alarm_at_operating_point"] = alarms
        report["cv"] = cv
        print(json.dumps(cv, indent=1), flush=True)
    x, y = dataset(recs, rows, lambda r: True)
    print(f"final model: {len(y)} windows, {int(y.sum())} fall", flush=True)
    model = fit(x, y, args, SEED)
    report["params"] = int(model.count_params())
    if args.operating_point != 0.5:
        shift_operating_point(model, args.operating_point)
    report["sha256"] = export(model, args.out)
    report["seconds"] = round(time.time() - t0)
    args.report.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: report[k] for k in ("version", "params", "sha256", "seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
