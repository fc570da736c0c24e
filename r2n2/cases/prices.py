"""What every price kind shares (``r2n2.cases.series`` one forecast per series, ``r2n2.cases.crosssection`` one
score per stock and date): the built-in index data, the price-table ingest and validation (``PriceCase``), the
window configuration and calendar cut dates, and the window metadata of price features (``SeriesMeta``). It imports
no kind's scoring, so a kind's stages do not depend on another kind's code.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from .base import UseCase, WindowMeta, check_choice, check_range, fraction_cuts, iso
from ..data.sources import read_prices
from ..data.validate import price_suite
from ..errors import ConfigError, DataError

__all__ = ["PRICE_COLUMNS", "PriceCase", "SeriesMeta", "SeriesWindowConfig", "calendar_cuts", "check_calendar",
           "check_series_window", "load_builtin_stocks", "price_schema"]

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


def check_calendar(e, prefix: str) -> None:
    if not 1 <= e.periods_per_year <= 366 * 24:
        raise ConfigError(f"{prefix}.evaluate.periods_per_year must be the trading periods in a year of the data's "
                          f"calendar (252 for US equities, about 260 for FX, 365 for crypto), got "
                          f"{e.periods_per_year}.")


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
    """A long price table ``entity, date, open?, high?, low?, close, volume?``: read from the case's source or its
    built-in data (``builtin``), and predict's ``--input`` read the same way."""

    # the built-in data (``data.source: builtin``) as a long price table; None: the case has none
    builtin: ClassVar[Callable[[], pd.DataFrame] | None] = None

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

    def _builtin(self) -> pd.DataFrame:
        load = type(self).builtin
        if load is None:
            raise ConfigError(f"the {self.name} case ships no built-in data: set {self.name}.data.source to a CSV, "
                              "Parquet, folder or database of prices.")
        return load()

    def read_source(self, cfg) -> pd.DataFrame:
        return read_prices(cfg.data, name=self.name, builtin=self._builtin)

    def read_input(self, cfg, input_path: str) -> pd.DataFrame:
        """The prices of predict's ``--input``, read as the case's source is (its column mapping, layout...)."""
        return read_prices(replace(cfg.data, source=str(input_path), until=None), name=self.name,
                           builtin=self._builtin)

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
