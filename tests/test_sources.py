"""Sources: files, folders of drops, databases, wide panels, time zones, incremental ingest and their messages."""

from __future__ import annotations

import datetime as dt
import sqlite3
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy.stats import chi2_contingency

from r2n2.cases.panel import load_builtin_panel
from r2n2.cases.sentiment import load_builtin_sentiment
from r2n2.cases.text import LABELS
from r2n2.data.sources import DataConfig, append_new, normalise_labels, read_prices, read_texts
from r2n2.errors import ConfigError, DataError


def no_builtin() -> pd.DataFrame:
    raise AssertionError("a user source must not load the built-in data")


def prices(d: DataConfig, name: str = "stocks") -> pd.DataFrame:
    return read_prices(d, name=name, builtin=no_builtin)


def texts(d: DataConfig, name: str = "sentiment") -> pd.DataFrame:
    return read_texts(d, name=name, builtin=no_builtin)


def frame(dates, closes, **extra) -> pd.DataFrame:
    return pd.DataFrame({"Date": dates, "Close": closes, **extra})


def error(fn, *args) -> str:
    with pytest.raises(DataError) as info:
        fn(*args)
    return str(info.value)


def test_config_is_defined_once():
    with pytest.raises(ConfigError, match="layout must be one of long, wide, auto, got 'diagonal'"):
        DataConfig(layout="diagonal")
    assert DataConfig(until=dt.date(2015, 6, 30)).until == "2015-06-30"  # YAML's reading of 2015-06-30
    with pytest.raises(ConfigError, match="until must be an ISO date"):
        DataConfig(until="last tuesday")
    with pytest.raises(ConfigError, match="timezone must be an IANA zone name"):
        DataConfig(timezone="Mars/Olympus")


# ------------------------------------------------------------------------------------------------- sources
def test_folder_of_drops_is_read_in_name_order(tmp_path):
    drops = tmp_path / "drops"
    drops.mkdir()
    # written out of order and in two formats: name order (ISO dates) is the order of arrival
    frame(["2024-01-08", "2024-01-09"], [3.0, 4.0]).to_parquet(drops / "2024-01-08.parquet")
    frame(["2024-01-02", "2024-01-03"], [1.0, 2.0]).to_csv(drops / "2024-01-02.csv", index=False)
    (drops / ".partial.csv.tmp").write_text("junk")  # hidden temp files of a writer are ignored
    df = prices(DataConfig(source=str(drops)))
    assert df["close"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert df["date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-02", "2024-01-03", "2024-01-08", "2024-01-09"]
    assert set(df["entity"]) == {"drops"}  # a single series is named after its folder
    assert str(df["date"].dtype) == "datetime64[us]"


def test_folder_messages(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert error(prices, DataConfig(source=str(empty))) == (
        f"data source folder {empty} is empty; put the data files in it (CSV, TSV or Parquet, for example one per "
        "daily or weekly drop, named so that name order is time order).")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.json").write_text("{}")
    (other / "sub").mkdir()
    assert error(prices, DataConfig(source=str(other))) == (
        f"data source folder {other} holds no data files (.csv, .tsv or .parquet); it has: notes.json, sub.")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    frame(["2024-01-02"], [1.0]).to_csv(mixed / "a.csv", index=False)
    pd.DataFrame({"Date": ["2024-01-03"], "Price": [2.0]}).to_csv(mixed / "b.csv", index=False)
    assert "file b.csv in data source folder" in error(prices, DataConfig(source=str(mixed)))
    assert error(prices, DataConfig(source=str(tmp_path / "nowhere.csv"))) == (
        f"data source {tmp_path / 'nowhere.csv'} does not exist.")


def _price_table() -> pd.DataFrame:
    return pd.DataFrame({"ticker": ["A", "A", "B", "B"], "day": ["2024-01-02", "2024-01-03"] * 2,
                         "px": [10.0, 11.0, 20.0, 21.0]})


def test_sqlite_url_with_query(tmp_path):
    db = tmp_path / "prices.db"
    with sqlite3.connect(db) as con:
        _price_table().to_sql("quotes", con, index=False)
    d = DataConfig(source=f"sqlite:///{db}", query="SELECT * FROM quotes WHERE ticker = 'B' ORDER BY day",
                   columns={"entity": "ticker", "date": "day", "close": "px"})
    df = prices(d)
    assert df["entity"].tolist() == ["B", "B"] and df["close"].tolist() == [20.0, 21.0]
    assert df["date"].dt.day.tolist() == [2, 3]
    bad = DataConfig(source=f"sqlite:///{db}", query="SELECT * FROM nope")
    shown = f"sqlite:///{db}" if len(f"sqlite:///{db}") <= 80 else f"sqlite:///{db}"[:77] + "..."  # a long tmp path
    assert error(prices, bad) == f"the query 'SELECT * FROM nope' on {shown} failed: no such table: nope"
    ghost = tmp_path / "ghost.db"
    assert "does not exist" in error(prices, DataConfig(source=f"sqlite:///{ghost}", query="SELECT 1"))
    assert not ghost.exists()  # SQLite was not allowed to create an empty database


def test_missing_query_and_hidden_password(tmp_path):
    assert error(prices, DataConfig(source="sqlite:///x.db")) == (
        "data source sqlite:///x.db is a database: set stocks.data.query to the SQL that selects the rows, "
        "e.g. --set stocks.data.query=\"SELECT * FROM prices\".")
    msg = error(prices, DataConfig(source="postgresql://me:s3cret@db.example/prices"))
    assert "s3cret" not in msg and "postgresql://me:***@db.example/prices" in msg
    assert "is not a database" in error(prices, DataConfig(source=str(tmp_path), query="SELECT 1"))


def test_duckdb_file(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    path = tmp_path / "market.duckdb"
    quotes_df = _price_table()
    with duckdb.connect(str(path)) as con:
        con.register("quotes_df", quotes_df)
        con.execute("CREATE TABLE quotes AS SELECT ticker, CAST(day AS DATE) AS day, px FROM quotes_df")
    d = DataConfig(source=str(path), query="SELECT ticker AS entity, day AS date, px AS close FROM quotes "
                                           "ORDER BY entity, date")
    df = prices(d)
    assert df.equals(prices(DataConfig(source=f"duckdb:///{path}", query=d.query)))
    assert df["entity"].tolist() == ["A", "A", "B", "B"] and df["close"].tolist() == [10.0, 11.0, 20.0, 21.0]
    assert str(df["date"].dtype) == "datetime64[us]"
    assert error(prices, DataConfig(source=str(path))).startswith(f"data source {path} is a database: set")
    assert "Catalog Error" in error(prices, DataConfig(source=str(path), query="SELECT * FROM nope"))


# ---------------------------------------------------------------------------------------------------- time
def test_dst_changing_offsets_give_exchange_local_dates(tmp_path):
    # A New York export: -0500 before the 8 March 2020 switch, -0400 after. 23:30 local is the next day in UTC.
    stamps = ["2020-03-05T23:30:00-05:00", "2020-03-06T23:30:00-05:00", "2020-03-09T23:30:00-04:00",
              "2020-03-10T23:30:00-04:00"]
    frame(stamps, [1.0, 2.0, 3.0, 4.0]).to_csv(tmp_path / "ny.csv", index=False)
    df = prices(DataConfig(source=str(tmp_path / "ny.csv")))
    assert df["date"].dt.strftime("%Y-%m-%d").tolist() == ["2020-03-05", "2020-03-06", "2020-03-09", "2020-03-10"]
    # the same instants seen from Tokyo fall on the next calendar day
    tokyo = prices(DataConfig(source=str(tmp_path / "ny.csv"), timezone="Asia/Tokyo"))
    assert tokyo["date"].dt.day.tolist() == [6, 7, 10, 11]


def test_mixed_offsets_and_tz_aware_parquet(tmp_path):
    # London close and New York close in one column: UTC first, then New York's calendar
    frame(["2021-06-01T16:30:00+01:00", "2021-06-01T16:00:00-04:00", "2021-06-02T02:00:00+00:00"],
          [1.0, 2.0, 3.0]).to_csv(tmp_path / "mixed.csv", index=False)
    df = prices(DataConfig(source=str(tmp_path / "mixed.csv")))
    assert df["date"].dt.strftime("%Y-%m-%d").tolist() == ["2021-06-01", "2021-06-01", "2021-06-01"]
    # a tz-aware Parquet column of closes (21:00 UTC = 16:00 or 17:00 New York)
    utc = pd.to_datetime(["2021-01-04T21:00:00Z", "2021-07-06T20:00:00Z", "2021-07-07T03:00:00Z"])
    frame(utc, [1.0, 2.0, 3.0]).to_parquet(tmp_path / "aware.parquet")
    df = prices(DataConfig(source=str(tmp_path / "aware.parquet")))
    assert df["date"].dt.strftime("%Y-%m-%d").tolist() == ["2021-01-04", "2021-07-06", "2021-07-06"]
    # dates stored as UTC midnights keep their date (converting would move each one back a day)
    midnights = pd.to_datetime(["2021-01-04", "2021-01-05"]).tz_localize("UTC")
    frame(midnights, [1.0, 2.0]).to_parquet(tmp_path / "dates.parquet")
    assert prices(DataConfig(source=str(tmp_path / "dates.parquet")))["date"].dt.day.tolist() == [4, 5]


def test_until_cuts_rows(tmp_path):
    panel = read_prices(DataConfig(until="2000-06-30"), name="panel", builtin=load_builtin_panel)
    assert panel["date"].max() == pd.Timestamp("2000-06-30")
    assert panel["date"].min() == pd.Timestamp("1990-01-02")
    pd.DataFrame({"text": ["a b", "c d", "e f"], "label": ["pos", "neg", "neu"],
                  "n": [1.0, 2.0, 3.0], "created": ["2024-01-01T10:00Z", "2024-01-02T20:00-05:00", "2024-01-03T09:00Z"]}
                 ).to_csv(tmp_path / "t.csv", index=False)
    d = DataConfig(source=str(tmp_path / "t.csv"), columns={"time": "created"}, until="2024-01-02")
    df = texts(d)
    assert df["text"].tolist() == ["a b", "c d"]  # 20:00 New York on 2 January is still 2 January there
    assert df["time"].tolist() == [pd.Timestamp("2024-01-01 05:00"), pd.Timestamp("2024-01-02 20:00")]
    assert "leave sentiment.data.until empty" in error(texts, DataConfig(source=str(tmp_path / "t.csv"),
                                                                          until="2024-01-02"))
    assert error(prices, DataConfig(source=str(tmp_path / "t.csv"), columns={"date": "created", "close": "n"},
                                    until="1999-01-01")) == (
        f"the stocks source {tmp_path / 't.csv'} has no rows on or before stocks.data.until=1999-01-01.")


# --------------------------------------------------------------------------------------------------- panels
def test_wide_panel_to_long(tmp_path):
    wide = pd.DataFrame({"Date": ["2024-01-02", "2024-01-03", "2024-01-04"],
                         "AAA": [1.0, 2.0, 3.0], "NEW": [np.nan, 5.0, 6.0]})  # NEW listed on the 3rd
    wide.to_csv(tmp_path / "wide.csv", index=False)
    df = prices(DataConfig(source=str(tmp_path / "wide.csv")), "panel")
    assert list(df.columns) == ["entity", "date", "close"]
    assert df["entity"].tolist() == ["AAA", "AAA", "AAA", "NEW", "NEW"]
    assert df["close"].tolist() == [1.0, 2.0, 3.0, 5.0, 6.0]
    assert df.equals(prices(DataConfig(source=str(tmp_path / "wide.csv"), layout="wide"), "panel"))
    wide.assign(Date=pd.to_datetime(wide["Date"])).set_index("Date").to_parquet(tmp_path / "wide.parquet")
    assert df.equals(prices(DataConfig(source=str(tmp_path / "wide.parquet")), "panel"))  # dates as the index
    # a hole inside a listed stock's history is missing data, not "not listed"
    wide.assign(AAA=[1.0, np.nan, 3.0]).to_csv(tmp_path / "hole.csv", index=False)
    assert "missing values (close: 1" in error(prices, DataConfig(source=str(tmp_path / "hole.csv")), "panel")
    # long input with an entity column stays long
    long = df.rename(columns={"entity": "Ticker"}).assign(date=df["date"].dt.strftime("%Y-%m-%d"))
    long.to_csv(tmp_path / "long.csv", index=False)
    again = prices(DataConfig(source=str(tmp_path / "long.csv"), columns={"entity": "Ticker"}), "panel")
    assert again.equals(df)


def test_builtin_panel_is_20_stocks_without_importing_skfolio(monkeypatch):
    for module in [m for m in sys.modules if m.split(".")[0] == "skfolio"]:
        monkeypatch.delitem(sys.modules, module)  # restored afterwards; other tests may have imported it
    df = load_builtin_panel()
    assert not [m for m in sys.modules if m.split(".")[0] == "skfolio"]
    assert df["entity"].nunique() == 20 and len(df) == 20 * 8313
    assert df.groupby("entity").size().eq(8313).all() and df["close"].notna().all()
    assert {"AAPL", "XOM", "JPM"} <= set(df["entity"]) and df["close"].gt(0).all()
    assert df.groupby("entity")["date"].is_monotonic_increasing.all()


# ---------------------------------------------------------------------------------------------------- texts
@pytest.fixture(scope="module")
def tweets() -> pd.DataFrame:
    return read_texts(DataConfig(), name="sentiment", builtin=load_builtin_sentiment)


def test_builtin_tweets_arrive_independently_of_label(tweets):
    assert tweets["time"].tolist() == list(range(len(tweets))) and str(tweets["time"].dtype) == "int64"
    first = tweets["label"].iloc[:1000].value_counts(normalize=True)
    last = tweets["label"].iloc[-1000:].value_counts(normalize=True)
    assert (first - last).abs().max() < 0.05  # the raw table is sorted by label: there it would be ~1.0
    deciles = pd.cut(tweets["time"], 10, labels=False)
    assert chi2_contingency(pd.crosstab(deciles, tweets["label"]))[1] > 0.01
    raw_order = load_builtin_sentiment()
    assert raw_order["text"].iloc[:50].tolist() == load_builtin_sentiment()["text"].iloc[:50].tolist()
    assert set(tweets["label"]) == set(LABELS)


def test_labels_normalised_and_arrival_index(tmp_path):
    assert normalise_labels(pd.Series([-1.0, 0.0, 1.0])).tolist() == ["negative", "neutral", "positive"]
    assert normalise_labels(pd.Series(["NEG", " Neu", "pos", "-1.0", "+1", "0", "meh"])).tolist() == [
        "negative", "neutral", "positive", "negative", "positive", "neutral", "meh"]
    pd.DataFrame({"body": ["good day", "bad day", "a day"], "score": [1.0, -1.0, 0.0]}).to_csv(
        tmp_path / "t.csv", index=False)
    df = texts(DataConfig(source=str(tmp_path / "t.csv"), columns={"text": "body", "label": "score"}))
    assert list(df.columns) == ["text", "label", "time"]
    assert df["label"].tolist() == ["positive", "negative", "neutral"]
    assert df["time"].tolist() == [0, 1, 2] and str(df["time"].dtype) == "int64"


def test_ingest_writes_the_canonical_schema(project):
    from flows.cli import main

    pd.DataFrame({"text": ["x y", "z w"], "label": [1, -1]}).to_csv("t.csv", index=False)
    assert main(["ingest", "sentiment", "--set", "sentiment.data.source=t.csv"]) == 0
    schema = pq.read_schema("data/raw/sentiment.parquet")
    assert [(f.name, str(f.type)) for f in schema] == [("text", "string"), ("label", "string"), ("time", "int64")]


# ------------------------------------------------------------------------------------------- increments
def test_append_new_adds_only_newer_rows_and_dedups():
    day = pd.Timestamp
    held = pd.DataFrame({"entity": ["A", "A", "B"], "date": [day("2024-01-02"), day("2024-01-03"),
                                                             day("2024-01-02")], "close": [1.0, 2.0, 10.0]})
    new = pd.DataFrame({"entity": ["A", "A", "B", "B", "B", "C"],
                        "date": [day("2024-01-03"), day("2024-01-04"), day("2024-01-01"), day("2024-01-03"),
                                 day("2024-01-03"), day("2024-01-02")],
                        "close": [99.0, 3.0, 9.0, 11.0, 11.5, 7.0]})
    combined, added = append_new(held, new, time_col="date", group_col="entity", key_cols=["entity", "date"])
    # A's 3 Jan restatement and B's late 1 Jan row are not newer; B's two different 3 Jan rows are both kept
    # (validation refuses the duplicate date rather than ingest choosing one silently); C is new
    assert added == 4
    assert combined["entity"].tolist() == ["A", "A", "A", "B", "B", "B", "C"]
    assert combined["close"].tolist() == [1.0, 2.0, 3.0, 10.0, 11.0, 11.5, 7.0]
    exact, n_exact = append_new(held, pd.concat([new, new.iloc[[1]]]), time_col="date", group_col="entity",
                                key_cols=["entity", "date"])
    assert n_exact == 4  # an exact repeat of a row (overlapping drops) is dropped
    assert combined.iloc[:2].equals(held.iloc[:2])
    again, zero = append_new(combined, new, time_col="date", group_col="entity", key_cols=["entity", "date"])
    assert zero == 0 and again.equals(combined)
    first, n = append_new(None, held, time_col="date", group_col="entity", key_cols=["entity", "date"])
    assert n == 3 and first.equals(held)
    # without a group, against the newest held time; a late row at exactly that time is not newer
    held_texts = pd.DataFrame({"text": ["a", "b"], "time": [day("2024-01-02 10:00"), day("2024-01-02 11:00")]})
    new_texts = pd.DataFrame({"text": ["late", "c"], "time": [day("2024-01-02 11:00"), day("2024-01-02 12:00")]})
    both, n = append_new(held_texts, new_texts, time_col="time", group_col=None, key_cols=["time", "text"])
    assert n == 1 and both["text"].tolist() == ["a", "b", "c"]
    with pytest.raises(DataError, match="an increment must have the same columns"):
        append_new(held, new.drop(columns="close"), time_col="date", group_col="entity", key_cols=["date"])


def test_append_new_on_a_growing_folder_of_texts(tmp_path):
    drops = tmp_path / "tweets"
    drops.mkdir()
    pd.DataFrame({"text": ["a", "b"], "label": ["pos", "neg"]}).to_csv(drops / "week01.csv", index=False)
    d = DataConfig(source=str(drops))
    held, n = append_new(None, texts(d), time_col="time", group_col=None, key_cols=["time"])
    pd.DataFrame({"text": ["c"], "label": ["neu"]}).to_csv(drops / "week02.csv", index=False)
    held, n = append_new(held, texts(d), time_col="time", group_col=None, key_cols=["time"])
    assert n == 1 and held["text"].tolist() == ["a", "b", "c"] and held["time"].tolist() == [0, 1, 2]
    assert append_new(held, texts(d), time_col="time", group_col=None, key_cols=["time"])[1] == 0


# -------------------------------------------------------------------------------------------------- messages
def test_utf8_error_reports_the_file_offset(tmp_path):
    body = b"Date,Close\n" + b"".join(b"2020-01-%02d,1.0\n" % (i + 1) for i in range(20))
    body += b"x" * (556 - len(body) - 1) + b"\n"
    path = tmp_path / "bad.csv"
    path.write_bytes(body + b"\xff,1.0\n")
    assert len(body) == 556
    assert error(prices, DataConfig(source=str(path))) == (
        f"data source {path} is not valid utf-8: byte 0xff at offset 556 (line 23) cannot be decoded. "
        "Re-save the file as UTF-8 or set stocks.data.encoding (e.g. latin-1).")


def test_separator_hints(tmp_path):
    frame(["2024-01-02"], [1.0]).to_csv(tmp_path / "tabs.csv", index=False, sep="\t")
    assert error(prices, DataConfig(source=str(tmp_path / "tabs.csv"))) == (
        f"data source {tmp_path / 'tabs.csv'} has a single column named 'Date\\tClose': the file looks "
        "tab-separated: name it .tsv (the separator is chosen by the suffix: .csv comma, .tsv tab).")
    frame(["2024-01-02"], [1.0]).to_csv(tmp_path / "semi.csv", index=False, sep=";")
    assert "looks semicolon-separated: re-save it with commas" in error(
        prices, DataConfig(source=str(tmp_path / "semi.csv")))
    frame(["2024-01-02"], [1.0]).to_csv(tmp_path / "commas.tsv", index=False)
    assert "looks comma-separated: name it .csv" in error(prices, DataConfig(source=str(tmp_path / "commas.tsv")))


def test_quoted_values_are_cut(tmp_path):
    long_value = "z" * 5000
    frame(["2024-01-02", "2024-01-03"], [1.0, long_value]).to_csv(tmp_path / "p.csv", index=False)
    msg = error(prices, DataConfig(source=str(tmp_path / "p.csv")))
    assert "non-numeric value(s) such as 'zzz" in msg and len(msg) < 400
    wide_header = pd.DataFrame({f"column_with_a_long_name_{i}": [1] for i in range(200)})
    wide_header.to_csv(tmp_path / "w.csv", index=False)
    msg = error(prices, DataConfig(source=str(tmp_path / "w.csv"), layout="long"))
    assert msg.startswith(f"{tmp_path / 'w.csv'} has no column for date, close") and "(200 in all)" in msg
    assert len(msg) < 400


def test_an_earlier_until_drops_held_rows_after_it(project, capsys):
    """data.until promises that rows after it are ignored: an ingest with an earlier until than the one that wrote
    the snapshot (a replay's recipe rebuilding an older model in the same project) must not keep them."""
    from flows.cli import main

    days = pd.bdate_range("2024-01-01", periods=30)
    pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "close": np.linspace(100, 130, 30)}).to_csv("p.csv", index=False)
    src = ["--set", "stocks.data.source=p.csv"]
    assert main(["ingest", "stocks", *src]) == 0
    assert main(["ingest", "stocks", *src, "--set", "stocks.data.until=2024-01-19"]) == 0
    assert "dropped 15 held rows after stocks.data.until=2024-01-19" in capsys.readouterr().out
    held = pd.read_parquet("data/raw/stocks.parquet")
    assert held["date"].max() == pd.Timestamp("2024-01-19") and len(held) == 15
    fresh = project / "fresh"
    fresh.mkdir()
    (fresh / "params.yaml").write_text((project / "params.yaml").read_text())
    (fresh / "p.csv").write_text((project / "p.csv").read_text())
    import os

    os.chdir(fresh)  # the same until from nothing gives the same bytes
    assert main(["ingest", "stocks", *src, "--set", "stocks.data.until=2024-01-19"]) == 0
    assert (fresh / "data/raw/stocks.parquet").read_bytes() == (project / "data/raw/stocks.parquet").read_bytes()
