"""Window: validated data -> model-ready arrays without leakage.

Stocks: per-entity log-return features (open/high/low/close against the previous close, log volume change;
whatever columns exist), a target ``horizon`` days ahead, chronological train/val/test splits separated by a
gap of one lookback, and a scaler fitted on training rows only. Windows are never materialised: a window is
``features[end - lookback + 1 : end + 1]`` of one feature array, produced on demand by ``StockWindows``.

Sentiment: texts split per domain (source = tweets not matching ``finetune_pattern``, target = matching
ones, e.g. Apple), stratified by label; duplicate texts always land in the same split; a Hugging Face
``tokenizers`` BPE tokenizer is trained on training texts only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import CaseConfig
from ..errors import ConfigError, DataError
from .sources import LABELS, read_parquet, write_parquet_atomic
from .validate import write_json_atomic

__all__ = ["window", "stock_features", "StockWindows", "load_stock_split", "train_tokenizer",
           "TextBatches", "StockBatches", "FEATURE_NAMES", "scale_features",
           "EntityWindows", "load_entity_split"]

FEATURE_NAMES = {"open": "ret_open", "high": "ret_high", "low": "ret_low", "close": "ret_close",
                 "volume": "dlog_volume"}
SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------------------------------------- stocks
def stock_features(df: pd.DataFrame, *, horizon: int, target: str) -> pd.DataFrame:
    """One entity's prices (sorted by date) -> features and target per day (first day and last
    ``horizon`` days have NaN and are dropped by the caller)."""
    close = df["close"].to_numpy(float)
    prev = np.concatenate([[np.nan], close[:-1]])
    out = pd.DataFrame({"date": df["date"].to_numpy()})
    for col, name in FEATURE_NAMES.items():
        if col not in df:
            continue
        if col == "volume":
            v = np.log1p(df["volume"].to_numpy(float))
            out[name] = np.concatenate([[np.nan], np.diff(v)])
        else:
            out[name] = np.log(df[col].to_numpy(float) / prev)
    log_close = np.log(close)
    ahead = np.full_like(close, np.nan)
    if horizon < len(close):
        ahead[:-horizon] = log_close[horizon:] - log_close[:-horizon]  # log return over the next horizon days
    if target == "return":
        out["target"] = ahead
    elif target == "close":
        shifted = np.full_like(close, np.nan)
        shifted[:-horizon] = log_close[horizon:]
        out["target"] = shifted
    else:  # volatility: root mean squared daily log return over the next horizon days
        r = np.concatenate([np.diff(log_close), [np.nan]])  # r[t] = return from t to t+1
        sq = pd.Series(r ** 2).rolling(horizon).mean().shift(-(horizon - 1)).to_numpy()
        out["target"] = np.sqrt(sq)
    out["base_log_close"] = log_close  # to turn a 'close' forecast back into a return
    return out


def _split_ends(n_rows: int, lookback: int, val_fraction: float, test_fraction: float) -> dict[str, list[int]]:
    """Window end rows per split; the first window ends at row lookback - 1, one lookback separates splits."""
    ends = np.arange(lookback - 1, n_rows)
    n = len(ends)
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    n_train = n - n_val - n_test - 2 * lookback
    if n_train < 1 or n_val < 1 or n_test < 1:
        raise DataError(f"the series has {n_rows} usable rows, too short for train/val/test windows of lookback "
                        f"{lookback} with a gap of one lookback between splits; provide more rows or lower "
                        f"window.lookback.")
    train = ends[:n_train]
    val = ends[n_train + lookback:n_train + lookback + n_val]
    test = ends[n_train + 2 * lookback + n_val:]
    return {"train": train.tolist(), "val": val.tolist(), "test": test.tolist()}


def _window_stocks(cfg: CaseConfig, df: pd.DataFrame, out_dir: Path) -> dict:
    from sklearn.preprocessing import StandardScaler

    w = cfg.window
    frames, meta_entities = [], {}
    for entity, part in df.groupby("entity", sort=False):
        part = part.sort_values("date").reset_index(drop=True)
        feats = stock_features(part, horizon=w.horizon, target=w.target)
        feats = feats.iloc[1:len(feats) - w.horizon].reset_index(drop=True)  # drop rows without features/target
        if len(feats) <= 3 * w.lookback:
            raise DataError(f"entity {entity!r} has {len(part)} rows: too short for one window of lookback "
                            f"{w.lookback} per split (needs more than {3 * w.lookback + w.horizon + 1}).")
        feats.insert(0, "entity", str(entity))
        ends = _split_ends(len(feats), w.lookback, w.val_fraction, w.test_fraction)
        split = np.full(len(feats), "", dtype=object)
        for name, idx in ends.items():
            split[idx] = name
        feats["split"] = split
        frames.append(feats)
        meta_entities[str(entity)] = {
            name: {"windows": len(idx), "first_date": str(feats["date"].iloc[idx[0]].date()),
                   "last_date": str(feats["date"].iloc[idx[-1]].date())} for name, idx in ends.items()}
    table = pd.concat(frames, ignore_index=True)
    feature_cols = [c for c in FEATURE_NAMES.values() if c in table]
    # Scalers see training rows only: every row that a training window covers, and nothing later.
    train_rows = np.zeros(len(table), dtype=bool)
    for entity, part in table.groupby("entity", sort=False):
        train_idx = part.index[part["split"] == "train"]
        if len(train_idx):
            train_rows[part.index[0]:train_idx[-1] + 1] = True
    x_scaler = StandardScaler().fit(table.loc[train_rows, feature_cols].to_numpy())
    y_scaler = StandardScaler().fit(table.loc[(table["split"] == "train").to_numpy(), ["target"]].to_numpy())
    write_parquet_atomic(table, out_dir / "features.parquet")
    meta = {"case": "stocks", "lookback": w.lookback, "horizon": w.horizon, "target": w.target,
            "features": feature_cols, "entities": list(meta_entities), "splits": meta_entities,
            "scaler": {"mean": x_scaler.mean_.tolist(), "scale": x_scaler.scale_.tolist()},
            "target_scaler": {"mean": float(y_scaler.mean_[0]), "scale": float(y_scaler.scale_[0])},
            "pretrain_entity": w.pretrain_entity if w.pretrain_entity in meta_entities else list(meta_entities)[0],
            "finetune_entity": w.finetune_entity if w.finetune_entity in meta_entities else None}
    write_json_atomic(meta, out_dir / "meta.json")
    return meta


class StockWindows:
    """Lazy (lookback, F) windows over one scaled feature array: ``ds[i] -> (x, y)`` as float32 tensors."""

    def __init__(self, features: np.ndarray, targets: np.ndarray, ends: np.ndarray, lookback: int):
        self.features = np.ascontiguousarray(features, dtype=np.float32)
        self.targets = np.asarray(targets, dtype=np.float32)
        self.ends = np.asarray(ends, dtype=np.int64)
        self.lookback = lookback
        self._offsets = np.arange(-lookback + 1, 1)

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i):
        import torch

        e = self.ends[i]
        return torch.from_numpy(self.features[e - self.lookback + 1:e + 1]), torch.tensor([self.targets[e]])

    def batch(self, idx: np.ndarray):
        """Vectorised gather of many windows at once: (n, lookback, F) and (n, 1)."""
        import torch

        rows = self.ends[idx][:, None] + self._offsets  # (n, 1) + (L,) -> (n, L)
        return torch.from_numpy(self.features[rows]), torch.from_numpy(self.targets[self.ends[idx]][:, None])


def scale_features(table: pd.DataFrame, meta: dict) -> np.ndarray:
    x = table[meta["features"]].to_numpy(float)
    return (x - np.asarray(meta["scaler"]["mean"])) / np.asarray(meta["scaler"]["scale"])


def load_stock_split(table: pd.DataFrame, meta: dict, entity: str, split: str) -> StockWindows:
    part = table[table["entity"] == entity].reset_index(drop=True)
    if part.empty:
        raise DataError(f"no stock windows for entity {entity!r}; entities: {', '.join(meta['entities'])}.")
    ts = meta["target_scaler"]
    y = (part["target"].to_numpy(float) - ts["mean"]) / ts["scale"]
    ends = np.flatnonzero(part["split"].to_numpy() == split)
    return StockWindows(scale_features(part, meta), y, ends, meta["lookback"])


class EntityWindows:
    """Multi-entity windows aligned on the dates every entity shares (for ``MultiEntityR2N2``):
    ``batch(idx)`` -> x (n, E, lookback, F) and y (n, E, 1). ``dates[ends]`` are the windows' last days."""

    def __init__(self, features: np.ndarray, targets: np.ndarray, ends: np.ndarray, lookback: int, dates,
                 entities: list[str]):
        self.features = np.ascontiguousarray(features, dtype=np.float32)  # (E, N, F)
        self.targets = np.ascontiguousarray(np.asarray(targets, dtype=np.float32).T)  # (N, E)
        self.ends, self.lookback = np.asarray(ends, dtype=np.int64), lookback
        self.dates, self.entities = np.asarray(dates), list(entities)
        self._offsets = np.arange(-lookback + 1, 1)

    def __len__(self) -> int:
        return len(self.ends)

    def batch(self, idx: np.ndarray):
        import torch

        rows = self.ends[idx][:, None] + self._offsets  # (n, L)
        x = self.features[:, rows]  # (E, n, L, F)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2, 3))), \
            torch.from_numpy(self.targets[self.ends[idx]][:, :, None])  # (n, E, L, F), (n, E, 1)


def load_entity_split(table: pd.DataFrame, meta: dict, split: str, *, split_entity: str | None = None) -> EntityWindows:
    """Align every entity on their common dates; a window's split is that of ``split_entity``'s row."""
    entities = meta["entities"]
    split_entity = split_entity or meta["pretrain_entity"]
    parts = {e: table[table["entity"] == e].set_index("date") for e in entities}
    common = sorted(set.intersection(*(set(p.index) for p in parts.values())))
    if len(common) < meta["lookback"]:
        raise DataError(f"the entities share only {len(common)} dates, fewer than one window of "
                        f"{meta['lookback']} days; multi-entity mode needs aligned series.")
    ts = meta["target_scaler"]
    feats = np.stack([scale_features(parts[e].loc[common], meta) for e in entities])  # (E, N, F)
    targets = np.stack([(parts[e].loc[common, "target"].to_numpy(float) - ts["mean"]) / ts["scale"]
                        for e in entities])  # (E, N)
    labels = parts[split_entity].loc[common, "split"].to_numpy()
    ends = np.flatnonzero(labels == split)
    ends = ends[ends >= meta["lookback"] - 1]
    return EntityWindows(feats, targets, ends, meta["lookback"], common, entities)


# ---------------------------------------------------------------------------------------------- text
def _group_split(keys: pd.Series, labels: pd.Series, val: float, test: float, seed: int) -> pd.Series:
    """Stratified split of unique texts; every duplicate of a text follows its first occurrence."""
    from sklearn.model_selection import train_test_split

    first = pd.DataFrame({"key": keys, "label": labels}).drop_duplicates("key")
    strat = first["label"] if first["label"].value_counts().min() >= 3 else None
    try:
        rest, test_keys = train_test_split(first, test_size=test, stratify=strat, random_state=seed)
        strat2 = rest["label"] if strat is not None and rest["label"].value_counts().min() >= 2 else None
        train_keys, val_keys = train_test_split(rest, test_size=val / (1 - test), stratify=strat2,
                                                random_state=seed)
    except ValueError as exc:
        raise DataError(f"cannot split {len(first)} unique texts into train/val/test: {exc}") from None
    where = {**{k: "train" for k in train_keys["key"]}, **{k: "val" for k in val_keys["key"]},
             **{k: "test" for k in test_keys["key"]}}
    return keys.map(where)


def train_tokenizer(texts, vocab_size: int):
    """BPE tokenizer (Hugging Face ``tokenizers``), lower-cased, links replaced by one " url " word,
    [PAD]=0 and [UNK]=1."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(),
                                           normalizers.Replace(Regex(r"https?://\S+"), " url ")])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]"], min_frequency=2,
                                  show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    return tok


def _window_sentiment(cfg: CaseConfig, df: pd.DataFrame, out_dir: Path) -> dict:
    w = cfg.window
    try:
        pattern = re.compile(w.finetune_pattern, re.IGNORECASE)
    except re.error as exc:
        raise DataError(f"sentiment.window.finetune_pattern is not a valid regular expression: {exc}.") from None
    df = df.reset_index(drop=True)
    df["domain"] = np.where(df["text"].str.contains(pattern), "target", "source")
    df["label_id"] = df["label"].map({l: i for i, l in enumerate(LABELS)}).astype("int64")
    key = df["text"].str.lower().str.strip()
    df["split"] = ""
    for domain, part in df.groupby("domain"):
        if len(part) < 30:
            df.loc[part.index, "split"] = "train"  # too few to split; such a domain is skipped for transfer
            continue
        df.loc[part.index, "split"] = _group_split(key[part.index], part["label"], w.val_fraction,
                                                   w.test_fraction, w.seed).to_numpy()
    train_texts = df.loc[df["split"] == "train", "text"]
    tok = train_tokenizer(train_texts, w.vocab_size)
    encs = tok.encode_batch(df["text"].tolist())
    df["ids"] = [e.ids[:w.max_tokens] or [1] for e in encs]
    tok_path = out_dir / "tokenizer.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".tokenizer.json.tmp"
    tok.save(str(tmp))
    tmp.replace(tok_path)
    write_parquet_atomic(df[["text", "label", "label_id", "domain", "split", "ids"]], out_dir / "texts.parquet")
    sizes = {d: {s: int(((df["domain"] == d) & (df["split"] == s)).sum()) for s in SPLITS}
             for d in ("source", "target")}
    meta = {"case": "sentiment", "labels": list(LABELS), "vocab_size": tok.get_vocab_size(), "pad_id": 0,
            "max_tokens": w.max_tokens, "splits": sizes, "tokenizer": str(tok_path),
            "label_counts": df.groupby("split")["label"].value_counts().unstack(fill_value=0).to_dict("index")}
    write_json_atomic(meta, out_dir / "meta.json")
    return meta


@dataclass
class StockBatches:
    """Mini-batches of stock windows: ``iter_epoch(e)`` yields (x (B, L, F), None, y (B, 1)).

    Shuffling is seeded by (seed, epoch) alone, so a resumed run sees exactly the batches it would have."""

    windows: StockWindows
    batch_size: int
    shuffle: bool = False
    seed: int = 0

    def __len__(self) -> int:
        return (len(self.windows) + self.batch_size - 1) // self.batch_size

    def targets(self) -> np.ndarray:
        return self.windows.targets[self.windows.ends]  # (n,) or, for entity windows, (n, E)

    def iter_epoch(self, epoch: int = 0, *, rank: int = 0, world: int = 1):
        """This rank's batches. The epoch order comes from ``DistributedSampler`` (seeded by seed and epoch);
        with ``world`` ranks each takes ``batch_size // world`` windows per step, so the union of the ranks'
        k-th batches is exactly the single-process k-th batch."""
        from torch.utils.data import DistributedSampler

        n = len(self.windows)
        if world > 1 and self.batch_size % world:
            raise ConfigError(f"train.batch_size {self.batch_size} must be divisible by the {world} processes.")
        sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=self.shuffle, seed=self.seed,
                                     drop_last=False)
        sampler.set_epoch(epoch)
        order = np.fromiter(iter(sampler), dtype=np.int64) if n else np.zeros(0, dtype=np.int64)
        local = self.batch_size // world
        for i in range(0, len(order), local):
            x, y = self.windows.batch(order[i:i + local])
            yield x, None, y


@dataclass
class TextBatches:
    """Length-bucketed, right-padded batches of token ids: ``iter_epoch(e)`` yields
    (ids (B, T), lengths (B,), labels (B,)); shuffled per (seed, epoch) when ``shuffle``."""

    ids: list
    labels: np.ndarray
    batch_size: int
    shuffle: bool = False
    seed: int = 0

    def __len__(self) -> int:
        return (len(self.ids) + self.batch_size - 1) // self.batch_size

    def targets(self) -> np.ndarray:
        return np.asarray(self.labels)[self.order()]

    def iter_epoch(self, epoch: int = 0, *, rank: int = 0, world: int = 1):
        """This rank's batches; with ``world`` ranks every global batch is split rank::world (global
        batches smaller than ``world`` are skipped so all ranks take the same number of steps)."""
        import torch

        lengths = np.array([len(x) for x in self.ids])
        if self.shuffle:  # shuffle, then sort stably by length within chunks of 50 batches: random yet padded little
            rng = np.random.default_rng([self.seed, epoch])
            perm = rng.permutation(len(lengths))
            chunk = self.batch_size * 50
            order = np.concatenate([perm[i:i + chunk][np.argsort(lengths[perm[i:i + chunk]], kind="stable")]
                                    for i in range(0, len(perm), chunk)]) if len(perm) else perm
        else:
            order = self.order()
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        labels = np.asarray(self.labels)
        if world > 1:
            batches = [b[rank::world] for b in batches if len(b) >= world]
        for b in batches:
            T = int(lengths[b].max())
            out = np.zeros((len(b), T), dtype=np.int64)
            for row, i in enumerate(b):
                out[row, :lengths[i]] = self.ids[i]
            yield torch.from_numpy(out), torch.from_numpy(lengths[b]), torch.from_numpy(labels[b])

    def order(self) -> np.ndarray:
        """Row order in which an unshuffled iteration yields examples (to map predictions back)."""
        lengths = np.array([len(x) for x in self.ids])
        return np.argsort(lengths, kind="stable")


# ---------------------------------------------------------------------------------------------- stage
def window(case: str, cfg: CaseConfig, validated_path: str | Path, out_dir: str | Path) -> dict:
    """Build the case's windows / tokenised splits under ``out_dir`` (Parquet + meta.json)."""
    df = read_parquet(validated_path, f"validated {case} data")
    out_dir = Path(out_dir)
    if case == "stocks":
        return _window_stocks(cfg, df, out_dir)
    return _window_sentiment(cfg, df, out_dir)
