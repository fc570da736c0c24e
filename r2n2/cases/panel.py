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

import importlib.util
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from ..config import FinetuneConfig, MonitorConfig, PromotionConfig, TrainConfig
from ..data.sources import DataConfig, read_prices
from ..data.validate import PriceChecks
from ..data.window import fit_scalers, split_summary
from ..errors import ConfigError, DataError
from ..io import write_parquet_atomic
from ..models.config import ModelConfig
from .base import Log, check_choice
from .crosssection import PANEL_FEATURES, CrossSectionCase, PanelMeta, panel_table
from .prices import SeriesWindowConfig, calendar_cuts, check_calendar, check_series_window

_SKFOLIO_PANEL = ("datasets", "data", "sp500_dataset.csv.gz")


def load_builtin_panel() -> pd.DataFrame:
    """Daily adjusted closes of 20 US large caps, 1990-2022 (8,313 days), from the skfolio wheel, in long form.

    The CSV is located with ``importlib.util.find_spec`` and read directly: importing skfolio would load its
    optimisation stack for nothing.
    """
    spec = importlib.util.find_spec("skfolio")
    roots = list(spec.submodule_search_locations or []) if spec else []
    path = next((Path(r, *_SKFOLIO_PANEL) for r in roots if Path(r, *_SKFOLIO_PANEL).is_file()), None)
    if path is None:
        raise DataError("the built-in panel needs the 'skfolio' package, which ships its 20-stock price file; "
                        "install it (pip install skfolio) or set panel.data.source to your own file.")
    wide = pd.read_csv(path)
    long = wide.melt(id_vars="Date", var_name="entity", value_name="close")
    return pd.DataFrame({"entity": long["entity"].astype("str"),
                         "date": pd.to_datetime(long["Date"]).astype("datetime64[us]"),
                         "close": long["close"].astype("float64")})

__all__ = ["PanelCase", "PanelConfig"]

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
    execution_lag: int = 1               # days between a signal and its trade: 1 (default) or 0 (its own close)
    periods_per_year: int = 252          # this calendar's trading days a year (annualised Sharpe ratios)


def _panel_model() -> ModelConfig:
    return ModelConfig(cell="gru", hidden_size=32, num_layers=1, relational=True, pooling="last", entities=True,
                       identity=True, input_size=len(PANEL_FEATURES))


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
    promotion: PromotionConfig = field(default_factory=PromotionConfig)


class PanelCase(CrossSectionCase):
    name = "panel"
    config_cls = PanelConfig
    builtin = staticmethod(load_builtin_panel)
    plots = (("cumulative.csv", "linear", "date", ["model", "reversal_1d", "momentum_12_1", "equal_weight"]),)

    def check_config(self, cfg: PanelConfig, prefix: str) -> None:
        check_series_window(cfg.window, prefix)
        if cfg.evaluate.top_k < 1:
            raise ConfigError(f"{prefix}.evaluate.top_k must be >= 1, got {cfg.evaluate.top_k}.")
        if cfg.evaluate.cost_bps < 0:
            raise ConfigError(f"{prefix}.evaluate.cost_bps must be >= 0, got {cfg.evaluate.cost_bps}.")
        check_choice(prefix, "evaluate.execution_lag", cfg.evaluate.execution_lag, (0, 1))
        check_calendar(cfg.evaluate, prefix)
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
        meta = PanelMeta(case=self.name, time="date", cuts=cuts, splits=splits, cut_rule=w.cuts, lookback=w.lookback,
                         horizon=w.horizon, target="cs_zscore_forward_return", features=list(PANEL_FEATURES),
                         entities=entities, scaler=scaler, target_scaler=target_scaler, pretrain_entity="all",
                         finetune_entity=None)
        meta.save(out_dir / "meta.json")
        log(f"{len(entities)} entities, {len(table)} rows; splits per calendar cut dates {cuts}")
        return meta

    def neural_baselines(self, cfg: PanelConfig) -> dict[str, ModelConfig]:
        alone = {"entities": False, "identity": False, "entity_mixing": False}
        return {"no_cross_entity": replace(cfg.model, **alone),  # the same encoder, each stock alone
                "gru_no_relational": replace(cfg.model, cell="gru", relational=False, **alone)}

    def predict(self, model, meta: PanelMeta, checkpoint_meta: dict, input_path: str, cfg) -> pd.DataFrame:
        prices = read_prices(replace(cfg.data, source=str(input_path), until=None), name=self.name,
                             builtin=load_builtin_panel)
        return self.predict_prices(model, meta, prices)
