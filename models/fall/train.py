"""Train, cross-validate and export the pendant fall model (SisFall, 50 Hz, 6 s windows).

    /work/venv/bin/pip install -e '.[train]'
    python models/fall/train.py --data ../shared/data/sisfall            # CV + export
    python models/fall/train.py --data ../shared/data/sisfall --folds 0  # export only

Leave-subjects-out cross-validation: subjects (not windows, not trials) are split into
folds; each fold's model is scored on the recordings of subjects it never saw, with the
same windowing and candidate rule as the gateway (gateway.detect.fall_features), upright
and with every recording randomly rotated. Results go to models/fall/cv_report.json.

The model is an ensemble of ``--members`` small CNNs (seeds 7, 107, ... 407) whose mean
logit is exported as one TFLite graph, so the gateway still runs one model. Each daily
activity is also trained on once more as another person might have done it (``--augment``:
time-stretched, moved harder or more gently, a noisier sensor); falls are not augmented. Positive windows hold
the impact 1.8-3.2 s into the 6 s window, i.e. with 2.8-4.2 s of its aftermath; windows
whose impact is 5 s or more in (under a second of aftermath) are negative, so the model
waits to see the wearer stay down before it calls a candidate.
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
    FS_HZ,
    HOP,
    SMOOTH,
    WINDOW,
    batch_features,
    count_candidates,
    random_rotation,
    resample_200_to_50,
)

VERSION = "1.3.0"
SEED = 7


def load(data_dir: Path) -> tuple[list[np.ndarray], list[dict[str, str]]]:
    """Every recording as (n, 3) float g at 50 Hz, and its labels.csv row."""
    npz = np.load(data_dir / "sisfall_adxl345_200hz.npz")
    acc, offsets, g = npz["acc"], npz["offsets"], float(npz["g_per_count"])
    with open(data_dir / "labels.csv", newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.DictReader(f))
    recs = [resample_200_to_50(acc[offsets[i] : offsets[i + 1]] * g) for i in range(len(rows))]
    return recs, rows


HARD_NEGATIVES = "D10,D11,D13,D14,D18,D19"
"""Daily activities that look most like falls (sitting or lying down fast, collapsing into a
chair, turning in bed, stumbling, jumping); ``--hard-weight`` weighs their windows more."""


def augment(rec: np.ndarray, rng: np.random.Generator, args: argparse.Namespace) -> np.ndarray:
    """One variant of a recording as another person (or another day) might have made it,
    for training only: slower or faster (``--stretch``, resampled), moving harder or more
    gently (``--gain`` on the dynamic part, around the ~0.25 s moving average the features
    use, so posture and gravity stay), and a noisier sensor (``--noise-g``, per axis)."""
    from scipy.ndimage import uniform_filter1d
    from scipy.signal import resample_poly

    x = np.asarray(rec, np.float64)
    lo, hi = args.stretch
    up = round(50 * rng.uniform(lo, hi))
    if up != 50:
        x = resample_poly(x, up, 50, axis=0, padtype="line")
    lo, hi = args.gain
    gain = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    slow = uniform_filter1d(x, SMOOTH, axis=0, mode="nearest")
    x = slow + gain * (x - slow)
    if args.noise_g:
        x = x + rng.normal(0.0, rng.uniform(0.0, args.noise_g), x.shape)
    return x


def recording_windows(rec: np.ndarray, is_fall: bool) -> np.ndarray:
    """Window starts whose features are computed once per recording: every 0.1 s in a fall
    recording (training positives need the impact at many offsets), every HOP (the gateway's
    stream) in a daily activity. Starts that are multiples of HOP are the stream's windows."""
    return np.arange(0, len(rec) - WINDOW + 1, 5 if is_fall else HOP)


def window_labels(
    starts: np.ndarray, peak: int | None, args: argparse.Namespace
) -> tuple[np.ndarray, np.ndarray]:
    """(which of ``starts`` to train on, their labels). Daily activity: every stream window,
    negative. Falls, with the impact taken as the recording's peak |a|: positive when the
    impact is ``--impact-from``..``--impact-to`` seconds into the window, so a positive window
    always holds >= 2 s of what follows the impact (the wearer down, in a new posture);
    negative when the window ends 2 s before the impact (ordinary activity) or when the impact
    is ``--late-negative`` s or more into the window (too little aftermath yet: the model must
    wait for it); the rest are left out as ambiguous."""
    if peak is None:
        return np.arange(len(starts)), np.zeros(len(starts), np.float32)
    at = peak - starts  # impact index inside each window
    lo, hi = round(args.impact_from * FS_HZ), round(args.impact_to * FS_HZ)
    pos = (at >= lo) & (at <= hi)
    stream = starts % HOP == 0
    neg = stream & (starts + WINDOW <= peak - 2 * FS_HZ)
    if args.late_negative:
        neg |= stream & (at >= round(args.late_negative * FS_HZ)) & (at < WINDOW)
    keep = np.nonzero(pos | neg)[0]
    return keep, pos[keep].astype(np.float32)


def build_member(dropout: float):  # type: ignore[no-untyped-def]
    """One network of the ensemble; its output is a logit."""
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
    out = tf.keras.layers.Dense(1, name="logit")(x)
    model = tf.keras.Model(inp, out)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(2e-3),
        loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
    )
    return model


def fit_member(x: np.ndarray, y: np.ndarray, w: np.ndarray, args: argparse.Namespace, seed: int):  # type: ignore[no-untyped-def]
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    model = build_member(args.dropout)
    pos = max(1, int(y.sum()))
    neg = max(1, len(y) - pos)
    # Daily activity weighs more than its share (--neg-weight): false alarms make people
    # take the pendant off, and the confirmation stage cannot rescue a missed impact.
    sw = np.where(y > 0.5, len(y) / (2 * pos), args.neg_weight * len(y) / (2 * neg)) * w
    model.fit(x, y, sample_weight=sw, epochs=args.epochs, batch_size=256, verbose=0, shuffle=True)
    return model


def fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, args: argparse.Namespace, seed: int) -> list:  # type: ignore[type-arg]
    """``--members`` networks, seeds seed, seed + 100, ...; scored by their mean logit."""
    return [fit_member(x, y, w, args, seed + 100 * j) for j in range(args.members)]


def ensemble_logits(members: list, feats: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
    out = [m.predict(feats, batch_size=4096, verbose=0)[:, 0].astype(np.float64) for m in members]
    return np.mean(out, axis=0)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


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


def stream_features(rec: np.ndarray) -> np.ndarray:
    starts = range(0, len(rec) - WINDOW + 1, HOP)
    return batch_features(np.stack([rec[s : s + WINDOW] for s in starts]))


def score_recordings(members, feats: list[np.ndarray]) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    """Each recording's stream window scores (all recordings in one batch: fast)."""
    if not feats:
        return []
    p = sigmoid(ensemble_logits(members, np.concatenate(feats)))
    cuts = np.cumsum([len(f) for f in feats])[:-1]
    return list(np.split(p, cuts))


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


def dataset(cache, rows, keep, args):  # type: ignore[no-untyped-def]
    """Training windows of the recordings ``keep`` accepts, with labels and weights."""
    hard = set(args.hard.split(",")) if args.hard else set()
    xs, ys, ws = [], [], []
    for (starts, feats, peak), row in zip(cache, rows, strict=True):
        if keep(row):
            idx, y = window_labels(starts, peak, args)
            xs.append(feats[idx])
            ys.append(y)
            ws.append(np.full(len(y), args.hard_weight if row["activity"] in hard else 1.0))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)


def exported_model(members, threshold: float):  # type: ignore[no-untyped-def]
    """One Keras model for the gateway: the members' mean logit, shifted so that the output
    crosses 0.5 where the ensemble's probability crosses ``threshold`` (the operating point
    chosen in cross-validation), then a sigmoid. The gateway's default threshold (0.5) is
    then that operating point, and the config need not know about model versions."""
    import tensorflow as tf

    inp = tf.keras.Input((WINDOW, CHANNELS), name="features")
    outs = [m(inp) for m in members]
    z = tf.keras.layers.Average()(outs) if len(outs) > 1 else outs[0]
    z = tf.keras.layers.Rescaling(1.0, offset=-float(np.log(threshold / (1 - threshold))))(z)
    out = tf.keras.layers.Activation("sigmoid", name="fall")(z)
    return tf.keras.Model(inp, out)


def export(model, out: Path) -> str:  # type: ignore[no-untyped-def]
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    # Float32 on purpose: ~30 kB and tens of microseconds a window on a Pi either way;
    # int8 would move scores near the threshold for no gain worth having.
    blob = conv.convert()
    out.write_bytes(blob)
    return hashlib.sha256(blob).hexdigest()


def _pair(text: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in text.split(","))
    return lo, hi


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "sisfall")
    ap.add_argument("--folds", type=int, default=5, help="subject folds for CV; 0 skips CV")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--members", type=int, default=5, help="networks in the ensemble (seeds)")
    ap.add_argument(
        "--neg-weight",
        type=float,
        default=6.0,
        help="weight of daily-activity windows relative to a balanced split",
    )
    ap.add_argument("--hard", default=HARD_NEGATIVES, help="activity codes of hard negatives")
    ap.add_argument("--hard-weight", type=float, default=1.0, help="extra weight of --hard")
    ap.add_argument("--dropout", type=float, default=0.2, help="dropout before the dense layer")
    ap.add_argument(
        "--impact-from", type=float, default=1.8, help="positive: impact >= this s into window"
    )
    ap.add_argument(
        "--impact-to", type=float, default=3.2, help="positive: impact <= this s into window"
    )
    ap.add_argument(
        "--late-negative",
        type=float,
        default=5.0,
        help="negative: impact this many s or more into the window (0: left out instead)",
    )
    ap.add_argument(
        "--operating-point",
        type=float,
        default=0.98,
        help="ensemble probability that becomes 0.5 in the exported model (see card)",
    )
    ap.add_argument(
        "--augment",
        type=int,
        default=1,
        help="augmented copies of every training recording (stretch, gain, noise)",
    )
    ap.add_argument(
        "--augment-only",
        choices=("all", "adl"),
        default="adl",
        help="augment every training recording, or daily activities only",
    )
    ap.add_argument(
        "--stretch",
        type=_pair,
        default=(0.9, 1.1),
        help="time-stretch range for --augment, e.g. 0.9,1.1 (>1: slower movement)",
    )
    ap.add_argument(
        "--gain",
        type=_pair,
        default=(0.8, 1.25),
        help="range of the gain on the dynamic part of the signal for --augment (log-uniform)",
    )
    ap.add_argument(
        "--noise-g",
        type=float,
        default=0.02,
        help="--augment adds Gaussian noise, its sd drawn from 0..this (g)",
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
    cache = []
    for rec, row in zip(recs, rows, strict=True):
        fall = row["is_fall"] == "1"
        starts = recording_windows(rec, fall)
        feats = batch_features(np.stack([rec[s : s + WINDOW] for s in starts]))
        peak = int(np.argmax(np.linalg.norm(rec, axis=1))) if fall else None
        cache.append((starts, feats, peak))
    print(f"loaded {len(recs)} recordings, features in {time.time() - t0:.0f}s", flush=True)
    # Augmented copies (training only): features of the windows training uses, no more.
    train_cache, train_rows = list(cache), list(rows)
    arng = np.random.default_rng(SEED + 1)
    for _ in range(args.augment):
        for rec, row in zip(recs, rows, strict=True):
            fall = row["is_fall"] == "1"
            if fall and args.augment_only == "adl":
                continue
            a = augment(rec, arng, args)
            starts = recording_windows(a, fall)
            peak = int(np.argmax(np.linalg.norm(a, axis=1))) if fall else None
            idx, _ = window_labels(starts, peak, args)
            starts = starts[idx]
            feats = batch_features(np.stack([a[s : s + WINDOW] for s in starts]))
            train_cache.append((starts, feats, peak))
            train_rows.append(row)
    if args.augment:
        print(f"{args.augment} augmented copies ({time.time() - t0:.0f}s)", flush=True)
    subjects = sorted({r["subject"] for r in rows})
    report: dict[str, object] = {
        "version": VERSION,
        "seed": SEED,
        "members": args.members,
        "epochs": args.epochs,
        "neg_weight": args.neg_weight,
        "hard": args.hard,
        "hard_weight": args.hard_weight,
        "dropout": args.dropout,
        "impact_from_s": args.impact_from,
        "impact_to_s": args.impact_to,
        "late_negative_s": args.late_negative,
        "operating_point": args.operating_point,
        "augment": args.augment,
        "augment_only": args.augment_only,
        "stretch": list(args.stretch),
        "gain": list(args.gain),
        "noise_g": args.noise_g,
        "command": " ".join(sys.argv),
    }
    thresholds = (0.5, 0.7, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)
    if args.folds:
        folds = subject_folds(subjects, args.folds)
        report["folds"] = folds
        all_scores: dict[str, list] = {"upright": [None] * len(rows), "rotated": [None] * len(rows)}  # type: ignore[type-arg]
        rng = np.random.default_rng(SEED)
        per_fold = []
        for k, held in enumerate(folds):
            x, y, w = dataset(
                train_cache, train_rows, lambda r, h=held: r["subject"] not in h, args
            )
            print(f"fold {k}: held out {held}; {len(y)} windows, {int(y.sum())} fall", flush=True)
            members = fit(x, y, w, args, SEED + k)
            idx = [i for i, r in enumerate(rows) if r["subject"] in held]
            upright = [cache[i][1][cache[i][0] % HOP == 0] for i in idx]
            rotated = [stream_features(recs[i] @ random_rotation(rng).T) for i in idx]
            for name, feats in (("upright", upright), ("rotated", rotated)):
                for i, sc in zip(idx, score_recordings(members, feats), strict=True):
                    all_scores[name][i] = sc
            m = metrics(
                [all_scores["upright"][i] for i in idx],
                [rows[i] for i in idx],
                args.operating_point,
            )
            per_fold.append(m)
            print(f"fold {k}: {m} ({time.time() - t0:.0f}s)", flush=True)
        cv: dict[str, object] = {}
        for name, sc in all_scores.items():
            cv[name] = {str(t): metrics(sc, rows, t) for t in thresholds}
        cv["per_fold_at_operating_point"] = per_fold
        for name in ("upright", "rotated"):
            op = args.operating_point
            sc = all_scores[name]
            cv[f"missed_falls_at_operating_point_{name}"] = [
                rows[i]["file"]
                for i in range(len(rows))
                if rows[i]["is_fall"] == "1" and count_candidates(sc[i], op) == 0
            ]
            cv[f"adl_with_alarm_at_operating_point_{name}"] = [
                rows[i]["file"]
                for i in range(len(rows))
                if rows[i]["is_fall"] == "0" and count_candidates(sc[i], op) > 0
            ]
        order = sorted(
            (i for i in range(len(rows)) if rows[i]["is_fall"] == "0"),
            key=lambda i: -float(np.max(all_scores["upright"][i])),
        )
        cv["highest_adl_scores"] = {
            rows[i]["file"]: round(float(np.max(all_scores["upright"][i])), 5) for i in order[:15]
        }
        order = sorted(
            (i for i in range(len(rows)) if rows[i]["is_fall"] == "1"),
            key=lambda i: float(np.max(all_scores["upright"][i])),
        )
        cv["lowest_fall_scores"] = {
            rows[i]["file"]: round(float(np.max(all_scores["upright"][i])), 5) for i in order[:30]
        }
        # Margin: how far from the line the recordings are, by their highest window score
        # (a recording raises a candidate at threshold t exactly when that score >= t).
        for name in ("upright", "rotated"):
            top = [float(np.max(sc)) for sc in all_scores[name]]
            cv[f"margin_{name}"] = {
                f"{who}_adl_recordings_above_{t}": sum(
                    top[i] >= t
                    for i, r in enumerate(rows)
                    if r["is_fall"] == "0" and (who == "all" or r["age_group"] == who)
                )
                for who in ("all", "elderly")
                for t in (0.5, 0.9, 0.98)
            } | {
                f"falls_below_{t}": sum(
                    top[i] < t for i, r in enumerate(rows) if r["is_fall"] == "1"
                )
                for t in (0.5, 0.9, 0.98, 0.995)
            }
        report["cv"] = cv
        print(json.dumps(cv, indent=1), flush=True)
    x, y, w = dataset(train_cache, train_rows, lambda r: True, args)
    print(f"final model: {len(y)} windows, {int(y.sum())} fall", flush=True)
    model = exported_model(fit(x, y, w, args, SEED), args.operating_point)
    report["params"] = int(model.count_params())
    report["sha256"] = export(model, args.out)
    report["seconds"] = round(time.time() - t0)
    args.report.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: report[k] for k in ("version", "params", "sha256", "seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
