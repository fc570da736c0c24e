"""Data stages on user files and bad input: clear one-paragraph errors, non-zero exits, good outputs kept."""

import json

import numpy as np
import pandas as pd
import pytest

from flows.cli import main
from r2n2.data.sources import clean_text

from .conftest import make_prices, make_texts

STOCK_SET = ["--set", "stocks.data.source=prices.csv", "--set", "stocks.data.columns.close=Price",
             "--set", "stocks.validate.min_rows=100", "--set", "stocks.window.lookback=10",
             "--set", "stocks.window.val_start=null", "--set", "stocks.window.test_start=null"]
TEXT_SET = ["--set", "sentiment.data.source=tweets.csv", "--set", "sentiment.data.columns.text=body",
            "--set", "sentiment.data.columns.label=sentiment", "--set", "sentiment.validate.min_rows=100",
            "--set", "sentiment.window.vocab_size=300"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def stocks_pipeline(capsys, extra=()):
    for stage in ("ingest", "validate", "window"):
        code, out, err = run(capsys, stage, "stocks", *STOCK_SET, *extra)
        assert code == 0, err
    return out


def test_user_csv_with_renamed_columns_runs_all_stages(project, capsys):
    make_prices().to_csv("prices.csv", index=False)
    stocks_pipeline(capsys)
    raw = pd.read_parquet("data/raw/stocks.parquet")
    assert list(raw.columns) == ["entity", "date", "open", "high", "low", "close"]  # Vol not mapped: ignored
    assert raw["entity"].unique().tolist() == ["prices"]
    meta = json.loads(open("data/windows/stocks/meta.json").read())
    assert meta["features"] == ["ret_open", "ret_high", "ret_low", "ret_close"]
    assert json.load(open("data/reports/stocks/validation.json"))["success"] is True
    assert (project / "data/reports/stocks/validation.html").is_file()


def test_univariate_file_with_dot_missing_values(project, capsys):
    df = make_prices()[["Date", "Price"]].rename(columns={"Price": "DCOILWTICO"}).astype({"DCOILWTICO": "str"})
    df.loc[[50, 51, 200], "DCOILWTICO"] = "."
    df.to_csv("oil.csv", index=False)
    args = ["--set", "stocks.data.source=oil.csv", "--set", "stocks.data.columns.date=Date",
            "--set", "stocks.data.columns.close=DCOILWTICO", "--set", 'stocks.data.na_values=["."]',
            "--set", "stocks.validate.min_rows=100", "--set", "stocks.window.lookback=10",
            "--set", "stocks.window.val_start=null", "--set", "stocks.window.test_start=null"]
    code, _, err = run(capsys, "ingest", "stocks", *args)
    assert code == 2 and "missing values (close: 3" in err and "'fail'" in err
    for stage in ("ingest", "validate", "window"):
        code, _, err = run(capsys, stage, "stocks", *args, "--set", "stocks.data.missing=ffill")
        assert code == 0, err
    assert json.load(open("data/windows/stocks/meta.json"))["features"] == ["ret_close"]


def test_builtin_stocks_ingest_and_validate(project, capsys):
    code, out, err = run(capsys, "ingest", "stocks")
    assert code == 0, err
    raw = pd.read_parquet("data/raw/stocks.parquet")
    assert raw.groupby("entity").size().to_dict() == {"nasdaq": 5031, "sp500": 5031}
    assert run(capsys, "validate", "stocks")[0] == 0


def test_builtin_sentiment_is_clean_utf8(project, capsys):
    code, _, err = run(capsys, "ingest", "sentiment")
    assert code == 0, err
    raw = pd.read_parquet("data/raw/sentiment.parquet")
    assert len(raw) == 38158
    assert raw["label"].value_counts().to_dict() == {"negative": 16186, "neutral": 15018, "positive": 6954}
    for junk in ("’¢", "Ì_", "&amp;", "\r"):
        assert not raw["text"].str.contains(junk, regex=False).any(), junk
    assert clean_text("RT @x: R&amp;amp;D ’¢_äŒÅ–great’¢_äŒÎù BÌ_ndchen\t ok") == 'RT @x: R&D "great" Bndchen ok'
    assert raw["text"].str.len().min() >= 1


def expect_failure(capsys, argv, code, *fragments):
    got, out, err = run(capsys, *argv)
    assert got == code, err
    assert "Traceback" not in err and err.count("\n") == 1, err  # one paragraph
    for f in fragments:
        assert f in err, err
    return err


@pytest.fixture
def good_stocks(project, capsys):
    """A project whose stocks stages have all succeeded once; returns the good outputs' bytes."""
    make_prices().to_csv("prices.csv", index=False)
    stocks_pipeline(capsys)
    return {p: (project / p).read_bytes() for p in ("data/raw/stocks.parquet", "data/validated/stocks.parquet")}


def _unchanged(good, project, *names):
    for name in names:
        assert (project / name).read_bytes() == good[name], f"{name} was overwritten"


@pytest.mark.parametrize("mutate,fragments", [
    (lambda df: df.drop(columns=["Date"]), ["has no column for date", "--set stocks.data.columns.date="]),
    (lambda df: df.rename(columns={"Price": "Cls"}), ["names a column that", "does not have"]),
    (lambda df: df.assign(Price=df["Price"].astype(str).where(df.index != 7, ".")),
     ["non-numeric value(s) such as '.'", "na_values"]),
    (lambda df: df.assign(Price=df["Price"].where(df.index != 7, np.nan)), ["missing values (close: 1"]),
])
def test_bad_input_at_ingest(good_stocks, project, capsys, mutate, fragments):
    mutate(make_prices()).to_csv("prices.csv", index=False)
    expect_failure(capsys, ["ingest", "stocks", *STOCK_SET], 2, *fragments)
    _unchanged(good_stocks, project, "data/raw/stocks.parquet")


@pytest.mark.parametrize("mutate,fragments", [
    # the same date twice with another price (an exact repeat of a row is dropped at ingest)
    (lambda df: pd.concat([df.iloc[:5], df.iloc[4:5].assign(Price=lambda d: d["Price"] * 1.01), df.iloc[5:]]),
     ["[prices] dates not increasing at 2015-01-07"]),
    (lambda df: df.iloc[list(range(5)) + [6, 5] + list(range(7, len(df)))], ["[prices] dates not increasing at 2015-01-08"]),
    (lambda df: df.assign(High=df["High"].where(df.index != 9, df["Low"] / 2)), ["high below low at", "high below open at"]),
    (lambda df: df.assign(Price=df["Price"].where(df.index != 3, -1.0)), ["[prices] close -1.0 at 2015-01-06"]),
    (lambda df: df.assign(Low=df["Low"].where(df.index != 3, 0.0)), ["[prices] low 0.0 at 2015-01-06"]),
    (lambda df: df.iloc[:10], ["has only 10 rows"]),
])
def test_bad_prices_fail_validation_and_keep_previous(good_stocks, project, capsys, mutate, fragments):
    mutate(make_prices()).to_csv("prices.csv", index=False)
    assert run(capsys, "ingest", "stocks", *STOCK_SET)[0] == 0
    err = expect_failure(capsys, ["validate", "stocks", *STOCK_SET], 3, "validation of stocks data failed",
                         *fragments)
    assert "validation.html" in err
    _unchanged(good_stocks, project, "data/validated/stocks.parquet")
    report = json.load(open("data/reports/stocks/validation.json"))
    assert report["success"] is False and report["failed"] >= 1


def test_too_short_for_one_window(project, capsys):
    make_prices(n=25).to_csv("prices.csv", index=False)
    args = [*STOCK_SET, "--set", "stocks.validate.min_rows=5"]
    assert run(capsys, "ingest", "stocks", *args)[0] == 0
    assert run(capsys, "validate", "stocks", *args)[0] == 0
    expect_failure(capsys, ["window", "stocks", *args], 2, "has no val/test windows between the cut dates")


@pytest.mark.parametrize("content,fragments", [
    (b"", ["is empty (0 bytes)"]),
    (b"Date,Price\n2020-01-01,1\xff\xfe\n", ["is not valid utf-8", "byte 0xff", "encoding"]),
])
def test_unreadable_csv(project, capsys, content, fragments):
    open("prices.csv", "wb").write(content)
    expect_failure(capsys, ["ingest", "stocks", *STOCK_SET], 2, *fragments)


def test_truncated_parquet(project, capsys):
    make_prices().to_parquet("prices.parquet")
    data = open("prices.parquet", "rb").read()
    open("prices.parquet", "wb").write(data[: len(data) // 2])
    args = [a.replace("prices.csv", "prices.parquet") for a in STOCK_SET]
    expect_failure(capsys, ["ingest", "stocks", *args], 2, "is not a readable Parquet file")


def test_missing_previous_stage(project, capsys):
    expect_failure(capsys, ["validate", "stocks"], 2, "does not exist; run the previous stage first")


def text_pipeline(capsys, extra=()):
    for stage in ("ingest", "validate", "window"):
        code, out, err = run(capsys, stage, "sentiment", *TEXT_SET, *extra)
        assert code == 0, err


def test_user_text_file_runs_all_stages(project, capsys):
    make_texts().to_csv("tweets.csv", index=False)
    text_pipeline(capsys)
    raw = pd.read_parquet("data/raw/sentiment.parquet")
    assert set(raw["label"]) == {"negative", "neutral", "positive"}  # NEG/NEU/POS normalised
    texts = pd.read_parquet("data/windows/sentiment/texts.parquet")
    assert set(texts["domain"]) == {"source", "target"}
    assert (project / "data/windows/sentiment/tokenizer.json").is_file()


@pytest.mark.parametrize("mutate,fragments", [
    (lambda df: df.assign(sentiment=df["sentiment"].where(df.index != 4, "angry")),
     ["unknown label 'angry' at row 4"]),
    (lambda df: df.assign(body=df["body"].where(df.index != 4, "   ")),
     ["text at row 4 has 0 characters (min 1)"]),
])
def test_bad_texts_fail_validation(project, capsys, mutate, fragments):
    make_texts().to_csv("tweets.csv", index=False)
    text_pipeline(capsys)
    good = (project / "data/validated/sentiment.parquet").read_bytes()
    mutate(make_texts()).to_csv("tweets.csv", index=False)
    assert run(capsys, "ingest", "sentiment", *TEXT_SET)[0] == 0
    expect_failure(capsys, ["validate", "sentiment", *TEXT_SET], 3, *fragments)
    assert (project / "data/validated/sentiment.parquet").read_bytes() == good


def test_near_duplicates_never_straddle_splits(project, capsys):
    """Planted retweets, other links, other mentions and case/punctuation variants of texts: no near-duplicate
    group is scored in two splits (later members of a group are excluded), and the count is reported."""
    from r2n2.data.textkey import near_duplicate_keys

    df = make_texts()
    base = df["body"].iloc[:40]
    variants = pd.concat([
        ("RT @someone: " + base.iloc[:10]),
        (base.iloc[10:20] + " https://t.co/abc" + pd.Series(range(10), index=base.index[10:20]).astype(str)),
        ("@user" + pd.Series(range(10), index=base.index[20:30]).astype(str) + " " + base.iloc[20:30]),
        (base.iloc[30:40].str.upper() + "!!!")])
    planted = pd.DataFrame({"body": variants.to_numpy(), "sentiment": df["sentiment"].iloc[:40].to_numpy()})
    pd.concat([df, planted], ignore_index=True).to_csv("tweets.csv", index=False)
    text_pipeline(capsys)
    texts = pd.read_parquet("data/windows/sentiment/texts.parquet")
    key = near_duplicate_keys(texts["text"])
    scored = texts["split"].isin(["train", "val", "test"])
    assert (texts[scored].groupby(key[scored])["split"].nunique() == 1).all()
    assert key.iloc[:40].isin(key.iloc[len(df):]).all()  # every planted variant collapsed onto its original
    meta = json.load(open("data/windows/sentiment/meta.json"))
    assert meta["near_duplicates"]["texts_in_shared_groups"] >= 80
    assert sum(meta["near_duplicates"]["excluded"].values()) == int((texts["split"] == "excluded").sum()) > 0


def test_test_split_never_influences_scaler(project, capsys):
    prices = make_prices()
    prices.to_csv("prices.csv", index=False)
    stocks_pipeline(capsys)
    meta = json.load(open("data/windows/stocks/meta.json"))
    table = pd.read_parquet("data/windows/stocks/features.parquet")
    first_test = table.loc[table["split"] == "test", "date"].min()
    # Wildly change every price from the first test day on: scaler and earlier rows must not move.
    late = pd.to_datetime(prices["Date"]) >= first_test - pd.Timedelta(days=0)
    for col in ("Open", "High", "Low", "Price"):
        prices.loc[late, col] *= np.linspace(1, 5, late.sum())
    prices.to_csv("prices.csv", index=False)
    stocks_pipeline(capsys)
    meta2 = json.load(open("data/windows/stocks/meta.json"))
    assert meta2["scaler"] == meta["scaler"] and meta2["target_scaler"] == meta["target_scaler"]
    table2 = pd.read_parquet("data/windows/stocks/features.parquet")
    train = table["split"] == "train"
    pd.testing.assert_frame_equal(table[train], table2[train])


def test_test_texts_never_influence_tokenizer(project, capsys):
    make_texts().to_csv("tweets.csv", index=False)
    text_pipeline(capsys)
    tok = open("data/windows/sentiment/tokenizer.json").read()
    texts = pd.read_parquet("data/windows/sentiment/texts.parquet")
    test_texts = set(texts.loc[texts["split"] != "train", "text"])
    df = make_texts()
    df["body"] = [f"{t} zebra quasar xylophone" if t in test_texts else t for t in df["body"]]
    df.to_csv("tweets.csv", index=False)
    text_pipeline(capsys)
    texts2 = pd.read_parquet("data/windows/sentiment/texts.parquet")
    assert texts2["split"].tolist() == texts["split"].tolist()
    assert open("data/windows/sentiment/tokenizer.json").read() == tok
