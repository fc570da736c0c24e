"""Use case ``stocks``: forecast one price series (S&P 500 from ``arch``, or a user's file) from a lookback of
daily log-return features; transfer to a second series (NASDAQ). Judged against the random walk and the
historical mean on returns, with Diebold–Mariano, Clark–West and Pesaran–Timmermann tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .base import Log, check_choice
from ..config import FinetuneConfig, MonitorConfig, PromotionConfig, TrainConfig
from ..data.sources import DataConfig, read_prices
from ..data.validate import PriceChecks
from ..data.window import FEATURE_NAMES, fit_scalers, series_table, split_summary
from ..errors import DataError
from .forecast import evaluate_forecasts, predict_prices
from ..io import write_parquet_atomic
from ..models.config import ModelConfig
from .series import SeriesCase, SeriesMeta, SeriesWindowConfig, calendar_cuts, check_series_window, load_builtin_stocks

__all__ = ["StocksCase", "StocksConfig"]


@dataclass
class StocksWindowConfig(SeriesWindowConfig):
    target: str = "return"               # return | close | volatility (all scored as returns / volatility)
    pretrain_entity: str = "sp500"       # the main model's series (default: the first entity)
    finetune_entity: str | None = "nasdaq"  # transfer target (null or absent: no fine-tuning)


@dataclass
class StocksEvaluateConfig:
    seeds: int = 1                       # models and neural baselines trained with train.seed + 0..seeds-1
    plots: bool = True
    cost_bps: float = 1.0                # trading cost per unit of turnover, basis points (sign strategy)
    bootstrap: int = 2000                # bootstrap resamples of the paired comparisons
    seed: int = 0                        # bootstrap seed


@dataclass
class StocksConfig:
    data: DataConfig = field(default_factory=DataConfig)
    validate: PriceChecks = field(default_factory=PriceChecks)
    window: StocksWindowConfig = field(default_factory=StocksWindowConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(cell="rnn", num_layers=2))
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: StocksEvaluateConfig = field(default_factory=StocksEvaluateConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    promotion: PromotionConfig = field(default_factory=PromotionConfig)


class StocksCase(SeriesCase):
    name = "stocks"
    config_cls = StocksConfig
    metric = ("val_mse", False)
    plots = (("forecast.csv", "linear", "date", ["actual", "forecast"]),
             ("cumulative.csv", "linear", "date", ["buy_and_hold", "sign_strategy"]))

    def check_config(self, cfg: StocksConfig, prefix: str) -> None:
        check_series_window(cfg.window, prefix)
        check_choice(prefix, "window.target", cfg.window.target, ("return", "close", "volatility"))

    def read_source(self, cfg: StocksConfig) -> pd.DataFrame:
        return read_prices(cfg.data, name=self.name, builtin=load_builtin_stocks)

    # -- windows ---------------------------------------------------------------------------------
    def build_windows(self, cfg: StocksConfig, df: pd.DataFrame, out_dir: Path, log: Log) -> SeriesMeta:
        w = cfg.window
        cuts = calendar_cuts(df["date"], w)
        table = series_table(df, lookback=w.lookback, horizon=w.horizon, target=w.target, cuts=cuts)
        entities = list(dict.fromkeys(table["entity"]))
        pretrain = w.pretrain_entity if w.pretrain_entity in entities else entities[0]
        splits = split_summary(table, "entity", "date")
        short = [s for s, v in splits[pretrain].items() if v["n"] == 0]
        if short:
            raise DataError(
                f"entity {pretrain!r} has no {'/'.join(short)} windows between the cut dates {cuts['val_start']} "
                f"and {cuts['test_start']} (data {cuts['start']} to {cuts['end']}) with lookback {w.lookback} and "
                f"horizon {w.horizon}; provide more rows, move {self.name}.window.val_start/test_start or lower "
                f"{self.name}.window.lookback.")
        features = [c for c in FEATURE_NAMES.values() if c in table]
        scaler, target_scaler = fit_scalers(table, features, cuts["val_start"])
        write_parquet_atomic(table, out_dir / "features.parquet")
        meta = SeriesMeta(case=self.name, time="date", cuts=cuts, splits=splits, cut_rule=w.cuts, lookback=w.lookback,
                          horizon=w.horizon, target=w.target, features=features, entities=entities, scaler=scaler,
                          target_scaler=target_scaler, pretrain_entity=pretrain,
                          finetune_entity=w.finetune_entity if w.finetune_entity in entities
                          and w.finetune_entity != pretrain else None)
        meta.save(out_dir / "meta.json")
        return meta

    def naive_forecast(self, rows: pd.DataFrame, meta: SeriesMeta) -> np.ndarray:
        """The random walk of each target, as the evaluation scores it: no change of a return (0); today's log
        close for a log close; for volatility the realised volatility of the last ``horizon`` days."""
        if meta.target == "close":
            return rows["base_log_close"].to_numpy(float)
        if meta.target == "volatility":
            r = rows["ret_close"].to_numpy(float)
            return np.sqrt(pd.Series(r ** 2).rolling(meta.horizon, min_periods=1).mean().to_numpy())
        return np.zeros(len(rows))

    def neural_baselines(self, cfg: StocksConfig) -> dict[str, ModelConfig]:
        # the ablation toggles the relational module and nothing else (cell, size, pooling, budget unchanged)
        return {"no_relational": replace(cfg.model, relational=False)}

    # -- evaluate / serve ------------------------------------------------------------------------
    def evaluate(self, cfg: StocksConfig, data, models: dict, paths, log: Log) -> dict:
        return evaluate_forecasts(cfg, data, models, paths, log)

    def predict(self, model, meta: SeriesMeta, checkpoint_meta: dict, input_path: str, cfg) -> pd.DataFrame:
        prices = read_prices(replace(cfg.data, source=str(input_path), until=None), name=self.name,
                             builtin=load_builtin_stocks)
        return predict_prices(model, meta, prices)
