"""Use-case adapters: turn a case's windows into batch sources and fill the model config from the data.

``role`` is "pretrain" (the main model's data: S&P 500, or non-Apple tweets) or "target" (the transfer
target: NASDAQ, or Apple tweets).
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from .config import CaseConfig
from .data.sources import read_parquet
from .data.window import StockBatches, TextBatches, load_entity_split, load_stock_split
from .errors import DataError
from .models.config import ModelConfig

__all__ = ["CaseData"]


class CaseData:
    def __init__(self, case: str, cfg: CaseConfig, windows_dir: str | Path):
        self.case, self.cfg, self.dir = case, cfg, Path(windows_dir)
        meta_path = self.dir / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"{meta_path} does not exist; run `r2n2 window {case}` first.")
        self.meta = json.loads(meta_path.read_text())

    @cached_property
    def table(self) -> pd.DataFrame:
        name = "features.parquet" if self.case == "stocks" else "texts.parquet"
        return read_parquet(self.dir / name, f"{self.case} windows")

    # -- roles -------------------------------------------------------------------------------------
    def key(self, role: str) -> str | None:
        if self.case == "stocks":
            return self.meta["pretrain_entity"] if role == "pretrain" else self.meta.get("finetune_entity")
        return "source" if role == "pretrain" else "target"

    def has_target(self) -> bool:
        key = self.key("target")
        if key is None:
            return False
        if self.case == "stocks":
            return key in self.meta["entities"]
        sizes = self.meta["splits"].get("target", {})
        return all(sizes.get(s, 0) > 0 for s in ("train", "val", "test"))

    def rows(self, role: str, split: str) -> pd.DataFrame:
        """The table rows of a role/split (stocks: rows whose window ends there)."""
        t = self.table
        col = "entity" if self.case == "stocks" else "domain"
        part = t[(t[col] == self.key(role))].reset_index(drop=True)
        return part[part["split"] == split].reset_index(drop=True)

    def batches(self, role: str, split: str, *, batch_size: int, shuffle: bool = False, seed: int = 0,
                fraction: float = 1.0):
        if self.case == "stocks":
            if self.cfg.model.entities:  # all entities at once, aligned on dates; the role picks the split labels
                windows = load_entity_split(self.table, self.meta, split, split_entity=self.key(role))
            else:
                windows = load_stock_split(self.table, self.meta, self.key(role), split)
            if fraction < 1.0:  # the most recent share of the training windows (a small target set)
                keep = max(1, int(round(len(windows.ends) * fraction)))
                windows.ends = windows.ends[-keep:]
            return StockBatches(windows, batch_size, shuffle, seed)
        part = self.rows(role, split)
        if fraction < 1.0:
            part = part.sample(frac=fraction, random_state=seed).reset_index(drop=True)
        if part.empty:
            raise DataError(f"no {self.case} texts for {role}/{split}.")
        return TextBatches([np.asarray(ids, dtype=np.int64) for ids in part["ids"]],
                           part["label_id"].to_numpy(np.int64), batch_size, shuffle, seed)

    # -- model -------------------------------------------------------------------------------------
    def model_config(self, base: ModelConfig | None = None) -> ModelConfig:
        """The params' model section with the data-dependent sizes filled in."""
        base = base or self.cfg.model
        if self.case == "stocks":
            return replace(base, input_size=len(self.meta["features"]), vocab_size=None, output_size=1,
                           task="regression", entities=self.cfg.model.entities)
        return replace(base, vocab_size=int(self.meta["vocab_size"]), output_size=len(self.meta["labels"]),
                       task="classification")

    def checkpoint_metadata(self) -> dict:
        """What batch prediction needs besides the weights: scalers / tokenizer and the window settings."""
        meta = {"case": self.case, "window_meta": json.dumps(self.meta)}
        if self.case == "sentiment":
            meta["tokenizer"] = (self.dir / "tokenizer.json").read_text()
        return meta
