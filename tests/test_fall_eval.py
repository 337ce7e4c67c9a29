"""`anxin fall eval`: the shipped model through the streaming path on real SisFall recordings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.data

# Falls of several kinds (slip, trip, faint, from a chair) and daily activities that look
# like falls (lying down quickly, collapsing into a chair, a stumble, a jump), young and old.
EXPECTED = {
    "SA02/F01_SA02_R01.txt": "detected",
    "SA06/F06_SA06_R02.txt": "detected",
    "SA10/F13_SA10_R03.txt": "detected",
    "SA15/F09_SA15_R01.txt": "detected",
    "SA02/D01_SA02_R01.txt": "ok",
    "SA07/D13_SA07_R01.txt": "ok",
    "SE02/D11_SE02_R02.txt": "ok",
    "SA12/D18_SA12_R01.txt": "ok",
    "SA08/D19_SA08_R01.txt": "ok",
    "SE01/D07_SE01_R01.txt": "ok",
}


def _eval(data: Path, *extra: str) -> tuple[list[str], dict[str, object]]:
    args = ["fall", "eval", "--data", str(data / "sisfall"), *extra]
    for f in EXPECTED:
        args += ["--only", f]
    proc = run_cli(*args, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    return lines[:-1], json.loads(lines[-1])


def test_shipped_model_gives_the_expected_decisions(shared_data: Path) -> None:
    lines, summary = _eval(shared_data)
    verdicts = {ln.split()[0]: ln.split()[-1] for ln in lines}
    assert verdicts == EXPECTED
    assert summary["recordings"] == len(EXPECTED)
    assert summary["sensitivity"] == 1.0
    assert summary["specificity"] == 1.0
    assert summary["false_alarms_per_hour"] == 0.0
    assert isinstance(summary["inference_us_per_window"], float)
    assert summary["inference_us_per_window"] > 0


@pytest.mark.parametrize("orientation", ["upside-down", "turned", "tilted", "random"])
def test_orientation_does_not_matter(shared_data: Path, orientation: str) -> None:
    upright, _ = _eval(shared_data)
    turned, summary = _eval(shared_data, "--orientation", orientation)
    assert summary["orientation"] == orientation

    def strip(lines: list[str]) -> list[tuple[str, ...]]:
        return [(*ln.split()[:3], ln.split()[-1]) for ln in lines]

    assert strip(turned) == strip(upright)


def test_not_a_sisfall_dir_is_an_error(tmp_path: Path) -> None:
    proc = run_cli("fall", "eval", "--data", str(tmp_path))
    assert proc.returncode == 1
    assert "not a SisFall-format directory" in proc.stderr
