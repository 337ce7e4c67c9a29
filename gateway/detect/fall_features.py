"""Orientation-invariant window features for the pendant fall model (pure numpy).

Shared by the training script (models/fall/train.py) and the gateway's streaming detector,
so the network sees exactly the same numbers in training and in a home.

Every channel depends on the samples only through vector norms and dot products between
samples of the same window, so it does not change when the pendant is worn turned about
the vertical, tilted or upside down (any fixed rotation or reflection of the sensor axes).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FS_HZ = 50
WINDOW = 300  # 6 s at 50 Hz: ~2 s before an impact and the ~3-4 s after it
HOP = 25  # a new window every 0.5 s
CHANNELS = 4
SMOOTH = 13  # ~0.25 s moving average: the slow (gravity + posture) part of the signal
_REF = 25  # 0.5 s at each end of the window: the posture before and after
MAG_CLIP_G = 8.0

FloatArray = npt.NDArray[np.float32]


def _moving_average(x: npt.NDArray[np.float64], n: int) -> npt.NDArray[np.float64]:
    """Centred moving average along axis 0 with edge padding (same length as x)."""
    left = n // 2
    padded = np.concatenate(
        [np.repeat(x[:1], left, axis=0), x, np.repeat(x[-1:], n - 1 - left, axis=0)]
    )
    c = np.cumsum(padded, axis=0)
    c = np.concatenate([np.zeros_like(c[:1]), c])
    out: npt.NDArray[np.float64] = (c[n:] - c[:-n]) / n
    return out


def _unit(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    out: npt.NDArray[np.float64] = v / np.maximum(n, 1e-6)
    return out


def window_features(window_g: npt.ArrayLike) -> FloatArray:
    """(WINDOW, 3) acceleration in g -> (WINDOW, CHANNELS) float32 features.

    0: |a| - 1 (g), clipped; 1: |a - smooth(a)| (dynamic acceleration, g);
    2: cosine between the smoothed direction and the posture at the window's start;
    3: the same against the posture at the window's end (a fall changes posture).
    """
    w = np.asarray(window_g, dtype=np.float64)
    mag = np.linalg.norm(w, axis=1)
    slow = _moving_average(w, SMOOTH)
    dyn = np.linalg.norm(w - slow, axis=1)
    u = _unit(slow)
    start = _unit(slow[:_REF].mean(axis=0))
    end = _unit(slow[-_REF:].mean(axis=0))
    out = np.empty((w.shape[0], CHANNELS), dtype=np.float32)
    out[:, 0] = np.minimum(mag, MAG_CLIP_G) - 1.0
    out[:, 1] = np.minimum(dyn, MAG_CLIP_G)
    out[:, 2] = u @ start
    out[:, 3] = u @ end
    return out


def batch_features(windows_g: npt.NDArray[np.floating]) -> FloatArray:
    """(N, WINDOW, 3) -> (N, WINDOW, CHANNELS); the same numbers as window_features."""
    return (
        np.stack([window_features(w) for w in windows_g])
        if len(windows_g)
        else np.zeros((0, WINDOW, CHANNELS), np.float32)
    )


def resample_200_to_50(acc_g: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """SisFall's 200 Hz to the pendant's 50 Hz, with an anti-alias filter (scipy)."""
    from scipy.signal import resample_poly

    out: npt.NDArray[np.float64] = resample_poly(np.asarray(acc_g, np.float64), 1, 4, axis=0)
    return out


def random_rotation(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """A uniformly random 3x3 rotation (QR of a Gaussian matrix), used by tests and eval."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    out: npt.NDArray[np.float64] = q
    return out


REFRACTORY_WINDOWS = 20
"""After a candidate, windows in the next 10 s belong to the same event (not a new alarm)."""


def count_candidates(scores: npt.ArrayLike, threshold: float) -> int:
    """Candidates in a run of window scores, with the streaming detector's refractory rule."""
    n = 0
    last = -(10**9)
    for i, s in enumerate(np.asarray(scores, dtype=np.float64).ravel()):
        if s >= threshold and i - last > REFRACTORY_WINDOWS:
            n += 1
            last = i
    return n
