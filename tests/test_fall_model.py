"""The fall model loader: LiteRT, tflite_runtime where it installs, and from an installed wheel."""

from __future__ import annotations

import hashlib
import importlib
import re
import shutil
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gateway.detect import fall
from gateway.detect.fall import FallModel, shipped_model_path
from gateway.detect.fall_features import CHANNELS, WINDOW, window_features
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def _window(impact: bool) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = np.array([0.0, 1.0, 0.0]) + rng.normal(0, 0.02, (WINDOW, 3))
    if impact:
        x[100:103] = [[2.0, 5.0, 1.0], [3.0, 4.0, 1.0], [1.0, 2.0, 0.5]]
        x[110:] = np.array([1.0, 0.0, 0.0]) + rng.normal(0, 0.02, (WINDOW - 110, 3))
    return x


def test_shipped_model_matches_the_model_card() -> None:
    blob = shipped_model_path().read_bytes()
    card = (ROOT / "models" / "fall" / "MODEL_CARD.md").read_text()
    sha = hashlib.sha256(blob).hexdigest()
    assert sha in card, "MODEL_CARD.md must name the sha256 of the shipped model"
    assert (ROOT / "models" / "fall" / "fall_detector.tflite").read_bytes() == blob


def test_litert_loads_and_scores() -> None:
    m = FallModel(runtime="ai_edge_litert")
    assert m.runtime == "ai_edge_litert"
    assert m.input_shape == (1, WINDOW, CHANNELS)
    quiet = m.score(window_features(_window(False)))
    fell = m.score(window_features(_window(True)))
    assert 0.0 <= quiet < 0.5 < fell <= 1.0


def _tflite_runtime_or_skip() -> None:
    try:
        importlib.import_module("tflite_runtime.interpreter")
    except ImportError as exc:
        pytest.skip(f"tflite_runtime not importable here ({exc}); its last wheels need NumPy 1")


def test_tflite_runtime_gives_the_same_scores() -> None:
    _tflite_runtime_or_skip()
    a = FallModel(runtime="ai_edge_litert")
    try:
        b = FallModel(runtime="tflite_runtime")
    except ConfigError as exc:
        pytest.skip(
            f"tflite_runtime is installed but cannot run with NumPy {np.__version__}: {exc}"
        )
    f = window_features(_window(True))
    assert b.score(f) == pytest.approx(a.score(f), abs=1e-5)


def test_falls_back_to_the_next_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        fall, "RUNTIMES", (("missing_rt", "no_such_module.interpreter"), *fall.RUNTIMES)
    )
    assert FallModel().runtime == "ai_edge_litert"
    assert "missing_rt" not in fall.available_runtimes()


def test_a_runtime_that_fails_to_load_falls_through(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def __init__(self, **_: object) -> None:
            raise SystemError("compiled against NumPy 1.x")

    broken = types.ModuleType("broken_rt")
    broken.Interpreter = Broken  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "broken_rt", broken)
    monkeypatch.setattr(fall, "RUNTIMES", (("broken_rt", "broken_rt"), *fall.RUNTIMES))
    assert FallModel().runtime == "ai_edge_litert"
    with pytest.raises(ConfigError, match=r"broken_rt: SystemError: compiled against NumPy 1\.x"):
        FallModel(runtime="broken_rt")


def test_no_runtime_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fall, "RUNTIMES", (("missing_rt", "no_such_module.interpreter"),))
    with pytest.raises(ConfigError, match="no TFLite runtime could load"):
        FallModel()


def test_missing_model_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        FallModel(tmp_path / "nope.tflite")


def test_model_loads_from_an_installed_wheel(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("gateway", "drivers"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", src)
    (src / "README.md").write_text("anxin\n")
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(src),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (whl,) = wheels.glob("*.whl")
    assert "gateway/data/fall_detector.tflite" in zipfile.ZipFile(whl).namelist()
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(site),
            str(whl),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    code = (
        "from gateway.detect.fall import FallModel; m = FallModel(); "
        "print(m.path); print(m.runtime)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    ).stdout.splitlines()
    assert Path(out[0]).is_relative_to(site), out
    assert re.fullmatch(r"ai_edge_litert|tflite_runtime", out[1])
