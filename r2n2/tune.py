"""Hyper-parameter search space and objective for Optuna (TPE sampler, median pruner).

The objective trains one configuration on the case's training split and returns its validation metric
(stocks: MSE, minimised; sentiment: macro-F1, maximised), reporting it after every epoch so the median
pruner can stop unpromising trials. The test split is never touched."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from typing import Any

from .cases.base import UseCase
from .config import with_values
from .data.sources import read_parquet
from .models.core import build_model
from .paths import CasePaths
from .train import seed_everything, train_model

__all__ = ["direction", "suggest", "objective", "overrides_from"]



def suggest(trial, case: UseCase) -> dict[str, object]:
    """The search space, as dotted params keys -> values."""
    cell = trial.suggest_categorical("cell", ["rnn", "gru", "lstm", "rmc"])
    p = {
        "model.cell": cell,
        # the RMC runs one way only; for the other cells a backward pass over the sequence is a choice
        "model.bidirectional": trial.suggest_categorical("bidirectional", [True, False]) if cell != "rmc" else False,
        "model.hidden_size": trial.suggest_categorical("hidden_size", [16, 32, 64, 128]),
        "model.relational": trial.suggest_categorical("relational", [True, False]),
        # both O(T) with the relational module (last step only); mean / max / attention relate all pairs
        "model.pooling": trial.suggest_categorical("pooling", ["last", "concat"]),
        "model.dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "train.lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
    }
    if "lookback" in {f.name for f in __import__("dataclasses").fields(case.config_cls().window)}:
        p["window.lookback"] = trial.suggest_categorical("lookback", [10, 20, 30, 60])
    return p


def direction(case: UseCase) -> str:
    """Optuna's direction for the case's validation metric."""
    return "maximize" if case.metric[1] else "minimize"


def overrides_from(case: UseCase, values: dict[str, object]) -> dict[str, object]:
    return {f"{case.name}.{k}": v for k, v in values.items()}


_apply = with_values  # the search space's values on a case config


def objective(trial, case: UseCase, cfg: Any, *, epochs: int, root: str | Path = ".",
              log=None) -> float:
    """Train the trial's configuration; return the best validation metric. Raises ``optuna.TrialPruned``."""
    import optuna

    values = suggest(trial, case)
    cfg = _apply(cfg, values)
    paths = CasePaths(case.name, Path(root))
    uc = case
    windows = paths.windows
    data = uc.load(cfg, windows)
    lookback = getattr(cfg.window, "lookback", None)
    if lookback is not None and lookback != data.meta.lookback:  # a lookback of its own: windows of its own

        windows = paths.data / "tuning" / f"{case.name}-windows" / f"lookback-{lookback}"
        if not (windows / "meta.json").is_file():
            uc.build_windows(cfg, read_parquet(paths.validated, f"validated {case.name} data"), windows, log or print)
        data = uc.load(cfg, windows)
    seed_everything(cfg.train.seed)
    model = build_model(data.model_config())
    entities = bool(model.config.entities)
    train = data.batches("pretrain", "train", batch_size=cfg.train.batch_size, shuffle=True, seed=cfg.train.seed,
                         entities=entities)
    val = data.batches("pretrain", "val", batch_size=256, entities=entities)

    def report(epoch: int, metric: float) -> None:
        trial.report(metric, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} (validation {metric:.5g})")

    result = train_model(model, train, val, replace(cfg.train, epochs=epochs), progress=False, log=log,
                         epoch_callback=report)
    return result.best_metric
