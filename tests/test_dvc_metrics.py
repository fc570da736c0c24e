"""What `dvc metrics show` shows: one small headline file per report, the same keys in every case, written by the
evaluate stage from its metrics.json (issue 36 item 6: the whole table fits 200 columns)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from r2n2.evaluate.summary import headline_numbers
from r2n2.registry import get_case

ROOT = Path(__file__).resolve().parents[1]
CASES = ("stocks", "sentiment", "panel", "volatility")


def _metric_files() -> list[str]:
    out = []
    for f in (ROOT / "dvc.yaml", ROOT / "data/seeds/dvc.yaml"):
        for st in yaml.safe_load(f.read_text())["stages"].values():
            st = st.get("do", st)
            out += [next(iter(m)) for m in st.get("metrics", [])]
    return out


def test_dvc_tracks_only_the_headline_files_as_metrics():
    files = _metric_files()
    assert files and all(f.endswith("/headline.json") for f in files), files


@pytest.mark.parametrize("root", ["data/reports", "data/seeds"])
@pytest.mark.parametrize("case", CASES)
def test_committed_headline_matches_its_metrics_file(root, case):
    c = get_case(case)
    metrics = json.loads((ROOT / root / case / "metrics.json").read_text())
    shown = json.loads((ROOT / root / case / "headline.json").read_text())
    assert shown == headline_numbers(metrics, metric=c.headline_metrics[0], main=c.main_baseline)
    assert shown["versus"] == c.main_baseline and shown["verdict"] in ("better", "worse", "tie")


def test_headline_numbers_take_the_seed_mean_and_the_adjusted_p():
    metrics = {"model": {"rmse": 1.0}, "baselines": {"rw": {"rmse": 2.0}},
               "seeds": {"model": {"rmse": {"mean": 1.5, "sd": 0.1, "n": 5}}},
               "comparisons": [{"a": "model", "b": "other", "verdict": "worse", "p_value": 0.5, "test": "t"},
                               {"a": "model", "b": "rw", "verdict": "tie", "p_value": 0.01, "p_adjusted": 0.07,
                                "test": "diebold_mariano"}]}
    assert headline_numbers(metrics, metric="rmse", main="rw") == {
        "metric": "rmse", "model": 1.5, "model_sd": 0.1, "seeds": 5, "versus": "rw", "versus_score": 2.0,
        "verdict": "tie", "p": 0.07, "test": "diebold_mariano"}
    one = dict(metrics, seeds={})
    assert headline_numbers(one, metric="rmse", main=None) == {"metric": "rmse", "model": 1.0}


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs a git checkout of the project")
def test_dvc_metrics_show_fits_200_columns():
    out = subprocess.run([sys.executable, "-m", "dvc", "metrics", "show"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert len(lines) == 1 + 2 * len(CASES), out
    assert max(map(len, lines)) <= 200, out
