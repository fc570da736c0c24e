"""What the two price cases share (``stocks``: one forecast per series; ``panel``: a cross-section of series):
the price-table ingest and validation, calendar cut dates, and the series window configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import ConfigError
from .base import UseCase, check_range, fraction_cuts, iso

__all__ = ["PriceCase", "SeriesWindowConfig", "calendar_cuts", "price_schema"]

PRICE_COLUMNS = ("open", "high", "low", "close", "volume")


@dataclass
class SeriesWindowConfig:
    lookback: int = 30                   # steps per window (slide 8)
    horizon: int = 1                     # predict this many days ahead
    val_start: str | None = None         # first day of the validation period (ISO); null: from val_fraction
    test_start: str | None = None        # first day of the test period (ISO); null: from test_fraction
    val_fraction: float = 0.15           # share of the calendar's dates in validation when val_start is null
    test_fraction: float = 0.15          # share of the calendar's dates in test when test_start is null


def check_series_window(w: SeriesWindowConfig, prefix: str) -> None:
    for key in ("lookback", "horizon"):
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
    """One calendar for every entity: explicit cut dates, or fractions of the union of all dates."""
    d = pd.to_datetime(dates).to_numpy()
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

    raw_kind = "prices"

    def raw_schema(self, df: pd.DataFrame) -> pa.Schema:
        return price_schema(df)

    def time_column(self) -> str:
        return "date"

    def group_column(self) -> str | None:
        return "entity"

    def key_columns(self, df: pd.DataFrame) -> list[str]:
        return ["entity", "date"]

    def suite(self, cfg):
        from ..data.validate import price_suite

        return price_suite(cfg.validate)
