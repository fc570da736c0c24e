"""The price kinds. ``PriceCase``: what every price case shares (the price-table ingest and validation,
calendar cut dates, the series window configuration). ``SeriesCase``: one forecast per series (``stocks``):
its window metadata and data, its one scorer (``series_frame``, used by monitor, promotion and replay) and its
monitor signals. The cross-section kind (``panel``) is ``r2n2.cases.crosssection``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from .base import (
    CaseData, MonitorSignals, UseCase, WindowMeta, check_choice, check_range, fraction_cuts, iso, predict_batches,
    window_meta_of,
)
from ..data.validate import price_suite
from ..data.window import StockBatches, StockWindows, load_entity_split, load_stock_split, scale_features
from ..errors import ConfigError, DataError
from ..evaluate.distribution import student_t_quantiles
from ..models.config import ModelConfig

__all__ = ["PriceCase", "SeriesCase", "SeriesMeta", "SeriesData", "SeriesWindowConfig", "calendar_cuts",
           "load_builtin_stocks", "price_schema", "series_frame"]

PRICE_COLUMNS = ("open", "high", "low", "close", "volume")


# -- built-in data: the S&P 500 and NASDAQ indices of stocks and volatility -------------------------------------
def load_builtin_stocks() -> pd.DataFrame:
    """S&P 500 and NASDAQ composite daily OHLCV, 1999-2018, as shipped by the ``arch`` package (long form)."""
    from arch.data import nasdaq, sp500

    frames = []
    for name, module in (("sp500", sp500), ("nasdaq", nasdaq)):
        raw = module.load()
        frames.append(pd.DataFrame({
            "entity": name, "date": pd.DatetimeIndex(raw.index).as_unit("us"),
            **{c: raw[c.capitalize()].astype("float64").to_numpy() for c in PRICE_COLUMNS}}))
    return pd.concat(frames, ignore_index=True)


@dataclass
class SeriesWindowConfig:
    lookback: int = 30                   # steps per window (slide 8)
    horizon: int = 1                     # predict this many days ahead
    val_start: str | None = None         # first day of the validation period (ISO); null: from val_fraction
    test_start: str | None = None        # first day of the test period (ISO); null: from test_fraction
    val_fraction: float = 0.15           # share of the calendar's dates in validation when val_start is null
    test_fraction: float = 0.15          # share of the calendar's dates in test when test_start is null
    cuts: str = "fixed"                  # fixed: the cut dates / fractions above (research, `dvc repro`) |
    #                                      rolling: cuts that follow the data (deployment: retrain, serve, replay):
    #                                      the newest holdout_days are the promotion slice, the val_days before
    #                                      them early stopping, everything before training; no test split
    val_days: int = 250                  # rolling: trading days of early stopping
    holdout_days: int = 63               # rolling: trading days of the promotion slice (never trained or
    #                                      early-stopped on)


def check_series_window(w: SeriesWindowConfig, prefix: str) -> None:
    check_choice(prefix, "window.cuts", w.cuts, ("fixed", "rolling"))
    for key in ("lookback", "horizon", "val_days", "holdout_days"):
        if getattr(w, key) < 1:
            raise ConfigError(f"{prefix}.window.{key} must be >= 1, got {getattr(w, key)}.")
    check_range(prefix, "window.val_fraction", w.val_fraction, 0, 1, lo_open=True)
    check_range(prefix, "window.test_fraction", w.test_fraction, 0, 1, lo_open=True)
    if w.val_fraction + w.test_fraction >= 0.9:
        raise ConfigError(f"{prefix}.window.val_fraction + test_fraction must be below 0.9, got "
                          f"{w.val_fraction + w.test_fraction:.3g}.")
    for key in ("val_start", "test_start"):
        value = getattr(w, key)
        if value is not None:
            try:
                pd.Timestamp(value)
            except ValueError:
                raise ConfigError(f"{prefix}.window.{key} must be an ISO date such as 2016-01-04, got "
                                  f"{str(value)[:80]!r}.") from None
    if w.val_start and w.test_start and pd.Timestamp(w.val_start) >= pd.Timestamp(w.test_start):
        raise ConfigError(f"{prefix}.window.val_start ({w.val_start}) must be before test_start ({w.test_start}).")


def calendar_cuts(dates: pd.Series, w: SeriesWindowConfig) -> dict[str, str]:
    """One calendar for every entity: explicit cut dates, or fractions of the union of all dates (fixed); or
    the newest ``holdout_days`` and the ``val_days`` before them (rolling)."""
    d = pd.to_datetime(dates).to_numpy()
    if w.cuts == "rolling":
        u = np.unique(d)
        need = w.val_days + w.holdout_days + 2 * w.lookback + w.horizon
        if len(u) < need:
            raise DataError(f"rolling cuts need at least {need} trading days (window.val_days {w.val_days} + "
                            f"holdout_days {w.holdout_days} + training); the data holds {len(u)}.")
        return {"start": iso(u[0]), "val_start": iso(u[-(w.holdout_days + w.val_days)]),
                "test_start": iso(u[-w.holdout_days]), "end": iso(u[-1])}
    val, test = fraction_cuts(d, w.val_fraction, w.test_fraction)
    if w.test_start:
        test = np.datetime64(pd.Timestamp(w.test_start))
    if w.val_start:
        val = np.datetime64(pd.Timestamp(w.val_start))
    return {"start": iso(d.min()), "val_start": iso(val), "test_start": iso(test), "end": iso(d.max())}


def price_schema(df: pd.DataFrame) -> pa.Schema:
    fields = [pa.field("entity", pa.string()), pa.field("date", pa.timestamp("us"))]
    return pa.schema(fields + [pa.field(c, pa.float64()) for c in PRICE_COLUMNS if c in df])


class PriceCase(UseCase):
    """A long price table ``entity, date, open?, high?, low?, close, volume?``."""

    predict_keys = ("data.columns", "data.na_values", "data.missing", "data.encoding", "data.entity", "data.query",
                    "data.timezone", "data.layout")  # how predict reads --input (read_prices: source and until fixed)
    predict_warmup: ClassVar[int] = 1          # leading rows of an entity without features (they feed later ones)
    predict_warmup_why: ClassVar[str] = "the first row has no return yet"
    predict_rows: ClassVar[tuple[str, str]] = ("N rows of an entity", "forecasts")  # what N counts, what comes out

    def predict_count(self, meta, rows: int) -> int:
        """Outputs (per entity; panel: dates) from ``rows`` input rows: one per full window of ``meta.lookback``
        rows with features, which start after the ``predict_warmup`` rows without."""
        return max(0, rows - (self.predict_warmup - 1) - meta.lookback)

    def predict_rule(self, meta=None) -> str:
        k = self.predict_warmup - 1
        minus = f" - {k}" if k else ""
        rule = f"{self.predict_rows[0]} give N{minus} - lookback {self.predict_rows[1]} ({self.predict_warmup_why})"
        if meta is None:
            return rule
        return f"{rule}; lookback is {meta.lookback} in this model, so N - {k + meta.lookback}"

    def raw_schema(self, df: pd.DataFrame) -> pa.Schema:
        return price_schema(df)

    def time_column(self) -> str:
        return "date"

    def group_column(self) -> str | None:
        return "entity"

    def key_columns(self, df: pd.DataFrame) -> list[str]:
        return ["entity", "date"]

    def suite(self, cfg):
        return price_suite(cfg.validate)


@dataclass
class SeriesMeta(WindowMeta):
    lookback: int = 30
    horizon: int = 1
    target: str = "return"
    features: list[str] = field(default_factory=list)
    entities: list[str] = field(default_factory=list)
    scaler: dict = field(default_factory=dict)          # feature mean / scale, fitted before val_start
    target_scaler: dict = field(default_factory=dict)   # target mean / scale, fitted on training windows
    pretrain_entity: str = ""
    finetune_entity: str | None = None

    kind = "series"


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
    """One forecast per series, judged against the random walk; inherits monitor, promotion and replay."""

    kind = "series"
    headline_metrics = ("rmse", "rel_rmse_random_walk", "oos_r2", "directional_accuracy")
    main_baseline = "random_walk"
    benchmark = ("random_walk", "rel_rmse_random_walk", False)  # no change in price
    naive_name: ClassVar[str] = "random walk"  # the benchmark of monitor, gate and replay

    def naive_forecast(self, rows: pd.DataFrame, meta: SeriesMeta) -> np.ndarray:
        """The naive benchmark's forecast of each row's target (``meta``: the windows' metadata), from what is
        known at its date (the random walk of a return: 0). A case whose target is no return overrides it."""
        return np.zeros(len(rows))

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
