"""Scale: DDP training on 2 CPU processes (gloo, loopback) matches one process with the same global batch; the
panel's scoring batches are bounded in memory without changing the scores."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import ROOT, write_tiny_project

DDP_ARGS = ["--set", "stocks.train.epochs=2", "--set", "stocks.train.batch_size=32",
            "--set", "stocks.model.dropout=0.0", "--set", "stocks.train.patience=5"]


def _history(folder: Path) -> list[dict]:
    return json.loads((folder / "data/models/stocks/train_log.json").read_text())


_ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
_CLI = [sys.executable, "-m", "flows.cli"]


@pytest.fixture(scope="module")
def stocks_windows(tmp_path_factory):
    """A tiny project through the stocks window stage, built once; each training run gets a copy of it."""
    d = tmp_path_factory.mktemp("ddp-windows")
    write_tiny_project(d)
    for stage in ("ingest", "validate", "window"):
        subprocess.run([*_CLI, stage, "stocks"], cwd=d, env=_ENV, check=True, capture_output=True)
    return d


@pytest.mark.slow
@pytest.mark.parametrize("head, port, rel", [("none", 29517, 1e-4), ("quantile", 29519, 5e-4)])
def test_ddp_two_processes_match_single_process(tmp_path, stocks_windows, head, port, rel):
    """Also with a distribution head (pinball loss, validation pinball for early stopping). Its validation loss
    is more sensitive to the one window DistributedSampler repeats (measured 2026-12-05: 1.1e-4 relative after
    epoch 1, 7e-5 after epoch 2), hence its own tolerance."""
    args = [*DDP_ARGS, "--set", f"stocks.model.distribution={head}"]
    env, cli = _ENV, _CLI
    folders = {name: Path(shutil.copytree(stocks_windows, tmp_path / name)) for name in ("single", "ddp")}
    subprocess.run([*cli, "train", "stocks", *args], cwd=folders["single"], env=env, check=True,
                   capture_output=True)
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    proc = subprocess.run([torchrun, "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={port}",
                           "-m", "flows.cli", "train", "stocks", *args], cwd=folders["ddp"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single, ddp = _history(folders["single"]), _history(folders["ddp"])
    assert len(single) == len(ddp) == 2
    for a, b in zip(single, ddp):
        # Same weights after every epoch: the validation loss agrees to float rounding.
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=rel)
        # The epoch's mean training loss agrees too, up to the one window DistributedSampler repeats to make
        # the epoch divisible by the two ranks.
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-2)


def test_panel_scoring_batches_are_bounded_and_score_the_same(monkeypatch):
    """Unshuffled (scoring) batches hold at most SCORING_WINDOWS stock-windows, whatever batch size is asked
    for; training batches keep theirs; the built-in 20-stock panel keeps its 256 dates per batch (so its outputs
    are unchanged); and scoring in small date batches gives the scores of one batch, bit for bit."""
    from r2n2 import ModelConfig, build_model
    from r2n2.cases import crosssection
    from r2n2.data.window import EntityWindows
    from r2n2.train import predict_batches

    def windows(entities, dates=60, lookback=10):
        rng = np.random.default_rng(0)
        return EntityWindows(rng.normal(size=(entities, dates, 4)), rng.normal(size=(entities, dates)),
                             np.arange(lookback - 1, dates), lookback, np.arange(dates),
                             [f"S{e:03d}" for e in range(entities)])

    assert crosssection.panel_batches(windows(20), 256).batch_size == 256
    assert crosssection.panel_batches(windows(500), 256).batch_size == crosssection.SCORING_WINDOWS // 500
    assert crosssection.panel_batches(windows(500), 32, shuffle=True).batch_size == 32

    torch.manual_seed(0)
    w = windows(8)
    model = build_model(ModelConfig(input_size=4, hidden_size=8, output_size=1, task="regression", cell="gru",
                                    relational=True, pooling="last", entities=True, identity=True, num_entities=8))
    whole = predict_batches(model, crosssection.panel_batches(w, 256))  # (51, 8, 1), one batch
    monkeypatch.setattr(crosssection, "SCORING_WINDOWS", 3 * 8)
    small = crosssection.panel_batches(w, 256)
    assert small.batch_size == 3 and len(small) == 17
    np.testing.assert_array_equal(predict_batches(model, small), whole)
