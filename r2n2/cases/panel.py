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
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .crosssection import CrossSectionCase, CrossSectionConfig

__all__ = ["PanelCase", "PanelConfig", "load_builtin_panel"]

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


@dataclass
class PanelConfig(CrossSectionConfig):
    """The kind's sections and defaults (``r2n2.cases.crosssection.CrossSectionConfig``)."""


class PanelCase(CrossSectionCase):
    name = "panel"
    config_cls = PanelConfig
    builtin = staticmethod(load_builtin_panel)
