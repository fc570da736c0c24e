"""Train, fine-tune and evaluate stages: pure functions of (case, config, project root) that read and write
the data contract in ``CasePaths``. The CLI, the Prefect tasks and the tests all call these."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from .cases import CaseData
from .checkpoint import load_checkpoint, save_checkpoint
from .config import CaseConfig
from .data.validate import write_json_atomic
from .errors import DataError
from .models.core import RelationalRNN, build_model
from .paths import CasePaths
from .train import TrainResult, fingerprint, is_main_process, seed_everything, train_model

__all__ = ["train_stage", "finetune_stage", "evaluate_stage", "fit", "state_path"]


def state_path(paths: CasePaths, name: str) -> Path:
    """Per-epoch training state (for resume); outside every DVC output so `dvc repro` never deletes it."""
    return paths.root / "data" / "state" / paths.case / f"{name}.pt"


def fit(case: str, cfg: CaseConfig, data: CaseData, model: RelationalRNN, role: str, name: str, paths: CasePaths,
        *, epochs: int | None = None, lr: float | None = None, fraction: float = 1.0,
        log: Callable[[str], None] | None = None) -> TrainResult:
    t = cfg.train
    train = data.batches(role, "train", batch_size=t.batch_size, shuffle=True, seed=t.seed, fraction=fraction)
    val = data.batches(role, "val", batch_size=256)
    run_id = fingerprint(model.config, t, data.meta, {"role": role, "name": name, "epochs": epochs, "lr": lr,
                                                      "fraction": fraction,
                                                      "frozen": [n for n, p in model.named_parameters()
                                                                 if not p.requires_grad]})
    return train_model(model, train, val, t, state_path=state_path(paths, name), run_id=run_id, epochs=epochs,
                       lr=lr, log=log)


def _save(model: RelationalRNN, path: Path, data: CaseData, result: TrainResult, **extra) -> None:
    if not is_main_process():  # DDP: rank 0 alone writes checkpoints and metrics
        return
    meta = data.checkpoint_metadata()
    meta.update({"history": json.dumps(result.history), "best_epoch": result.best_epoch,
                 "best_metric": result.best_metric, "metric_name": result.metric_name,
                 "epoch_seconds": json.dumps(result.epoch_seconds), "train_examples": result.train_examples,
                 **extra})
    save_checkpoint(path, model, metadata=meta)
    write_json_atomic(result.history, path.with_name("train_log.json"))


def train_stage(case: str, cfg: CaseConfig, root: str | Path = ".", *, log=None) -> TrainResult:
    """Train the case's main model on the pretraining data -> data/models/<case>/model.pt."""
    paths = CasePaths(case, Path(root))
    data = CaseData(case, cfg, paths.windows)
    seed_everything(cfg.train.seed)
    model = build_model(data.model_config())
    result = fit(case, cfg, data, model, "pretrain", "model", paths, log=log)
    _save(model, paths.model_dir / "model.pt", data, result, role="pretrain")
    return result


def finetune_stage(case: str, cfg: CaseConfig, root: str | Path = ".", *, log=None) -> dict:
    """Slide 14 as a stage: the pretrained encoder under a new head, frozen (optionally unfrozen after N
    epochs at a lower LR), trained on the transfer target; plus the same architecture trained from scratch
    on the same target data and budget, for comparison."""
    paths = CasePaths(case, Path(root))
    data = CaseData(case, cfg, paths.windows)
    if not data.has_target():
        raise DataError(f"the {case} data has no transfer target ({'entity ' + str(data.key('target')) if case == 'stocks' else 'texts matching window.finetune_pattern'}); "
                        "fine-tuning needs one (for stocks: two entities, e.g. sp500 and nasdaq).")
    f = cfg.finetune
    pretrained, _ = load_checkpoint(paths.model_dir / "model.pt")
    seed_everything(cfg.train.seed)
    model = pretrained.with_new_head(data.model_config().output_size)
    frozen_epochs = f.unfreeze_after if (f.freeze_encoder and f.unfreeze_after) else (f.epochs if f.freeze_encoder else 0)
    histories = []
    if frozen_epochs:
        model.freeze_encoder(True)
        r1 = fit(case, cfg, data, model, "target", "finetune-frozen", paths, epochs=frozen_epochs, lr=f.lr,
                 fraction=f.train_fraction, log=log)
        histories += r1.history
    if f.epochs - frozen_epochs > 0:
        model.freeze_encoder(False)
        r2 = fit(case, cfg, data, model, "target", "finetune-unfrozen", paths, epochs=f.epochs - frozen_epochs,
                 lr=f.lr * (f.unfreeze_lr_factor if frozen_epochs else 1.0), fraction=f.train_fraction, log=log)
        histories += [{**r, "epoch": r["epoch"] + frozen_epochs} for r in r2.history]
        best = r2
    else:
        best = r1
    model.freeze_encoder(False)
    result = TrainResult(history=histories, best_epoch=best.best_epoch, best_metric=best.best_metric,
                         metric_name=best.metric_name)
    _save(model, paths.finetuned_dir / "model.pt", data, result, role="target", init="pretrained")

    seed_everything(cfg.train.seed)
    scratch = build_model(data.model_config())
    rs = fit(case, cfg, data, scratch, "target", "scratch", paths, epochs=f.epochs, lr=cfg.train.lr,
             fraction=f.train_fraction, log=log)
    _save(scratch, paths.root / "data" / "models" / f"{case}-scratch" / "model.pt", data, rs, role="target",
          init="scratch")
    return {"finetuned": result.best_metric, "scratch": rs.best_metric, "metric": result.metric_name}


def evaluate_stage(case: str, cfg: CaseConfig, root: str | Path = ".", *, log=None) -> dict:
    """Model, fine-tuned model, from-scratch model and baselines on the same test splits, side by side
    -> data/reports/<case>/metrics.json, report.md and plots/."""
    from .evaluate.report import evaluate_sentiment, evaluate_stocks

    paths = CasePaths(case, Path(root))
    data = CaseData(case, cfg, paths.windows)
    fn = evaluate_stocks if case == "stocks" else evaluate_sentiment
    return fn(cfg, data, paths, log=log or (lambda m: None))


def ablation_model(cfg: CaseConfig, data: CaseData) -> RelationalRNN:
    """GRU without the relational module, otherwise the main model's settings (the ablation baseline)."""
    base = replace(cfg.model, cell="gru", relational=False, encoder_name="rnn", bidirectional=cfg.model.bidirectional
                   if cfg.model.cell != "rmc" else False)
    return build_model(data.model_config(base))
