"""The series kind, ``SeriesCase``: one forecast per series, complete: its config (``SeriesConfig``, the sections
every series case shares), windows, naive benchmark, evaluation and predict, its window metadata and data, its one
scorer (``series_frame``, used by monitor, promotion and replay) and its monitor signals. A series case is a name,
its built-in data and its defaults (``r2n2.cases.stocks``); one with another target overrides the table and the
scoring (``r2n2.cases.volatility``). What price kinds share is ``r2n2.cases.prices``; the cross-section kind is
``r2n2.cases.crosssection``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from .base import CaseConfig, CaseData, Log, MonitorSignals, check_choice, predict_batches, window_meta_of
from ..data.validate import PriceChecks
from ..data.window import (FEATURE_NAMES, StockBatches, StockWindows, fit_scalers, load_entity_split,
                           load_stock_split, scale_features, series_table, split_summary)
from ..errors import ConfigError, DataError
from ..evaluate.distribution import student_t_quantiles
from ..io import write_parquet_atomic
from ..models.config import ModelConfig
from .forecast import evaluate_forecasts, predict_prices
from .prices import (PriceCase, SeriesMeta, SeriesWindowConfig, calendar_cuts, check_calendar, check_series_window,
                     load_builtin_stocks)

__all__ = ["SeriesCase", "SeriesConfig", "SeriesEvaluateConfig", "SeriesData", "ForecastWindowConfig", "series_frame",
           # what every price kind shares (r2n2.cases.prices), where a series case looks for it
           "PriceCase", "SeriesMeta", "SeriesWindowConfig", "calendar_cuts", "check_calendar", "check_series_window",
           "load_builtin_stocks"]


@dataclass
class ForecastWindowConfig(SeriesWindowConfig):
    """The windows of a price forecast: its target and which series pretrains and which is the transfer target."""
    target: str = "return"               # return | close | volatility (all scored as returns / volatility)
    pretrain_entity: str | None = None   # the main model's series (null or absent from the data: the first one)
    finetune_entity: str | None = None   # transfer target (null or absent: no fine-tuning)


@dataclass
class SeriesEvaluateConfig:
    seeds: int = 1                       # models and neural baselines trained with train.seed + 0..seeds-1
    plots: bool = True
    cost_bps: float = 1.0                # trading cost per unit of turnover, basis points (sign strategy)
    bootstrap: int = 2000                # bootstrap resamples of the paired comparisons
    seed: int = 0                        # bootstrap seed
    periods_per_year: int = 252          # this calendar's trading periods a year (annualised Sharpe ratios)


@dataclass
class SeriesConfig(CaseConfig):
    """The series kind's sections (``CaseConfig``'s, with its types); a case subclasses it to change defaults."""
    validate: PriceChecks = field(default_factory=PriceChecks)
    window: ForecastWindowConfig = field(default_factory=ForecastWindowConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(cell="rnn", num_layers=2))
    evaluate: SeriesEvaluateConfig = field(default_factory=SeriesEvaluateConfig)


class SeriesData(CaseData):
    """The windows of a series case: ``features.parquet`` (one row per entity and date) and its metadata."""

    table_file = "features.parquet"

    def key(self, role: str) -> str | None:
        return self.meta.pretrain_entity if role == "pretrain" else self.meta.finetune_entity

    def rows(self, role: str, split: str) -> pd.DataFrame:
        t = self.table
        part = t[t["entity"] == self.key(role)].reset_index(drop=True)
        return part[part["split"] == split].reset_index(drop=True)

    def batches(self, role: str, split: str, *, batch_size: int, shuffle: bool = False, seed: int = 0,
                fraction: float = 1.0, entities: bool | None = None):
        entities = self.cfg.model.entities if entities is None else entities
        if entities:  # every entity at once, aligned on dates (slide 9)
            windows = load_entity_split(self.table, self.meta, split)
        else:
            windows = load_stock_split(self.table, self.meta, self.key(role), split)
        if fraction < 1.0:  # the most recent share of the training windows (a small target set)
            keep = max(1, int(round(len(windows.ends) * fraction)))
            windows.ends = windows.ends[-keep:]
        return StockBatches(windows, batch_size, shuffle, seed)

    def model_config(self, base: ModelConfig | None = None) -> ModelConfig:
        base = base or self.cfg.model
        return replace(base, input_size=len(self.meta.features), vocab_size=None, output_size=1,
                       task="regression")


def series_frame(model, mmeta: SeriesMeta, rows: pd.DataFrame, naive=None) -> pd.DataFrame:
    """The series kind's one scorer. One entity's rows of a windows table (unscaled features, target) -> per
    date: features, the model's forecast (scaled with the model's own scalers), the actual target, the naive
    benchmark's forecast (``naive(rows, meta) -> array``, e.g. ``SeriesCase.naive_forecast``; default 0: the random
    walk of a return) and both squared errors; a model with a distribution head adds its quantiles, q<level>."""
    rows = rows.sort_values("date").reset_index(drop=True)
    L = mmeta.lookback
    if len(rows) < L:
        raise DataError(f"monitoring needs at least {L} rows of {mmeta.pretrain_entity}, got {len(rows)}.")
    ts = mmeta.target_scaler
    ends = np.arange(L - 1, len(rows))
    w = StockWindows(scale_features(rows, mmeta), np.zeros(len(rows)), ends, L)
    pred = predict_batches(model, StockBatches(w, 1024)).reshape(-1) * ts["scale"] + ts["mean"]
    out = rows.iloc[ends][["date", *mmeta.features, "target"]].reset_index(drop=True)
    out["pred"] = pred
    cfg = model.config
    if cfg.distribution != "none":  # the head's quantiles on the target's scale, q<level> (for the coverage signal)
        raw = predict_batches(model, StockBatches(w, 1024), distribution=True).reshape(len(ends), -1)
        q = student_t_quantiles(raw, cfg.quantiles) if cfg.distribution == "student_t" else raw
        for j, level in enumerate(cfg.quantiles):
            out[f"q{level:g}"] = q[:, j] * ts["scale"] + ts["mean"]
    out["bench"] = np.zeros(len(out)) if naive is None else np.asarray(naive(rows, mmeta), dtype=float)[ends]
    out["loss"] = (out["pred"] - out["target"]) ** 2
    out["bench_loss"] = (out["bench"] - out["target"]) ** 2
    return out


class SeriesCase(PriceCase):
    """One forecast per series, complete: a case on this kind is its name, its built-in data (``builtin``) and
    its defaults (``config_cls``, a ``SeriesConfig``). Windows of price features (``window_table``), the naive
    benchmark of its target, evaluation against the random walk and the historical mean (Diebold-Mariano,
    Clark-West, Pesaran-Timmermann, the sign strategy), predict, and the inherited monitor, promotion and replay."""

    kind = "series"
    config_cls: ClassVar[type] = SeriesConfig
    metric = ("val_mse", False)
    plots = (("forecast.csv", "linear", "date", ["actual", "forecast"]),
             ("cumulative.csv", "linear", "date", ["buy_and_hold", "sign_strategy"]))
    headline_metrics = ("rmse", "rel_rmse_random_walk", "oos_r2", "directional_accuracy")
    main_baseline = "random_walk"
    benchmark = ("random_walk", "rel_rmse_random_walk", False)  # no change in price
    naive_name: ClassVar[str] = "random walk"  # the benchmark of monitor, gate and replay
    meta_cls: ClassVar[type] = SeriesMeta      # the window metadata ``build_windows`` writes

    def check_config(self, cfg, prefix: str) -> None:
        check_series_window(cfg.window, prefix)
        check_choice(prefix, "window.target", cfg.window.target, ("return", "close", "volatility"))
        check_calendar(cfg.evaluate, prefix)

    # -- windows ---------------------------------------------------------------------------------
    def window_table(self, cfg, df: pd.DataFrame, cuts: dict) -> tuple[pd.DataFrame, list[str]]:
        """(one row per entity and date: features, target, split; the feature columns) from the long prices."""
        w = cfg.window
        table = series_table(df, lookback=w.lookback, horizon=w.horizon, target=w.target, cuts=cuts)
        return table, [c for c in FEATURE_NAMES.values() if c in table]

    def meta_fields(self, cfg) -> dict:
        """What this case's window metadata holds beyond the kind's (the target; a subclass adds its own)."""
        return {"target": cfg.window.target}

    def build_windows(self, cfg, df: pd.DataFrame, out_dir: Path, log: Log) -> SeriesMeta:
        w = cfg.window
        cuts = calendar_cuts(df["date"], w)
        table, features = self.window_table(cfg, df, cuts)
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
        scaler, target_scaler = fit_scalers(table, features, cuts["val_start"])
        write_parquet_atomic(table, out_dir / "features.parquet")
        meta = self.meta_cls(case=self.name, time="date", cuts=cuts, splits=splits, cut_rule=w.cuts,
                             lookback=w.lookback, horizon=w.horizon, features=features, entities=entities,
                             scaler=scaler, target_scaler=target_scaler, pretrain_entity=pretrain,
                             finetune_entity=w.finetune_entity if w.finetune_entity in entities
                             and w.finetune_entity != pretrain else None, **self.meta_fields(cfg))
        meta.save(out_dir / "meta.json")
        return meta

    def naive_forecast(self, rows: pd.DataFrame, meta: SeriesMeta) -> np.ndarray:
        """The naive benchmark's forecast of each row's target (``meta``: the windows' metadata), from what is
        known at its date, as the evaluation scores it: the random walk (no change) of a return is 0; of a log
        close, today's log close; for volatility, the realised volatility of the last ``horizon`` days."""
        if meta.target == "close":
            return rows["base_log_close"].to_numpy(float)
        if meta.target == "volatility":
            r = rows["ret_close"].to_numpy(float)
            return np.sqrt(pd.Series(r ** 2).rolling(meta.horizon, min_periods=1).mean().to_numpy())
        return np.zeros(len(rows))

    def neural_baselines(self, cfg) -> dict[str, ModelConfig]:
        # the ablation toggles the relational module and nothing else (cell, size, pooling, budget unchanged)
        return {"no_relational": replace(cfg.model, relational=False)}

    # -- evaluate / serve ------------------------------------------------------------------------
    def evaluate(self, cfg, data, models: dict, paths, log: Log) -> dict:
        return evaluate_forecasts(cfg, data, models, paths, log)

    def predict(self, model, meta: SeriesMeta, checkpoint_meta: dict, input_path: str, cfg) -> pd.DataFrame:
        return predict_prices(model, meta, self.read_input(cfg, input_path))

    def load(self, cfg, windows_dir) -> SeriesData:
        return SeriesData(self, cfg, windows_dir)

    def example(self, folder, *, seed: int = 0) -> dict:
        """Two geometric random walks with consistent OHLCV (high >= open, close >= low), 520 business days,
        named like the case's pretrain and transfer entities."""
        w = self.config_cls().window
        names = [getattr(w, "pretrain_entity", None) or "a", getattr(w, "finetune_entity", None) or "b"]
        rng = np.random.default_rng(seed)
        n, frames = 520, []
        for name in names:
            close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
            open_ = close * np.exp(rng.normal(0, 0.003, n))
            frames.append(pd.DataFrame({
                "entity": name, "date": pd.bdate_range("2015-01-01", periods=n).strftime("%Y-%m-%d"),
                "open": open_, "high": np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n)),
                "low": np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n)), "close": close,
                "volume": rng.integers(1_000, 5_000, n)}))
        path = folder / f"example-{self.name}.csv"
        pd.concat(frames, ignore_index=True).to_csv(path, index=False)
        return {"data.source": str(path), "validate.min_rows": 100, "window.lookback": 10, "window.val_start": None,
                "window.test_start": None, "window.val_days": 60, "window.holdout_days": 30, "model.hidden_size": 8,
                "train.epochs": 2, "train.batch_size": 32, "finetune.epochs": 1, "monitor.min_samples": 10}

    def monitor_frame(self, cfg, data: SeriesData, model, ck: dict) -> tuple[pd.DataFrame, MonitorSignals]:
        mmeta = window_meta_of(ck)
        frame = series_frame(model, mmeta, data.table[data.table["entity"] == mmeta.pretrain_entity],
                             naive=self.naive_forecast)
        return frame, MonitorSignals(inputs=tuple(mmeta.features), prediction_history=True)

    def replay_check(self, *, batch: int | None = None) -> None:
        if batch is not None:  # a step is one trading day: a batch size would be silently meaningless
            raise ConfigError(f"--batch applies to texts only (a replay step of arrival batches); a {self.name} "
                              f"replay steps one trading day at a time, so leave --batch out.")

    def promotion_scores(self, cfg, data: SeriesData, model, ck: dict, window: dict) -> dict:
        mmeta = window_meta_of(ck)
        f = series_frame(model, mmeta, data.table[data.table["entity"] == mmeta.pretrain_entity],
                         naive=self.naive_forecast)
        f = f[(f["date"] >= pd.Timestamp(window["start"])) & (f["date"] <= pd.Timestamp(window["end"]))]
        return {"actual": f["target"].to_numpy(), "pred": f["pred"].to_numpy(), "kind": "forecast",
                "n_classes": None, "horizon": mmeta.horizon, "benchmark": f["bench"].to_numpy(),
                "benchmark_id": self.naive_name}
