"""The shipped model in the full detector: a real SisFall fall, then the wearer lies still."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from gateway.clock import Stamp
from gateway.config import FallConfig
from gateway.detect.fall import FallDetector, FallModel
from gateway.detect.fall_features import resample_200_to_50
from gateway.model import AlertState, AlertType, Reading, ReadingKind, Sensor, SensorKind, Transport
from gateway.store import Store

pytestmark = pytest.mark.data

AFTERMATH_S = 1.0
"""The least of the impact's aftermath the model has seen before it calls a candidate."""

PENDANT = Sensor("pendant-1", SensorKind.PENDANT, Transport.BLE, "AA:BB:CC:DD:EE:FF", "kitchen")
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def recording(data: Path, name: str) -> np.ndarray:
    d = data / "sisfall"
    npz = np.load(d / "sisfall_adxl345_200hz.npz")
    with open(d / "labels.csv", newline="", encoding="utf-8", errors="replace") as f:
        files = [r["file"] for r in csv.DictReader(f)]
    i = files.index(name)
    raw = npz["acc"][npz["offsets"][i] : npz["offsets"][i + 1]] * float(npz["g_per_count"])
    return resample_200_to_50(raw)


def then_still(rec: np.ndarray, seconds: float) -> np.ndarray:
    """The recording, then the wearer stays in its last posture (small sensor noise)."""
    rest = rec[-25:].mean(axis=0)
    rng = np.random.default_rng(0)
    return np.concatenate([rec, rest + rng.normal(0, 0.01, (int(seconds * 50), 3))])


def feed(det: FallDetector, x: np.ndarray) -> tuple[list, float]:
    alerts: list = []
    t = 0.0
    for k in range(0, len(x), 10):
        t = (k + 10) / 50
        stamp = Stamp(T0 + timedelta(seconds=t), 100 + t, "boot", True)
        r = Reading.at(
            stamp, PENDANT.id, ReadingKind.ACCEL, None, extra={"samples_g": x[k : k + 10].tolist()}
        )
        alerts += det.feed(r)
    return alerts, t


@pytest.fixture(scope="module")
def model() -> FallModel:
    return FallModel()


def test_real_fall_then_lying_confirms_and_im_ok_cancels(
    shared_data: Path, store: Store, model: FallModel
) -> None:
    cfg = FallConfig(confirm_still_s=10, cancel_window_s=30)
    det = FallDetector(cfg, store, {PENDANT.id: PENDANT}, model=model)
    det.restore()
    x = then_still(recording(shared_data, "SA02/F01_SA02_R01.txt"), 30)
    alerts, t = feed(det, x)
    assert len(alerts) == 1
    (alert,) = alerts
    assert alert.type is AlertType.FALL
    assert alert.evidence["confirmed"] is True
    store.commit_alert(alert)
    stamp = Stamp(T0 + timedelta(seconds=t + 1), 100 + t + 1, "boot", True)
    det.feed(Reading.at(stamp, PENDANT.id, ReadingKind.CANCEL, True))
    after = store.alert(alert.id)
    assert after is not None
    assert after.state is AlertState.CANCELLED


@pytest.mark.parametrize("name", ["SA07/D13_SA07_R01.txt", "SE02/D11_SE02_R02.txt"])
def test_lying_down_quickly_then_staying_still_raises_nothing(
    shared_data: Path, store: Store, model: FallModel, name: str
) -> None:
    det = FallDetector(FallConfig(), store, {PENDANT.id: PENDANT}, model=model)
    alerts, _ = feed(det, then_still(recording(shared_data, name), 30))
    assert not alerts
    assert not det.candidates


def test_candidate_waits_for_the_aftermath_of_the_impact(
    shared_data: Path, model: FallModel
) -> None:
    """The model calls a fall only once it has seen the wearer stay down after the impact:
    the same real fall cut 1 s after the impact raises nothing; streamed whole, it raises one
    candidate, seconds after the impact, pointing at the impact."""
    rec = recording(shared_data, "SA02/F01_SA02_R01.txt")
    impact = int(np.argmax(np.linalg.norm(rec, axis=1)))
    cut = FallDetector(FallConfig(), None, {}, model=model)
    feed(cut, rec[: impact + 50])
    assert not cut.candidates
    whole = FallDetector(FallConfig(), None, {}, model=model)
    feed(whole, rec)
    ((_, cand),) = whole.candidates
    assert cand.sample_index == impact
    assert cand.at_sample - impact >= AFTERMATH_S * 50
