"""Pendant fall detection: a small 1D CNN on the live 50 Hz stream, then confirmation, then cancel.

Three stages, each on the same pendant stream (``ReadingKind.ACCEL`` readings whose
``extra["samples_g"]`` hold ``[[x, y, z], ...]`` in g at 50 Hz):

1. **Candidate** (:class:`CandidateStage`): every 0.5 s the last 6 s are turned into
   orientation-invariant features (:mod:`gateway.detect.fall_features`) and scored by the
   shipped TFLite model; a score at or above ``detection.fall.threshold`` is a candidate.
   The model was trained to wait for what follows the impact (the wearer down, in a new
   posture): a candidate comes 1-2 s after the impact, not at the impact itself.
   Windows in the 10 s after a candidate belong to the same event. This is the stage that
   ``anxin fall eval`` measures on SisFall.
2. **Confirmation**: after the impact the wearer must lie still for ``confirm_still_s``
   (every 1 s block of |a| within :data:`STILL_RANGE_G`); if they are up and moving again
   for :data:`CONFIRM_GRACE_S` beyond that, the candidate is dropped. If the stream goes
   silent while a candidate waits (pendant broken in the fall, link lost), ``tick`` raises
   the alert unconfirmed rather than lose it.
3. **Cancel**: a confirmed fall raises a ``fall`` alert at once (the service commits it);
   for ``cancel_window_s`` afterwards a ``CANCEL`` reading from the same pendant (the
   "I'm OK" button) sets it to ``cancelled`` in the store with a note. The open window is
   kept in the store's learned state, so a restart inside it still honours the button.

The model loads with LiteRT (``ai_edge_litert``) or, failing that, ``tflite_runtime``; the
model file ships inside the package (``gateway/data/fall_detector.tflite``).
"""

from __future__ import annotations

import importlib
import importlib.resources
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from gateway.clock import Stamp
from gateway.config import FallConfig
from gateway.detect.fall_features import (
    FS_HZ,
    HOP,
    REFRACTORY_WINDOWS,
    WINDOW,
    window_features,
)
from gateway.errors import ConfigError
from gateway.model import Alert, AlertState, AlertType, Reading, ReadingKind, Sensor

log = logging.getLogger(__name__)

RUNTIMES: tuple[tuple[str, str], ...] = (
    ("ai_edge_litert", "ai_edge_litert.interpreter"),
    ("tflite_runtime", "tflite_runtime.interpreter"),
)
"""TFLite runtimes in order of preference: (name, module with ``Interpreter``)."""

STILL_RANGE_G = 0.3
"""A 1 s block is 'still' when max |a| - min |a| within it is at most this."""
CONFIRM_GRACE_S = 30.0
"""How long past ``confirm_still_s`` a candidate may wait for its stillness."""
LEARNED_KEY = "fall.open"


def shipped_model_path() -> Path:
    """The model inside the installed package (works from a wheel, not only a checkout)."""
    res = importlib.resources.files("gateway") / "data" / "fall_detector.tflite"
    return Path(str(res))


def available_runtimes() -> list[str]:
    out = []
    for name, module in RUNTIMES:
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        out.append(name)
    return out


class FallModel:
    """The TFLite fall model behind whichever runtime is installed."""

    def __init__(self, path: str | Path | None = None, *, runtime: str | None = None) -> None:
        self.path = Path(path) if path else shipped_model_path()
        if not self.path.is_file():
            raise ConfigError(f"fall model not found: {self.path}")
        errors = []
        for name, module in RUNTIMES:
            if runtime is not None and name != runtime:
                continue
            try:
                mod = importlib.import_module(module)
            except ImportError as exc:
                errors.append(f"{name}: {exc}")
                continue
            try:
                interp: Any = mod.Interpreter(model_path=str(self.path), num_threads=1)
                interp.allocate_tensors()
            except Exception as exc:  # noqa: BLE001 - e.g. tflite_runtime 2.14 under NumPy 2
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                log.warning(
                    "fall model: %s cannot load it (%s); trying the next runtime", name, exc
                )
                continue
            self.runtime = name
            self._interp = interp
            break
        else:
            raise ConfigError(
                f"no TFLite runtime could load {self.path} (install ai-edge-litert): "
                + "; ".join(errors or [f"unknown runtime {runtime!r}"])
            )
        inp = self._interp.get_input_details()[0]
        self._in = int(inp["index"])
        self._out = int(self._interp.get_output_details()[0]["index"])
        self.input_shape = tuple(int(d) for d in inp["shape"])

    def score(self, features: npt.NDArray[np.float32]) -> float:
        """Fall score in 0..1 for one (WINDOW, CHANNELS) feature window (0.5: operating point)."""
        self._interp.set_tensor(self._in, features.reshape(self.input_shape))
        self._interp.invoke()
        return float(self._interp.get_tensor(self._out).ravel()[0])


class Scorer(Protocol):
    """What the candidate stage needs from a model (FallModel; tests may pass a stub)."""

    path: Path

    def score(self, features: npt.NDArray[np.float32]) -> float: ...


@dataclass(frozen=True, slots=True)
class Candidate:
    """A window the model scored at or above the threshold."""

    score: float
    sample_index: int  # stream sample index of the impact (peak |a| in the window)
    peak_g: float
    at_sample: int  # stream samples seen when the candidate was raised (its window's end)


class CandidateStage:
    """Sliding 6 s windows every 0.5 s on one pendant's 50 Hz stream -> candidates."""

    def __init__(self, model: Scorer, threshold: float) -> None:
        self.model = model
        self.threshold = threshold
        self._buf = np.zeros((WINDOW, 3), np.float64)
        self._filled = 0  # valid samples in _buf (up to WINDOW)
        self._since_window = 0
        self.samples = 0  # samples seen on this stream
        self.windows = 0
        self.infer_s = 0.0
        self._windows_since_candidate = REFRACTORY_WINDOWS + 1
        self.max_score = 0.0

    def reset(self) -> None:
        """Forget the window (a gap in the stream): never splice across missing samples."""
        self._filled = 0
        self._since_window = 0

    def push(self, samples_g: npt.ArrayLike) -> list[Candidate]:
        x = np.asarray(samples_g, np.float64).reshape(-1, 3)
        out: list[Candidate] = []
        i = 0
        while i < len(x):
            # take at most what completes the next window, so windows fall every HOP samples
            need = (WINDOW - self._filled) if self._filled < WINDOW else (HOP - self._since_window)
            chunk = x[i : i + need]
            i += len(chunk)
            self._append(chunk)
            if self._filled == WINDOW and self._since_window >= HOP:
                cand = self._score()
                if cand is not None:
                    out.append(cand)
        return out

    def _append(self, chunk: npt.NDArray[np.float64]) -> None:
        n = len(chunk)
        if n == 0:
            return
        self._buf = np.roll(self._buf, -n, axis=0)
        self._buf[-n:] = chunk
        self.samples += n
        was_full = self._filled == WINDOW
        self._filled = min(WINDOW, self._filled + n)
        if was_full:
            self._since_window += n
        elif self._filled == WINDOW:
            self._since_window = HOP  # the first full window is scored at once

    def recent(self, since: int, until: int) -> npt.NDArray[np.float64]:
        """The samples with stream indices in [since, until) still in the window (no older
        than the last gap): what the candidate's own window saw after the impact."""
        oldest = self.samples - self._filled
        lo, hi = max(since, oldest), min(until, self.samples)
        if hi <= lo:
            return np.zeros((0, 3))
        return self._buf[lo - self.samples + WINDOW : hi - self.samples + WINDOW]

    def _score(self) -> Candidate | None:
        self._since_window = 0
        t0 = time.perf_counter()
        s = self.model.score(window_features(self._buf))
        self.infer_s += time.perf_counter() - t0
        self.windows += 1
        self.max_score = max(self.max_score, s)
        self._windows_since_candidate += 1
        if s < self.threshold or self._windows_since_candidate <= REFRACTORY_WINDOWS:
            return None
        self._windows_since_candidate = 0
        mag = np.linalg.norm(self._buf, axis=1)
        peak = int(np.argmax(mag))
        return Candidate(s, self.samples - WINDOW + peak, float(mag[peak]), self.samples)


@dataclass(slots=True)
class _Pending:
    cand: Candidate
    still_samples: int = 0
    block: list[float] = field(default_factory=list)
    stamp: Stamp | None = None


@dataclass(slots=True)
class _Stream:
    stage: CandidateStage
    pending: _Pending | None = None
    last_mono: float = 0.0


class FallDetector:
    """The gateway's pendant fall detector (see the module docstring)."""

    name = "fall"

    def __init__(
        self,
        cfg: FallConfig,
        store: Any,
        sensors: Mapping[str, Sensor] | Callable[[str], Sensor | None],
        model: Scorer | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self._sensors = sensors
        self.model: Scorer = model or FallModel(cfg.model_path or None)
        self._streams: dict[str, _Stream] = {}
        self.open: dict[str, dict[str, Any]] = {}  # sensor_id -> open cancel window
        self.candidates: list[tuple[str, Candidate]] = []

    def _sensor(self, sensor_id: str) -> Sensor | None:
        if callable(self._sensors):
            return self._sensors(sensor_id)
        return self._sensors.get(sensor_id)

    def restore(self) -> None:
        saved = self.store.learned(LEARNED_KEY) if self.store is not None else None
        self.open = dict(saved) if isinstance(saved, dict) else {}

    def _save(self) -> None:
        if self.store is not None:
            self.store.put_learned(LEARNED_KEY, self.open)

    def stream(self, sensor_id: str) -> _Stream:
        st = self._streams.get(sensor_id)
        if st is None:
            st = self._streams[sensor_id] = _Stream(CandidateStage(self.model, self.cfg.threshold))
        return st

    def feed(self, reading: Reading) -> Sequence[Alert]:
        if not self.cfg.enabled:
            return ()
        stamp = Stamp(reading.ts, reading.monotonic_s, reading.boot_id, reading.clock_synced)
        if reading.kind is ReadingKind.CANCEL:
            self._cancel(reading)
            return ()
        if reading.kind is ReadingKind.LINK and reading.value == "down":
            if reading.sensor_id in self._streams:
                self._streams[reading.sensor_id].stage.reset()
            return ()
        if reading.kind is not ReadingKind.ACCEL:
            return ()
        samples = reading.extra.get("samples_g")
        if not samples:
            return ()
        try:
            x = np.asarray(samples, np.float64).reshape(-1, 3)
        except (ValueError, TypeError):
            log.warning("pendant %s: malformed samples_g ignored", reading.sensor_id)
            return ()
        st = self.stream(reading.sensor_id)
        st.last_mono = reading.monotonic_s
        if int(reading.extra.get("gap_samples", 0) or 0) > 0 or not np.isfinite(x).all():
            st.stage.reset()
            x = x[np.isfinite(x).all(axis=1)]
        alerts: list[Alert] = []
        first = st.stage.samples
        for cand in st.stage.push(x):
            self.candidates.append((reading.sensor_id, cand))
            if st.pending is None:
                log.info(
                    "fall candidate on %s: score %.3f, %.1f s after the impact",
                    reading.sensor_id,
                    cand.score,
                    (cand.at_sample - cand.sample_index) / FS_HZ,
                )
                st.pending = _Pending(cand, stamp=stamp)
                # The model called it some time after the impact: the stillness it already
                # saw since then counts, so the alert comes confirm_still_s after the impact
                # whatever the model's delay.
                seen = st.stage.recent(cand.sample_index + FS_HZ // 2, first)
                self._accumulate(st.pending, np.linalg.norm(seen, axis=1))
        if st.pending is not None:
            alert = self._confirm(reading.sensor_id, st, x, first, stamp)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def _confirm(
        self, sensor_id: str, st: _Stream, x: npt.NDArray[np.float64], first: int, stamp: Stamp
    ) -> Alert | None:
        p = st.pending
        assert p is not None
        mag = np.linalg.norm(x, axis=1)
        # only samples after the impact count towards stillness
        start = max(0, p.cand.sample_index + FS_HZ // 2 - first)
        self._accumulate(p, mag[start:])
        confirm = round(self.cfg.confirm_still_s * FS_HZ)
        if p.still_samples >= confirm:
            st.pending = None
            return self._raise(sensor_id, p, stamp, confirmed=True)
        waited = st.stage.samples - p.cand.sample_index
        if waited > confirm + CONFIRM_GRACE_S * FS_HZ:
            log.info("fall candidate on %s dropped: the wearer did not lie still", sensor_id)
            st.pending = None
        return None

    @staticmethod
    def _accumulate(p: _Pending, mags: npt.NDArray[np.float64]) -> None:
        """Stillness in whole 1 s blocks of |a|; a block that moves starts the count again."""
        for m in mags:
            p.block.append(float(m))
            if len(p.block) < FS_HZ:
                continue
            if max(p.block) - min(p.block) <= STILL_RANGE_G:
                p.still_samples += FS_HZ
            else:
                p.still_samples = 0
            p.block.clear()

    def _raise(self, sensor_id: str, p: _Pending, stamp: Stamp, *, confirmed: bool) -> Alert:
        sensor = self._sensor(sensor_id)
        alert = Alert.raise_(
            AlertType.FALL,
            stamp,
            sensor=sensor,
            evidence={
                "score": round(p.cand.score, 4),
                "peak_g": round(p.cand.peak_g, 2),
                "still_s": p.still_samples / FS_HZ,
                "confirmed": confirmed,
                "cancel_window_s": self.cfg.cancel_window_s,
                "model": self.model.path.name,
            },
        )
        if sensor is None:
            alert = replace(alert, sensor_id=sensor_id)
        deadline = stamp.wall + timedelta(seconds=self.cfg.cancel_window_s)
        self.open[sensor_id] = {"alert_id": alert.id, "until": deadline.isoformat()}
        self._save()
        return alert

    def _cancel(self, reading: Reading) -> None:
        entry = self.open.get(reading.sensor_id)
        st = self._streams.get(reading.sensor_id)
        if st is not None and st.pending is not None:
            log.info(
                "fall candidate on %s cancelled by the wearer before confirmation",
                reading.sensor_id,
            )
            st.pending = None
        if entry is None:
            return
        if reading.ts > datetime.fromisoformat(entry["until"]):
            log.info("I'm OK on %s after the cancel window; alert stays", reading.sensor_id)
        elif self.store is not None:
            self.store.set_alert_state(
                entry["alert_id"], AlertState.CANCELLED, note="wearer pressed I'm OK on the pendant"
            )
        del self.open[reading.sensor_id]
        self._save()

    def tick(self, now: Stamp) -> Sequence[Alert]:
        alerts: list[Alert] = []
        expired = [s for s, e in self.open.items() if now.wall > datetime.fromisoformat(e["until"])]
        for s in expired:
            del self.open[s]
        if expired:
            self._save()
        limit = self.cfg.confirm_still_s + CONFIRM_GRACE_S
        for sensor_id, st in self._streams.items():
            if st.pending is not None and now.monotonic_s - st.last_mono > limit:
                log.warning(
                    "pendant %s silent after a fall candidate: raising unconfirmed", sensor_id
                )
                p, st.pending = st.pending, None
                alerts.append(self._raise(sensor_id, p, now, confirmed=False))
        return alerts
