"""Use case ``stocks``: forecast one price series (S&P 500 from ``arch``, or a user's file) from a lookback of
daily log-return features; transfer to a second series (NASDAQ). Judged against the random walk and the
historical mean on returns, with Diebold–Mariano, Clark–West and Pesaran–Timmermann tests. Everything but the
name, the built-in data and the defaults is the series kind's (``r2n2.cases.series.SeriesCase``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .series import ForecastWindowConfig, SeriesCase, SeriesConfig, load_builtin_stocks

__all__ = ["StocksCase", "StocksConfig"]


@dataclass
class StocksWindowConfig(ForecastWindowConfig):
    pretrain_entity: str | None = "sp500"   # the main model's series (default: the first entity)
    finetune_entity: str | None = "nasdaq"  # transfer target (null or absent: no fine-tuning)


@dataclass
class StocksConfig(SeriesConfig):
    window: StocksWindowConfig = field(default_factory=StocksWindowConfig)


class StocksCase(SeriesCase):
    name = "stocks"
    config_cls = StocksConfig
    builtin = load_builtin_stocks
