import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

ROOT = Path(__file__).resolve().parents[1]


def make_prices(n=400, seed=0, start="2015-01-01") -> pd.DataFrame:
    """A geometric random walk with consistent OHLCV (high >= open, close >= low)."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = close * np.exp(rng.normal(0, 0.003, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    dates = pd.bdate_range(start, periods=n)
    return pd.DataFrame({"Date": dates.strftime("%Y-%m-%d"), "Open": open_, "High": high, "Low": low,
                         "Price": close, "Vol": rng.integers(1_000, 5_000, n)})


WORDS = {"negative": ["awful", "hate", "broken", "terrible", "worst"],
         "neutral": ["today", "meeting", "report", "schedule", "update"],
         "positive": ["love", "great", "awesome", "happy", "best"]}


def make_texts(n=600, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = ["negative", "neutral", "positive"][i % 3]
        words = rng.choice(WORDS[label], 3).tolist() + rng.choice(["the", "a", "car", "phone", "flight"], 3).tolist()
        brand = " my iphone" if i % 5 == 0 else ""
        rows.append({"body": f"tweet {i} " + " ".join(words) + brand, "sentiment": label[:3].upper()})
    return pd.DataFrame(rows)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A fresh project folder (params.yaml copied) as the working directory."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path
