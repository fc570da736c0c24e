"""The text kind: labelled texts in time (or arrival) order, a BPE tokenizer fitted on the training texts, and
a recurrent classifier. Its window metadata and data, its time splits (near-duplicates of an earlier split's
texts are excluded), its scorer (``r2n2.cases.classify.predict_texts``) and its monitor signals (text length,
the share of words unseen in training, the predicted classes, the error rate). ``sentiment`` is one case of it.

Time: texts are split by event time (a user's time column) or arrival order (``WindowMeta.time``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from .base import CaseData, Log, MonitorSignals, UseCase, WindowMeta, check_choice, check_range, window_meta_of
from .classify import evaluate_classifier, predict_file_texts, predict_texts
from ..data.sources import read_texts
from ..data.textkey import near_duplicate_keys
from ..data.validate import text_suite
from ..data.window import SPLITS, TextBatches, train_tokenizer
from ..errors import ConfigError, DataError
from ..io import write_parquet_atomic, write_with
from ..models.config import ModelConfig

__all__ = ["TextCase", "TextWindowConfig", "TextMeta", "TextData", "time_splits", "label_ids", "encode_texts",
           "source_domain", "text_frame", "text_vocab", "text_words", "text_signals", "LABELS"]

LABELS = ("negative", "neutral", "positive")  # the class set of the text kind, in class-id order
_WORD = re.compile(r"\w+")


@dataclass
class TextWindowConfig:
    vocab_size: int = 8000               # BPE vocabulary, trained on training texts only
    max_tokens: int = 64                 # longer texts are truncated
    finetune_pattern: str = r"\bapple|aapl|iphone|ipad|\bmac(?:book)?\b|itunes|\bios\b"  # transfer target domain
    val_fraction: float = 0.15           # share of the texts (by time) in validation
    test_fraction: float = 0.15          # share of the texts (by time) in test: the newest
    cuts: str = "fixed"                  # fixed: the fractions above (research) | rolling: cuts that follow the
    #                                      data (deployment): the newest holdout_texts are the promotion slice,
    #                                      the val_texts before them early stopping, the rest training
    val_texts: int = 3000                # rolling: texts of early stopping
    holdout_texts: int = 2000            # rolling: texts of the promotion slice


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
    table_file = "texts.parquet"

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


def text_batches(rows: pd.DataFrame, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> TextBatches:
    return TextBatches([np.asarray(ids, dtype=np.int64) for ids in rows["ids"]],
                       rows["label_id"].to_numpy(np.int64), batch_size, shuffle, seed)


def text_schema(df: pd.DataFrame) -> pa.Schema:
    fields = [pa.field("text", pa.string()), pa.field("label", pa.string())]
    if "confidence" in df:
        fields.append(pa.field("confidence", pa.float64()))
    time_type = pa.timestamp("us") if pd.api.types.is_datetime64_any_dtype(df["time"]) else pa.int64()
    return pa.schema(fields + [pa.field("time", time_type)])


def time_cuts(times: pd.Series, w: "TextWindowConfig") -> dict:
    """Cut points of the time axis (ISO dates for timestamps, else indices): at fractions of the texts (fixed),
    or the newest ``holdout_texts`` and the ``val_texts`` before them (rolling)."""
    t = np.sort(times.to_numpy())
    n = len(t)
    if w.cuts == "rolling":
        if n <= w.val_texts + w.holdout_texts:
            raise DataError(f"rolling cuts need more than window.val_texts {w.val_texts} + holdout_texts "
                            f"{w.holdout_texts} texts; the data holds {n}.")
        val, test = t[n - w.holdout_texts - w.val_texts], t[n - w.holdout_texts]
    else:
        val, test = t[int(n * (1 - w.val_fraction - w.test_fraction))], t[int(n * (1 - w.test_fraction))]
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


def text_words(texts) -> list[list[str]]:
    """Lower-cased word tokens (regex ``\\w+``) of each text: the unit of the length and new-word signals."""
    return [_WORD.findall(str(x).lower()) for x in texts]


def text_vocab(texts) -> set[str]:
    """Every word of ``texts`` (a model's training period): the reference of the new-word rate."""
    return {w for ws in text_words(texts) for w in ws}


def text_frame(texts: pd.DataFrame, pred, vocab: set[str]) -> pd.DataFrame:
    """The monitor's per-text frame: ``time``, ``length`` (words), ``new_word_rate`` (share of words not in
    ``vocab``), ``pred`` (class id) and ``loss`` (0/1 error where the label has arrived, else NaN).

    ``texts`` has columns ``time``, ``text`` and ``label_id`` (NaN: not labelled yet); ``pred`` pairs with it row
    by row. The deployed monitor and the replay both build their frames here."""
    words = text_words(texts["text"])
    pred = np.asarray(pred)
    label = texts["label_id"].to_numpy(dtype=float)
    labelled = np.isfinite(label)  # accuracy only where the label has arrived
    return pd.DataFrame({"time": texts["time"].to_numpy(), "length": [len(ws) for ws in words],
                         "new_word_rate": [float(np.mean([w not in vocab for w in ws])) if ws else 0.0
                                           for ws in words],
                         "pred": pred, "loss": np.where(labelled, pred != np.nan_to_num(label, nan=-1), np.nan)})


def text_signals(n_classes: int) -> MonitorSignals:
    """The text signals, shared by the deployed monitor and the replay: inputs (length, share of unseen words),
    the predicted classes (chi-square) and the error rate on labelled texts (no benchmark). New-word rates are
    judged against the validation period: a training text's words are in the vocabulary by definition.
    ``monitor.window`` counts 30 texts per unit (a window of 60 is 1,800 texts)."""
    return MonitorSignals(inputs=("length", "new_word_rate"), time="time", kinds={"prediction": "categorical"},
                          n_classes={"prediction": n_classes}, bench=False, val_inputs=("new_word_rate",),
                          window_unit=30)


class TextCase(UseCase):
    """Labelled texts, split by time; subclasses set ``name``, ``config_cls`` and ``builtin`` (the built-in
    corpus loader). Inherits windowing, evaluation, monitor, promotion and replay from this kind."""

    kind = "text"
    headline_metrics = ("macro_f1", "accuracy", "macro_recall")
    main_baseline = "tfidf_logreg"
    benchmark = ("majority", "macro_f1", True)  # every text the most frequent training label
    metric = ("val_macro_f1", True)
    builtin: ClassVar[Callable[[], pd.DataFrame] | None] = None
    probabilities = True  # predict writes class probabilities, temperature-scaled as the evaluate stage fitted
    predict_keys = ("data.columns", "data.na_values", "data.encoding")  # how predict reads --input (columns: text)
    labels: ClassVar[tuple[str, ...]] = LABELS  # the classes, in class-id order (validation, replay, reports)

    def check_config(self, cfg: Any, prefix: str) -> None:
        w = cfg.window
        check_range(prefix, "window.val_fraction", w.val_fraction, 0, 1, lo_open=True)
        check_range(prefix, "window.test_fraction", w.test_fraction, 0, 1, lo_open=True)
        if w.val_fraction + w.test_fraction >= 0.9:
            raise ConfigError(f"{prefix}.window.val_fraction + test_fraction must be below 0.9.")
        try:
            re.compile(w.finetune_pattern)
        except re.error as exc:
            raise ConfigError(f"{prefix}.window.finetune_pattern is not a valid regular expression: {exc}.") from None
        check_choice(prefix, "window.cuts", w.cuts, ("fixed", "rolling"))
        for key in ("vocab_size", "max_tokens", "val_texts", "holdout_texts"):
            if getattr(w, key) < 2:
                raise ConfigError(f"{prefix}.window.{key} must be >= 2, got {getattr(w, key)}.")

    # -- ingest / validate -----------------------------------------------------------------------
    def read_source(self, cfg: Any) -> pd.DataFrame:
        return read_texts(cfg.data, name=self.name, builtin=self.builtin)

    def raw_schema(self, df: pd.DataFrame) -> pa.Schema:
        return text_schema(df)

    def time_column(self) -> str:
        return "time"

    def key_columns(self, df: pd.DataFrame) -> list[str]:
        return ["time", "text", "label"]

    def suite(self, cfg: Any):
        return text_suite(cfg.validate, labels=self.labels)

    # -- windows ---------------------------------------------------------------------------------
    def build_windows(self, cfg: Any, df: pd.DataFrame, out_dir: Path, log: Log) -> TextMeta:
        w = cfg.window
        df = df.sort_values("time", kind="stable").reset_index(drop=True)
        cuts = time_cuts(df["time"], w)
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
                        cut_rule=w.cuts,
                        vocab_size=tok.get_vocab_size(), max_tokens=w.max_tokens,
                        label_counts={s: {k: int(v) for k, v in row.items()} for s, row in counts.iterrows()},
                        near_duplicates=nd)
        meta.save(out_dir / "meta.json")
        return meta

    def load(self, cfg: Any, windows_dir: Path) -> TextData:
        return TextData(self, cfg, windows_dir)

    def example(self, folder: Path, *, seed: int = 0) -> dict:
        """900 labelled texts, each label with its own words, every fifth in the transfer target's domain (a
        word the case's ``finetune_pattern`` matches, or "iphone")."""
        rng = np.random.default_rng(seed)
        words = {"negative": ["awful", "hate", "broken", "terrible", "worst"],
                 "neutral": ["today", "meeting", "report", "schedule", "update"],
                 "positive": ["love", "great", "awesome", "happy", "best"]}
        pattern = self.config_cls().window.finetune_pattern
        target = "iphone" if re.search(pattern, "my iphone", re.IGNORECASE) else "examplebrand"
        rows = []
        for i in range(900):
            label = LABELS[i % 3]
            filler = rng.choice(["the", "a", "car", "phone", "flight"], int(rng.integers(1, 8)))  # lengths vary
            rare = [f"rare{int(rng.integers(0, 10**6))}"] if rng.random() < 0.3 else []  # words unseen in training
            text = " ".join([*rng.choice(words[label], 3), *filler, *rare])
            rows.append({"text": f"text {i} {text}" + (f" my {target}" if i % 5 == 0 else ""), "label": label})
        path = folder / f"example-{self.name}.csv"
        pd.DataFrame(rows).to_csv(path, index=False)
        return {"data.source": str(path), "validate.min_rows": 100, "window.vocab_size": 200,
                "window.finetune_pattern": pattern if target == "iphone" else target, "model.vocab_size": 200,
                "model.embed_size": 8, "model.hidden_size": 8, "train.epochs": 2, "finetune.epochs": 1,
                "evaluate.bootstrap": 200, "window.val_texts": 120, "window.holdout_texts": 60}

    # -- evaluate / serve ------------------------------------------------------------------------
    def evaluate(self, cfg, data: TextData, models: dict, paths, log: Log) -> dict:
        return evaluate_classifier(cfg, data, models, paths, log)

    def predict(self, model, meta: TextMeta, checkpoint_meta: dict, input_path: str, cfg, *,
                calibration: dict | None = None, sets: float | None = None) -> pd.DataFrame:
        return predict_file_texts(model, meta, checkpoint_meta, input_path, cfg, calibration=calibration, sets=sets)

    def predict_rule(self, meta: WindowMeta | None = None) -> str:
        return "one row per text of the input, in its order"

    def monitor_frame(self, cfg, data: TextData, model, ck: dict) -> tuple[pd.DataFrame, MonitorSignals]:
        mmeta = window_meta_of(ck)
        t = data.table[(data.table["domain"] == "source") & (data.table["split"] != "excluded")].reset_index(drop=True)
        t = t.tail(60000)  # the newest texts are enough for the reference and the window
        probs = predict_texts(model, ck["tokenizer"], mmeta, t["text"].tolist())
        before = t["time"] < (pd.Timestamp(mmeta.cuts["val_start"]) if mmeta.time == "date"
                              else int(mmeta.cuts["val_start"]))
        frame = text_frame(t, probs[[f"prob_{l}" for l in mmeta.labels]].to_numpy().argmax(1),
                           text_vocab(t.loc[before, "text"]))
        return frame[frame["loss"].notna()].reset_index(drop=True), text_signals(len(mmeta.labels))

    def replay_check(self, *, batch: int | None = None) -> None:
        if batch is not None and batch < 1:
            raise ConfigError(f"--batch (texts per arrival batch) must be >= 1, got {batch}.")

    def promotion_scores(self, cfg, data: TextData, model, ck: dict, window: dict) -> dict:
        mmeta = window_meta_of(ck)
        t = data.table
        conv = pd.Timestamp if data.meta.time == "date" else int
        part = t[(t["domain"] == "source") & (t["split"] != "excluded") & (t["time"] >= conv(window["start"]))
                 & (t["time"] <= conv(window["end"]))]
        probs = predict_texts(model, ck["tokenizer"], mmeta, part["text"].tolist()) if len(part) else None
        pred = (probs[[f"prob_{l}" for l in mmeta.labels]].to_numpy().argmax(1) if probs is not None
                else np.zeros(0, dtype=int))
        train = t.loc[(t["domain"] == "source") & (t["split"] == "train"), "label_id"]
        majority = int(train.mode().iloc[0]) if len(train) else 0  # of the training texts of these windows
        return {"actual": part["label_id"].to_numpy(), "pred": pred, "kind": "classifier",
                "n_classes": len(mmeta.labels), "horizon": 1, "benchmark": np.full(len(part), majority),
                "benchmark_id": "majority class"}


def _span(times: pd.Series) -> dict:
    if times.empty:
        return {"n": 0, "first": None, "last": None}
    f = (lambda v: pd.Timestamp(v).isoformat()) if pd.api.types.is_datetime64_any_dtype(times) else int
    return {"n": int(len(times)), "first": f(times.min()), "last": f(times.max())}
