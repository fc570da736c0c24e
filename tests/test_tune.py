"""Hyper-parameter search: the slide-13 skorch snippet as written, and the Optuna tune flow (resumable)."""

import json

import numpy as np
import pytest
import torch
import yaml

from flows.cli import main

from .conftest import ROOT, write_tiny_project


@pytest.fixture
def tiny(tmp_path, monkeypatch, capsys):
    write_tiny_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    for stage in ("ingest", "validate", "window"):
        assert main([stage, "stocks"]) == 0, capsys.readouterr().err
    return tmp_path


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")
def test_slide13_skorch_snippet_runs_as_written(tiny):
    import warnings

    import pandas as pd

    from r2n2.registry import get_case, load_params

    data = get_case("stocks").load(load_params().case("stocks"), "data/windows/stocks")
    windows = data.batches("pretrain", "train", batch_size=64)
    X_train, y_train = windows.windows.batch(np.arange(60))  # 60 real windows of 10 days x 5 features
    X_train, y_train = X_train.numpy(), y_train.numpy()
    assert X_train.shape[1:] == (10, 4) or X_train.shape[1:] == (10, 5)
    # pad to the slide's 5 features when the tiny data has no volume column
    if X_train.shape[2] == 4:
        X_train = np.concatenate([X_train, np.zeros_like(X_train[:, :, :1])], axis=2)

    # --- slide 13, as written (R2N2Regressor imported from r2n2) ---
    import torch.nn as nn
    from sklearn.model_selection import RandomizedSearchCV
    from skorch import NeuralNetRegressor

    from r2n2 import R2N2Regressor

    param_dist = {
        'module__input_size': [5, 10, 15],
        'module__hidden_size': [32, 64, 128],
        'module__output_size': [1],
        'lr': [0.001, 0.01, 0.1],
        'max_epochs': [10, 50, 100],
    }

    net = NeuralNetRegressor(
        R2N2Regressor,
        criterion=nn.MSELoss,
        optimizer=torch.optim.Adam,
        train_split=None,
        verbose=0
    )

    search = RandomizedSearchCV(net, param_dist, n_iter=10, cv=3, scoring='neg_mean_squared_error')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # input sizes 10 and 15 do not fit 5-feature windows: scored NaN
        search.fit(X_train, y_train)

    best_model = search.best_estimator_
    best_params = search.best_params_
    # ---
    assert best_params["module__input_size"] == 5
    assert np.isfinite(search.best_score_)
    assert best_model.predict(X_train).shape == (60, 1)


@pytest.mark.slow
def test_tune_flow_resumes_and_writes_usable_best_params(prefect_server, tiny, capsys):
    from optuna import load_study

    args = ["--set", "tune.n_trials=2", "--set", "tune.epochs=1", "--set", "tune.workers=2"]
    assert main(["tune", "stocks", *args]) == 0, capsys.readouterr().err
    best = yaml.safe_load((tiny / "data/tuning/stocks-best.yaml").read_text())
    assert set(best) == {"stocks.model.cell", "stocks.model.bidirectional", "stocks.model.hidden_size",
                         "stocks.model.relational", "stocks.model.pooling", "stocks.model.dropout",
                         "stocks.train.lr", "stocks.window.lookback"}
    storage = f"sqlite:///{tiny / 'data/tuning/stocks.db'}"

    def finished():  # a lookback the tiny data cannot hold is an infeasible (failed) trial, not a finished one
        from optuna.trial import TrialState

        return len(load_study(study_name="stocks", storage=storage).get_trials(
            states=(TrialState.COMPLETE, TrialState.PRUNED)))

    assert finished() == 2
    # a second run with a larger budget only adds the missing trial (the study resumes from SQLite)
    assert main(["tune", "stocks", *args, "--set", "tune.n_trials=3"]) == 0
    assert finished() == 3
    # the best params feed the pipeline stages
    capsys.readouterr()
    assert main(["window", "stocks", "--set-file", "data/tuning/stocks-best.yaml"]) == 0, capsys.readouterr().err
    meta = json.loads((tiny / "data/windows/stocks/meta.json").read_text())
    assert meta["lookback"] == best["stocks.window.lookback"]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm", "rmc"])
@pytest.mark.parametrize("case", ["stocks", "sentiment"])
def test_every_suggested_cell_makes_a_valid_config(case, cell):
    """The sentiment defaults are bidirectional; an RMC trial must not inherit that (it would crash)."""
    from optuna.trial import FixedTrial

    from r2n2.registry import get_case, load_params
    from r2n2.tune import _apply, suggest

    fixed = {"cell": cell, "hidden_size": 16, "relational": True, "pooling": "concat", "dropout": 0.1,
             "lr": 1e-3, "lookback": 10}
    if cell != "rmc":
        fixed["bidirectional"] = True
    cfg = _apply(load_params(ROOT / "params.yaml").case(case), suggest(FixedTrial(fixed), get_case(case)))
    assert cfg.model.cell == cell and cfg.model.bidirectional == (cell != "rmc")


@pytest.mark.slow
def test_journal_storage_runs_on_dask_workers_and_resumes(prefect_server, tiny, capsys):
    from optuna import load_study
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    args = ["--set", "tune.epochs=1", "--set", "tune.storage=journal"]
    # two worker processes append to one journal file
    assert main(["tune", "stocks", *args, "--set", "tune.n_trials=2", "--set", "tune.dask_workers=2"]) == 0, \
        capsys.readouterr().err
    journal = tiny / "data/tuning/stocks.journal"

    def complete():
        study = load_study(study_name="stocks", storage=JournalStorage(JournalFileBackend(str(journal))))
        return len(study.get_trials(states=(TrialState.COMPLETE,)))  # one epoch: the median pruner never acts

    assert complete() == 2 and not (tiny / "data/tuning/stocks.db").exists()
    # a second run, on threads this time, resumes the study from the journal: only the missing trial runs
    assert main(["tune", "stocks", *args, "--set", "tune.n_trials=3"]) == 0, capsys.readouterr().err
    assert complete() == 3
    assert "best of 3 complete trials" in (tiny / "data/tuning/stocks-best.yaml").read_text()


@pytest.mark.parametrize("overrides, message", [
    (["tune.storage=mongo"],
     "tune.storage must be sqlite, journal or a database URL such as postgresql://user@host:5432/db, got 'mongo'."),
    (["tune.dask_workers=2"],
     "tune.storage is SQLite, which cannot hold a study run on Dask: trials in several processes would write one "
     "SQLite file at once. Set tune.storage to journal (a file that the processes of one machine can share) or to a "
     "PostgreSQL URL (several machines)."),
    (["tune.dask_address=tcp://scheduler:8786", "tune.storage=sqlite:////tmp/t.db"],
     "tune.storage is SQLite, which cannot hold a study run on Dask: trials in several processes would write one "
     "SQLite file at once. Set tune.storage to journal (a file that the processes of one machine can share) or to a "
     "PostgreSQL URL (several machines)."),
    (["tune.dask_workers=-1"], "tune.dask_workers must be >= 0 (0 = no local Dask cluster), got -1."),
    (["tune.dask_workers=2", "tune.dask_address=tcp://scheduler:8786", "tune.storage=journal"],
     "tune.dask_workers and tune.dask_address are both set: set dask_workers for a local Dask cluster or "
     "dask_address for a running scheduler, not both."),
])
def test_bad_tune_storage_and_dask_settings_name_the_key(overrides, message):
    from r2n2.errors import ConfigError
    from r2n2.registry import load_params

    with pytest.raises(ConfigError) as exc:
        load_params(ROOT / "params.yaml", overrides)
    assert str(exc.value) == message


def test_storage_choices_parse():
    from r2n2.registry import load_params

    for value in ("sqlite", "journal", "postgresql://user:secret@db.example:5432/tune"):
        assert load_params(ROOT / "params.yaml", [f"tune.storage={value}"]).tune.storage == value
