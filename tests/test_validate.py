"""Validation gate: one GX batch per table, degenerate data refused with short messages that name the entity and
dates, deterministic reports, and a failure that leaves the previous validated output byte-identical."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from r2n2.cases.text import LABELS
from r2n2.data.validate import PriceChecks, TextChecks, price_suite, run_suite, text_suite, validate
from r2n2.errors import ValidationFailed

DAYS = 600


def panel(n_entities: int = 50, *, seed: int = 0) -> pd.DataFrame:
    """A calm long-form panel: random-walk closes, consistent OHLC, and one 7-day market closure (like 9/11)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2000-01-03", periods=DAYS + 4)
    dates = dates.delete(slice(200, 204))  # Thu -> next Thu: a 7-day gap, the most that daily data allows
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_entities, DAYS)), axis=1)).ravel()
    return pd.DataFrame({"entity": np.repeat([f"E{i:02d}" for i in range(n_entities)], DAYS),
                         "date": np.tile(dates.to_numpy(), n_entities).astype("datetime64[us]"),
                         "open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
                         "volume": 1e6})


def texts(n: int = 300, *, labels=("negative", "neutral", "positive")) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"tweet number {i} about things" for i in range(n)],
                         "label": [labels[i % len(labels)] for i in range(n)]})


def rows_of(df: pd.DataFrame, entity: str) -> pd.Index:
    return df.index[df["entity"] == entity]


def failure(df: pd.DataFrame, suite, tmp_path, name: str = "prices") -> str:
    df.to_parquet(tmp_path / "raw.parquet")
    with pytest.raises(ValidationFailed) as info:
        validate(name, suite, tmp_path / "raw.parquet", tmp_path / "out.parquet", tmp_path / "reports")
    assert not (tmp_path / "out.parquet").exists()
    return str(info.value)


@pytest.fixture
def checkpoint_runs(monkeypatch):
    """Count GX checkpoint runs: the whole frame must be one batch, whatever its number of entities."""
    import great_expectations as gx

    calls = []
    original = gx.Checkpoint.run

    def counted(self, *args, **kwargs):
        calls.append(len(kwargs["batch_parameters"]["dataframe"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(gx.Checkpoint, "run", counted)
    return calls


def test_fifty_entities_in_one_batch_pass(tmp_path, checkpoint_runs):
    df = panel()
    df.to_parquet(tmp_path / "raw.parquet")
    summary = validate("prices", price_suite(PriceChecks()), tmp_path / "raw.parquet", tmp_path / "out.parquet",
                       tmp_path / "reports")
    assert checkpoint_runs == [50 * DAYS]
    assert summary["success"] and summary["facts"]["entities"] == 50 and summary["failed"] == 0
    assert (tmp_path / "out.parquet").read_bytes() == (tmp_path / "raw.parquet").read_bytes()


def test_fifty_entities_in_one_batch_name_the_entity_at_fault(tmp_path, checkpoint_runs):
    df = panel()
    i = rows_of(df, "E17")[300]
    df.loc[i, "date"] = df.loc[i - 2, "date"]  # a date repeated out of order inside one entity
    message = failure(df, price_suite(PriceChecks()), tmp_path)
    assert checkpoint_runs == [50 * DAYS]
    day, before = df.loc[i, "date"].date(), df.loc[i - 1, "date"].date()
    assert f"[E17] dates not increasing at {day} (after {before})" in message
    assert message.startswith("validation of prices data failed 1 of 26 expectations: ")


def test_interleaved_entities_pass_and_a_missing_column_is_named():
    df = panel(3).sort_values(["date", "entity"], kind="stable")  # date-major: sorted within each entity
    assert run_suite(df, price_suite(PriceChecks()), name="prices")["success"]
    summary = run_suite(df.drop(columns="entity"), price_suite(PriceChecks()), name="prices")
    assert [r["examples"] for r in summary["results"] if not r["success"]] == [["no column entity"]]


def test_five_year_hole_is_refused_naming_entity_and_both_dates(tmp_path):
    df = panel(3)
    rows = rows_of(df, "E01")[400:]
    df.loc[rows, "date"] += pd.Timedelta(days=5 * 365)
    message = failure(df, price_suite(PriceChecks()), tmp_path)
    last, first = df.loc[rows[0] - 1, "date"], df.loc[rows[0], "date"]
    assert f"[E01] {(first - last).days}-day gap from {last.date()} to {first.date()} (max 7)" in message
    # The calm panel's 7-day closure passes: max_gap_days is inclusive.
    assert "E00" not in message and "E02" not in message


@pytest.mark.parametrize("flat", ["constant", "mostly"])
def test_constant_prices_are_refused(tmp_path, flat):
    df = panel(3)
    rows = rows_of(df, "E02")
    if flat == "constant":
        df.loc[rows, ["open", "high", "low", "close"]] = 42.0
        expected = "[E02] close never changes (all returns zero)"
    else:  # stale quotes: every other day repeats the previous close
        df.loc[rows[1::2], "close"] = df.loc[rows[0::2], "close"].to_numpy()[:len(rows[1::2])]
        df.loc[rows, ["open", "high", "low"]] = np.repeat(df.loc[rows, ["close"]].to_numpy(), 3, axis=1)
        expected = "[E02] 50% of days have a zero return"
    message = failure(df, price_suite(PriceChecks()), tmp_path)
    assert expected in message and "E00" not in message


def test_price_jump_and_short_entity_are_refused(tmp_path):
    df = panel(3)
    i = rows_of(df, "E00")[100]
    df.loc[i:rows_of(df, "E00")[-1], ["open", "high", "low", "close"]] *= 100  # cents instead of dollars
    df = df.drop(rows_of(df, "E02")[450:])
    message = failure(df, price_suite(PriceChecks()), tmp_path)
    assert f"[E00] log return 4.61 from {df.loc[i - 1, 'date'].date()} to {df.loc[i, 'date'].date()}" in message
    assert "[E02] has only 450 rows (min 500)" in message


def test_one_class_labels_are_refused(tmp_path):
    message = failure(texts(labels=("positive",)), text_suite(TextChecks(), labels=LABELS), tmp_path, "texts")
    assert "only 1 label class(es) (min 2)" in message


def test_rare_class_is_refused_and_balanced_labels_pass(tmp_path):
    df = texts()
    assert run_suite(df, text_suite(TextChecks(), labels=LABELS), name="texts")["success"]
    df.loc[df.index[df["label"] == "neutral"][6:], "label"] = "positive"  # 6 of 300 neutral
    message = failure(df, text_suite(TextChecks(), labels=LABELS), tmp_path, "texts")
    assert "label 'neutral' is only 2.0% of rows" in message


def test_five_megabyte_text_is_refused_without_echo(tmp_path):
    df = texts()
    df.loc[3, "text"] = "x" * 5_000_000
    df.loc[7, "label"] = "y" * 1_000_000  # an unknown label as long as a book
    message = failure(df, text_suite(TextChecks(), labels=LABELS), tmp_path, "texts")
    assert "text at row 3 has 5000000 characters (max 1000)" in message
    assert "unknown label 'yyyyyyy" in message and "..." in message
    assert len(message) < 600
    assert (tmp_path / "reports/validation.json").stat().st_size < 50_000
    assert (tmp_path / "reports/validation.html").stat().st_size < 50_000


def test_reports_are_byte_identical_across_runs_and_folders(tmp_path):
    df = panel(5)
    df.loc[rows_of(df, "E03"), "close"] = 7.0
    outputs = []
    for run in ("a", "b"):
        folder = tmp_path / run / "deep" / "er"  # a different absolute path must not change a byte
        folder.mkdir(parents=True)
        failure(df, price_suite(PriceChecks()), folder)
        outputs.append([(folder / "reports" / f).read_bytes() for f in ("validation.json", "validation.html")])
    assert outputs[0] == outputs[1]
    text = outputs[0][0].decode()
    assert str(tmp_path) not in text and "time" not in text and not re.search(r"\d{2}:\d{2}:\d{2}", text)


def test_failure_leaves_previous_validated_output_byte_identical(tmp_path):
    good = panel(3)
    good.to_parquet(tmp_path / "raw.parquet")
    validate("prices", price_suite(PriceChecks()), tmp_path / "raw.parquet", tmp_path / "out.parquet",
             tmp_path / "reports")
    before = (tmp_path / "out.parquet").read_bytes()
    bad = good.copy()
    bad.loc[5, "close"] = -1.0
    bad.to_parquet(tmp_path / "raw.parquet")
    with pytest.raises(ValidationFailed) as info:
        validate("prices", price_suite(PriceChecks()), tmp_path / "raw.parquet", tmp_path / "out.parquet",
                 tmp_path / "reports")
    assert (tmp_path / "out.parquet").read_bytes() == before
    assert f"[E00] close -1.0 at {bad.loc[5, 'date'].date()}" in str(info.value)
    assert info.value.result["success"] is False
    assert json.loads((tmp_path / "reports/validation.json").read_text())["failed"] == info.value.result["failed"]


def test_html_report_lists_the_failed_expectation_first_and_opens_offline(tmp_path):
    df = panel(3)
    df.loc[rows_of(df, "E01")[250], "date"] = df.loc[rows_of(df, "E01")[249], "date"]  # a duplicate date
    message = failure(df, price_suite(PriceChecks()), tmp_path)
    page = tmp_path / "reports/validation.html"
    assert str(page) in message
    body = page.read_text()
    rows = re.findall(r'<tr class="(passed|failed)">.*?<td>(.*?)</td>', body)
    assert rows[0] == ("failed", "dates increasing within each entity")
    assert {r[0] for r in rows[1:]} == {"passed"}
    assert "[E01] dates not increasing at" in body
    assert "<script" not in body and "http" not in body  # nothing to fetch: it renders offline


def test_bad_checks_are_a_clear_value_error():
    with pytest.raises(ValueError, match=r"validate.max_zero_return_share must be in \[0, 1\), got 1.5."):
        PriceChecks(max_zero_return_share=1.5)
    with pytest.raises(ValueError, match="validate.min_classes must be >= 1, got 0."):
        TextChecks(min_classes=0)


def test_defaults_pass_the_real_data_they_were_calibrated_on():
    """S&P 500 + NASDAQ 1999-2018 (arch), skfolio's 20 stocks 1990-2022 (the 9/11 closure is a 7-day gap, one
    stock has 13% zero-return days and a 1.10 log return) and the built-in tweet corpus pass the defaults."""
    from skfolio.datasets import load_sp500_dataset

    from r2n2.cases.sentiment import load_builtin_sentiment
    from r2n2.cases.series import load_builtin_stocks
    from r2n2.data.sources import clean_text

    prices = load_sp500_dataset().rename_axis("date").reset_index()
    long = prices.melt(id_vars="date", var_name="entity", value_name="close").astype({"date": "datetime64[us]"})
    tweets = load_builtin_sentiment()
    tweets["text"] = tweets["text"].map(clean_text)
    for df, suite in ((load_builtin_stocks(), price_suite(PriceChecks())), (long, price_suite(PriceChecks())),
                      (tweets, text_suite(TextChecks(), labels=LABELS))):
        summary = run_suite(df, suite, name="builtin")
        assert summary["success"], [r["examples"] for r in summary["results"] if not r["success"]]
