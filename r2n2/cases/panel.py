"""Use case ``panel``: rank a cross-section of stocks by their next-day (or next-``horizon``-day) return.

Built in: the 20 US large caps of the ``skfolio`` wheel (daily adjusted closes 1990-2022); or a user's panel in
long (``date, entity, close[, volume]``) or wide form. The main model is ``MultiEntityR2N2`` (slide 9): each
stock's window is encoded, then the relational module relates the stocks to each other at each date. Against
it: the same encoder without cross-entity relations (each stock alone), a GRU without any relational module,
short-term reversal, 12-1 momentum and equal-weight buy-and-hold. Judged by the daily rank IC (Spearman, with
a Newey–West t-stat) and a top-k minus bottom-k long-short portfolio net of costs.

Features are cross-sectionally z-scored per date (the convention for cross-sectional signals: it uses only
that date's information), then scaled by statistics of the training period alone. The training target is
the cross-sectional z-score of the forward return; scores are judged on the raw forward returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import FinetuneConfig, MonitorConfig, TrainConfig
from ..data.sources import DataConfig, load_builtin_panel, read_parquet, read_prices
from ..data.validate import PriceChecks
from ..data.window import StockBatches, StockWindows, fit_scalers, load_entity_split, scale_features, split_summary
from ..data.window import window_splits
from ..errors import ConfigError, DataError
from ..io import write_parquet_atomic
from ..models.config import ModelConfig
from .base import CaseData, Log
from .series import PriceCase, SeriesWindowConfig, calendar_cuts, check_series_window
from .stocks import SeriesMeta

__all__ = ["PanelCase", "PanelConfig", "PanelData", "PANEL_FEATURES"]

PANEL_FEATURES = ("ret_1d", "ret_5d", "ret_20d", "vol_20d")


@dataclass
class PanelWindowConfig(SeriesWindowConfig):
    lookback: int = 20                   # trading days of features per stock and window
    horizon: int = 1                     # rank by the return over the next 1 (or 5, ...) days


@dataclass
class PanelEvaluateConfig:
    seeds: int = 1                       # models and neural baselines per seed (train.seed, +1, ...)
    plots: bool = True
    top_k: int = 4                       # stocks per leg of the long-short portfolio
    cost_bps: float = 5.0                # cost per unit of turnover, basis points
    nw_lags: int | None = None           # Newey–West lags of the IC tests (null: automatic, >= horizon - 1)


def _panel_model() -> ModelConfig:
    return ModelConfig(cell="gru", hidden_size=32, num_layers=1, relational=True, pooling="last", entities=True,
                       input_size=len(PANEL_FEATURES))


def _panel_train() -> TrainConfig:
    return TrainConfig(epochs=8, batch_size=32, lr=1e-3, patience=3)


@dataclass
class PanelConfig:
    data: DataConfig = field(default_factory=DataConfig)
    validate: PriceChecks = field(default_factory=PriceChecks)
    window: PanelWindowConfig = field(default_factory=PanelWindowConfig)
    model: ModelConfig = field(default_factory=_panel_model)
    train: TrainConfig = field(default_factory=_panel_train)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: PanelEvaluateConfig = field(default_factory=PanelEvaluateConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)


@dataclass
class PanelMeta(SeriesMeta):
    kind = "panel"


def panel_table(df: pd.DataFrame, *, lookback: int, horizon: int, cuts: dict,
                keep_unlabelled: bool = False) -> pd.DataFrame:
    """Long prices -> per entity and date: cross-sectionally z-scored features, the forward return, its
    cross-sectional z-score (the training target) and the calendar split of the window ending there."""
    wide = df.pivot(index="date", columns="entity", values="close").sort_index()
    logc = np.log(wide)
    feats = {"ret_1d": logc.diff(1), "ret_5d": logc.diff(5), "ret_20d": logc.diff(20),
             "vol_20d": logc.diff(1).rolling(20).std()}
    fwd = logc.shift(-horizon) - logc  # (T, N) log return over the next `horizon` days

    def cs_z(x: pd.DataFrame) -> pd.DataFrame:  # per date across stocks
        return x.sub(x.mean(axis=1), axis=0).div(x.std(axis=1).replace(0, np.nan), axis=0)

    long = {name: cs_z(x).stack(future_stack=True) for name, x in feats.items()}
    long["target"] = cs_z(fwd).stack(future_stack=True)
    long["fwd_return"] = fwd.stack(future_stack=True)
    long["close"] = wide.stack(future_stack=True)
    t = pd.DataFrame(long).reset_index()
    dates = wide.index.to_numpy()
    t["target_date"] = pd.Series(dates).shift(-horizon).to_numpy()[np.searchsorted(dates, t["date"].to_numpy())]
    t = t.dropna(subset=[*PANEL_FEATURES, "close", *([] if keep_unlabelled else ["target"])]).sort_values(["entity", "date"]).reset_index(drop=True)
    parts = []
    cut_values = {k: np.datetime64(pd.Timestamp(v), "us").astype(dates.dtype) for k, v in cuts.items()}
    for _, part in t.groupby("entity", sort=False):
        first = pd.Series(part["date"].to_numpy()).shift(lookback - 1).to_numpy()
        split = window_splits(first, part["target_date"].to_numpy(), cut_values)
        split[:lookback - 1] = ""
        parts.append(split)
    t["split"] = np.concatenate(parts) if parts else []
    return t[["entity", "date", *PANEL_FEATURES, "target", "fwd_return", "close", "target_date", "split"]]


class PanelData(CaseData):
    @property
    def table(self) -> pd.DataFrame:
        if not hasattr(self, "_table"):
            self._table = read_parquet(self.dir / "features.parquet", f"{self.case.name} windows")
        return self._table

    def key(self, role: str) -> str | None:
        return "all" if role == "pretrain" else None  # no transfer target

    def rows(self, role: str, split: str) -> pd.DataFrame:
        return self.table[self.table["split"] == split].reset_index(drop=True)

    def batches(self, role: str, split: str | None, *, batch_size: int, shuffle: bool = False, seed: int = 0,
                fraction: float = 1.0, entities: bool | None = None):
        entities = self.cfg.model.entities if entities is None else entities
        if entities:
            windows = load_entity_split(self.table, self.meta, split)
        else:  # each stock alone: one step sees as many stock-windows as a cross-sectional step (the same budget)
            windows = pooled_windows(self.table, self.meta, split)
            batch_size *= len(self.meta.entities)
        if len(windows) == 0:
            raise DataError(f"no {self.case.name} windows in the {split} split.")
        return StockBatches(windows, batch_size, shuffle, seed)

    def model_config(self, base: ModelConfig | None = None) -> ModelConfig:
        base = base or self.cfg.model
        return replace(base, input_size=len(self.meta.features), vocab_size=None, output_size=1, task="regression")


def pooled_windows(table: pd.DataFrame, meta, split: str | None) -> StockWindows:
    """Every stock's windows in one pool (each stock alone): rows are entity-contiguous and the first
    ``lookback - 1`` rows of each stock belong to no split, so no window crosses two stocks."""
    labels = table["split"].to_numpy()
    ends = np.flatnonzero(labels == split) if split is not None else np.flatnonzero(labels != "")
    y = (table["target"].to_numpy(float) - meta.target_scaler["mean"]) / meta.target_scaler["scale"]
    return StockWindows(scale_features(table, meta), y, ends, meta.lookback)


class PanelCase(PriceCase):
    name = "panel"
    config_cls = PanelConfig
    metric = ("val_mse", False)
    code = ("r2n2/cases/series.py", "r2n2/cases/crosssection.py")
    plots = (("cumulative.csv", "linear", "date", ["model", "reversal_1d", "momentum_12_1", "equal_weight"]),)

    def check_config(self, cfg: PanelConfig, prefix: str) -> None:
        check_series_window(cfg.window, prefix)
        if cfg.evaluate.top_k < 1:
            raise ConfigError(f"{prefix}.evaluate.top_k must be >= 1, got {cfg.evaluate.top_k}.")
        if cfg.evaluate.cost_bps < 0:
            raise ConfigError(f"{prefix}.evaluate.cost_bps must be >= 0, got {cfg.evaluate.cost_bps}.")
        if cfg.model.pooling == "concat" and cfg.model.entities:
            raise ConfigError(f"{prefix}.model.pooling concat is not available with entities; use last.")

    def read_source(self, cfg: PanelConfig) -> pd.DataFrame:
        return read_prices(cfg.data, name=self.name, builtin=load_builtin_panel)

    def build_windows(self, cfg: PanelConfig, df: pd.DataFrame, out_dir: Path, log: Log) -> PanelMeta:
        w = cfg.window
        entities = sorted(df["entity"].astype(str).unique())
        if len(entities) < 2 * cfg.evaluate.top_k:
            raise DataError(f"the panel has {len(entities)} entities; a top-{cfg.evaluate.top_k} minus bottom-"
                            f"{cfg.evaluate.top_k} portfolio needs at least {2 * cfg.evaluate.top_k} (lower "
                            f"{self.name}.evaluate.top_k or add stocks).")
        cuts = calendar_cuts(df["date"], w)
        table = panel_table(df, lookback=w.lookback, horizon=w.horizon, cuts=cuts)
        splits = split_summary(table, "entity", "date")
        empty = [s for s in ("train", "val", "test") if not any(v[s]["n"] for v in splits.values())]
        if empty:
            raise DataError(f"the panel has no {'/'.join(empty)} windows between the cut dates {cuts['val_start']} "
                            f"and {cuts['test_start']} (data {cuts['start']} to {cuts['end']}); move "
                            f"{self.name}.window.val_start/test_start or lower {self.name}.window.lookback.")
        scaler, target_scaler = fit_scalers(table, list(PANEL_FEATURES), cuts["val_start"])
        write_parquet_atomic(table, out_dir / "features.parquet")
        meta = PanelMeta(case=self.name, time="date", cuts=cuts, splits=splits, lookback=w.lookback,
                         horizon=w.horizon, target="cs_zscore_forward_return", features=list(PANEL_FEATURES),
                         entities=entities, scaler=scaler, target_scaler=target_scaler, pretrain_entity="all",
                         finetune_entity=None)
        meta.save(out_dir / "meta.json")
        log(f"{len(entities)} entities, {len(table)} rows; splits per calendar cut dates {cuts}")
        return meta

    def load(self, cfg: PanelConfig, windows_dir: Path) -> PanelData:
        return PanelData(self, cfg, windows_dir)

    def neural_baselines(self, cfg: PanelConfig) -> dict[str, ModelConfig]:
        return {"no_cross_entity": replace(cfg.model, entities=False),  # the same encoder, each stock alone
                "gru_no_relational": replace(cfg.model, cell="gru", relational=False, entities=False)}

    def evaluate(self, cfg: PanelConfig, data: PanelData, models: dict, paths, log: Log) -> dict:
        from .crosssection import evaluate_panel

        return evaluate_panel(cfg, data, models, paths, log)

    def predict(self, model, meta: PanelMeta, checkpoint_meta: dict, input_path: str, cfg) -> pd.DataFrame:
        from .crosssection import predict_panel

        prices = read_prices(replace(cfg.data, source=str(input_path), until=None), name=self.name,
                             builtin=load_builtin_panel)
        return predict_panel(model, meta, prices)

    def monitor(self, cfg, data: PanelData, model, model_meta: dict, paths, log: Log) -> dict:
        import json

        from ..cases.base import WindowMeta
        from ..ops.monitoring import monitor_panel

        return monitor_panel(cfg.monitor, data, model, WindowMeta.from_dict(json.loads(model_meta["window_meta"])), log)

    def promotion_scores(self, cfg, data: PanelData, model, ck: dict, window: dict) -> dict:
        import json

        from ..cases.base import WindowMeta
        from .crosssection import window_scores

        return window_scores(data, model, WindowMeta.from_dict(json.loads(ck["window_meta"])), window)
