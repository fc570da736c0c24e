"""Windowing primitives, free of any use case: price-series features and calendar splits, lazy windows over
one feature array (``StockWindows``) or over entities aligned on dates (``EntityWindows``), the batch sources
the trainer consumes (``StockBatches``, ``TextBatches``) and the BPE tokenizer.

A window is ``features[end - lookback + 1 : end + 1]`` of one feature array, produced on demand, never
materialised. Splits are calendar periods shared by every entity (see ``window_splits``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError

__all__ = ["series_features", "window_splits", "series_table", "split_summary", "fit_scalers", "StockWindows",
           "load_stock_split", "train_tokenizer", "TextBatches", "StockBatches", "FEATURE_NAMES", "scale_features",
           "EntityWindows", "load_entity_split", "SPLITS"]

FEATURE_NAMES = {"open": "ret_open", "high": "ret_high", "low": "ret_low", "close": "ret_close",
                 "volume": "dlog_volume"}
SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------------------------------------- stocks
def series_features(df: pd.DataFrame, *, horizon: int, target: str) -> pd.DataFrame:
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


def window_splits(first: np.ndarray, last: np.ndarray, cuts: dict) -> np.ndarray:
    """The split of each window from the time of its first input row and of its target.

    A window belongs to a split only if its whole span, first input to target, lies inside that split's period
    [start, next start); the windows that straddle a cut belong to none. So consecutive splits are separated by
    ``lookback + horizon - 1`` window ends and nothing of a later period reaches a training window."""
    bounds = [cuts["val_start"], cuts["test_start"]]
    first_period = np.searchsorted(np.asarray(bounds, dtype=first.dtype), first, side="right")
    last_period = np.searchsorted(np.asarray(bounds, dtype=last.dtype), last, side="right")
    out = np.full(len(first), "", dtype=object)
    for i, name in enumerate(SPLITS):
        out[(first_period == i) & (last_period == i)] = name
    return out


def series_table(df: pd.DataFrame, *, lookback: int, horizon: int, target: str, cuts: dict) -> pd.DataFrame:
    """Long prices -> one row per entity and day with features, the target ``horizon`` days ahead and the split
    of the window that ends on that day (calendar ``cuts`` shared by every entity)."""
    frames = []
    for entity, part in df.groupby("entity", sort=False):
        part = part.sort_values("date").reset_index(drop=True)
        feats = series_features(part, horizon=horizon, target=target)
        dates = feats["date"].to_numpy()
        feats["target_date"] = pd.Series(dates).shift(-horizon).to_numpy()
        feats = feats.iloc[1:len(feats) - horizon].reset_index(drop=True)  # rows with features and a target
        if feats.empty:
            continue
        first = pd.Series(feats["date"].to_numpy()).shift(lookback - 1).to_numpy()
        split = window_splits(first, feats["target_date"].to_numpy(), _cut_values(cuts, dates.dtype))
        split[:lookback - 1] = ""  # no full window behind these rows
        feats["split"] = split
        feats.insert(0, "entity", str(entity))
        frames.append(feats)
    if not frames:
        raise DataError("no entity has enough rows for one window.")
    return pd.concat(frames, ignore_index=True)


def _cut_values(cuts: dict, dtype) -> dict:
    return {k: np.datetime64(pd.Timestamp(v), "us").astype(dtype) for k, v in cuts.items()}


def split_summary(table: pd.DataFrame, by: str, time: str) -> dict[str, dict]:
    """{group: {split: {"n", "first", "last"}}} of window ends (ISO dates or arrival indices)."""
    out: dict[str, dict] = {}
    for key, part in table.groupby(by, sort=False):
        out[str(key)] = {}
        for name in SPLITS:
            t = part.loc[part["split"] == name, time]
            out[str(key)][name] = {"n": int(len(t)), "first": _time_str(t.min()) if len(t) else None,
                                   "last": _time_str(t.max()) if len(t) else None}
    return out


def _time_str(v):
    return str(pd.Timestamp(v).date()) if isinstance(v, (pd.Timestamp, np.datetime64)) else int(v)


def fit_scalers(table: pd.DataFrame, features: list[str], val_start) -> tuple[dict, dict]:
    """Feature scaler on every row before the validation period, target scaler on training windows' targets:
    nothing of the validation or test period is seen."""
    from sklearn.preprocessing import StandardScaler

    before = (table["date"] < pd.Timestamp(val_start)).to_numpy()
    x = StandardScaler().fit(table.loc[before, features].to_numpy())
    y = StandardScaler().fit(table.loc[(table["split"] == "train").to_numpy(), ["target"]].to_numpy())
    return ({"mean": x.mean_.tolist(), "scale": x.scale_.tolist()},
            {"mean": float(y.mean_[0]), "scale": float(y.scale_[0])})


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


def scale_features(table: pd.DataFrame, meta) -> np.ndarray:
    x = table[meta.features].to_numpy(float)
    return (x - np.asarray(meta.scaler["mean"])) / np.asarray(meta.scaler["scale"])


def load_stock_split(table: pd.DataFrame, meta, entity: str, split: str) -> StockWindows:
    part = table[table["entity"] == entity].reset_index(drop=True)
    if part.empty:
        raise DataError(f"no windows for entity {entity!r}; entities: {', '.join(meta.entities)}.")
    ts = meta.target_scaler
    y = (part["target"].to_numpy(float) - ts["mean"]) / ts["scale"]
    ends = np.flatnonzero(part["split"].to_numpy() == split)
    return StockWindows(scale_features(part, meta), y, ends, meta.lookback)


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


def load_entity_split(table: pd.DataFrame, meta, split: str | None) -> EntityWindows:
    """Every entity aligned on the dates they all share; windows of ``split`` (None: every full window).
    A date's split is the calendar split of the window ending there (the same for every entity)."""
    entities = meta.entities
    parts = {e: table[table["entity"] == e].set_index("date") for e in entities}
    common = sorted(set.intersection(*(set(p.index) for p in parts.values())))
    if len(common) < meta.lookback:
        raise DataError(f"the entities share only {len(common)} dates, fewer than one window of "
                        f"{meta.lookback} days; multi-entity mode needs aligned series.")
    ts = meta.target_scaler
    feats = np.stack([scale_features(parts[e].loc[common], meta) for e in entities])  # (E, N, F)
    targets = np.stack([(parts[e].loc[common, "target"].to_numpy(float) - ts["mean"]) / ts["scale"]
                        for e in entities])  # (E, N)
    labels = parts[entities[0]].loc[common, "split"].to_numpy()
    ends = np.arange(len(common)) if split is None else np.flatnonzero(labels == split)
    ends = ends[ends >= meta.lookback - 1]
    return EntityWindows(feats, targets, ends, meta.lookback, common, entities)


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
